package loadtest

import (
	"os"
	"strconv"
	"testing"
	"time"
)

func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	h := msgHeader{sent: time.Now().UnixNano(), phase: 7, pub: 12345, counter: 987654321}
	body := make([]byte, 64)
	h.putBody(body)
	got, ok := parseBody(body)
	if !ok || got != h {
		t.Fatalf("body: %+v, want %+v", got, h)
	}
	if body[63] != 'x' {
		t.Fatal("filler missing")
	}
	id := h.cmid()
	if len(id) > 128 {
		t.Fatalf("cmid %q longer than the protocol allows", id)
	}
	if back, ok := parseCMID(id); !ok || back != h {
		t.Fatalf("cmid %q parsed as %+v", id, back)
	}
	for _, bad := range []string{"", "1-2-3", "1-2-3-4-5", "zz-!-3-4", "1-2-3-99999999"} {
		if _, ok := parseCMID(bad); ok {
			t.Errorf("parseCMID(%q) accepted", bad)
		}
	}
	if _, ok := parseBody(body[:bodyHeader-1]); ok {
		t.Error("short body accepted")
	}
}

func TestProcParsing(t *testing.T) {
	t.Parallel()
	stat := []byte("1234 (edge (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 200 300")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Fatalf("cpu %v, %v", cpu, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
	rss, threads := parseStatus([]byte("Name:\tedge\nVmRSS:\t   2048 kB\nThreads:\t12\n"))
	if rss != 2048*1024 || threads != 12 {
		t.Fatalf("rss %d threads %d", rss, threads)
	}
	s, err := readProc(os.Getpid())
	if err != nil || s.RSS <= 0 || s.Threads <= 0 {
		t.Fatalf("own /proc: %+v %v", s, err)
	}
}

func TestResolveWatched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := dir + "/edge-7.pid"
	if err := os.WriteFile(pidFile, []byte(itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{EdgePIDs: []string{itoa(os.Getpid())}, EdgePIDFiles: []string{pidFile}, Watch: []string{"hub=" + itoa(os.Getpid()), "me=@" + pidFile}}
	w, err := resolveWatched(&c)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 4 || !w[0].Edge || w[1].Name != "edge-7" || !w[1].Edge || w[2].Name != "hub" || w[2].Edge || w[3].Name != "me" {
		t.Fatalf("%+v", w)
	}
	for _, bad := range []Config{{EdgePIDs: []string{"x"}}, {Watch: []string{"nopid"}}, {EdgePIDFiles: []string{dir + "/missing"}}, {EdgePIDs: []string{"999999999"}}} {
		if _, err := resolveWatched(&bad); err == nil {
			t.Errorf("%+v resolved", bad)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      Config
		check   func(c Config) bool
		wantErr bool
	}{
		{in: Config{Scenario: ScenarioChat, Secret: testSecret}, check: func(c Config) bool {
			return c.Rooms == 500 && c.Members == 10 && c.Conns == 5000 && c.Publishers == 5000 && c.Rate == 1000 && c.Workers == 1 && c.Ramp == 0
		}},
		{in: Config{Scenario: ScenarioIdle, Secret: testSecret, Conns: 40000, Ramp: -1}, check: func(c Config) bool {
			return c.Rooms == 100 && c.Workers == 3 && c.Ramp == 10*time.Second && !c.publishes()
		}},
		{in: Config{Scenario: ScenarioStorm, Secret: testSecret, Ramp: -1}, check: func(c Config) bool {
			return c.Conns == 10000 && c.Ramp == 0 && !c.joins()
		}},
		{in: Config{Scenario: ScenarioChat, Secret: testSecret, Rooms: 10, Members: 5, RatePerClient: 2}, check: func(c Config) bool { return c.Rate == 100 }},
		{in: Config{Scenario: ScenarioAMQPBaseline}, check: func(c Config) bool { return c.AMQPWindow == 64 && c.AMQPQueueType == "classic" }},
		{in: Config{Scenario: "nope", Secret: testSecret}, wantErr: true},
		{in: Config{Scenario: ScenarioChat}, wantErr: true},
		{in: Config{Scenario: ScenarioChat, Secret: testSecret, Payload: 10}, wantErr: true},
		{in: Config{Scenario: ScenarioChat, Secret: testSecret, URLs: []string{"http://x/ws"}}, wantErr: true},
		{in: Config{Scenario: ScenarioFanout, Secret: testSecret, MaxSteps: maxPhases + 1}, wantErr: true},
		{in: Config{Scenario: ScenarioAMQPBaseline, AMQPQueueType: "stream"}, wantErr: true},
	}
	for i, tt := range tests {
		c := tt.in
		err := c.normalize()
		if (err != nil) != tt.wantErr {
			t.Errorf("case %d: err %v", i, err)
			continue
		}
		if err == nil && !tt.check(c) {
			t.Errorf("case %d: normalized to %+v", i, c)
		}
		if err == nil {
			again := c
			if err := again.normalize(); err != nil || again.Rate != c.Rate || again.Workers != c.Workers {
				t.Errorf("case %d: normalize not idempotent", i)
			}
		}
	}
}

func TestMachineCPU(t *testing.T) {
	t.Parallel()
	busy, total, err := parseMachineCPU([]byte("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n"))
	if err != nil || busy != 161 || total != 981 {
		t.Fatalf("busy %d total %d err %v", busy, total, err)
	}
	if _, _, err := parseMachineCPU([]byte("intr 1 2 3")); err == nil {
		t.Fatal("garbage parsed")
	}
	if b, tot, err := machineCPU(); err != nil || tot == 0 || b > tot {
		t.Fatalf("/proc/stat: %d/%d %v", b, tot, err)
	}
}
