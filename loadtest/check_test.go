package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeWorker records check events for connections [first, last) as a
// worker's read and pacing goroutines would, and ships them like a worker
// at the end of a run.
type fakeWorker struct {
	w     *worker
	out   bytes.Buffer
	conns map[int]*lconn
}

func newFakeWorker(cfg *Config, first, last int) *fakeWorker {
	f := &fakeWorker{conns: map[int]*lconn{}}
	f.w = &worker{cfg: cfg, out: newLineWriter(&f.out), ck: &workerCheck{}}
	for g := first; g < last; g++ {
		c := &lconn{w: f.w, g: g, room: cfg.room(g)}
		f.w.conns = append(f.w.conns, c)
		f.conns[g] = c
	}
	return f
}

func (f *fakeWorker) rec(g int, fn func(c *lconn)) {
	c := f.conns[g]
	c.mu.Lock()
	fn(c)
	c.mu.Unlock()
}

// ship ships the logs and returns the lines and the worker's result.
func (f *fakeWorker) ship(t *testing.T) ([]workerMsg, *workerResult) {
	t.Helper()
	n, err := f.w.shipCheck()
	if err != nil {
		t.Fatal(err)
	}
	var msgs []workerMsg
	sc := newLineScanner(&f.out)
	for {
		var m workerMsg
		if err := readLine(sc, &m); err != nil {
			break
		}
		if m.Type != msgCheck || m.Check == nil {
			t.Fatalf("unexpected line %+v", m)
		}
		msgs = append(msgs, m)
	}
	return msgs, &workerResult{CheckEvents: n, CheckOverflow: f.w.ck.overflow.Load()}
}

// playHistory records f's share of a history of one room with four
// members, all joined at snapshot 0: conn 0 publishes seqs 1–3 and conn 2
// seqs 4–5, and conn g receives deliver(g), or 1–5 in order when that is nil.
func playHistory(f *fakeWorker, deliver func(g int) []uint64) {
	type pubd struct {
		pub     int
		counter uint64
	}
	bySeq := map[uint64]pubd{1: {0, 1}, 2: {0, 2}, 3: {0, 3}, 4: {2, 1}, 5: {2, 2}}
	for g := range f.conns {
		f.rec(g, func(c *lconn) { c.record(evJoined, 0) })
	}
	for seq := uint64(1); seq <= 5; seq++ {
		if p := bySeq[seq]; f.conns[p.pub] != nil {
			f.rec(p.pub, func(c *lconn) {
				c.record(evSent, p.counter)
				c.record(evAcked, seq, uint64(p.pub), p.counter)
			})
		}
	}
	for g := range f.conns {
		seqs := []uint64{1, 2, 3, 4, 5}
		if deliver != nil {
			if s := deliver(g); s != nil {
				seqs = s
			}
		}
		for _, seq := range seqs {
			p := bySeq[seq]
			h := msgHeader{pub: uint32(p.pub), counter: p.counter, sent: time.Now().UnixNano()}
			f.rec(g, func(c *lconn) { c.recordDelivery(evLive, seq, h.cmid()) })
		}
	}
}

// lostAndDuplicated is a delivery pattern with one loss (conn 1 misses
// conn 2's first message, seq 4) and one duplicate (conn 3 gets seq 2 twice).
func lostAndDuplicated(g int) []uint64 {
	switch g {
	case 1:
		return []uint64{1, 2, 3, 5}
	case 3:
		return []uint64{1, 2, 2, 3, 4, 5}
	}
	return nil
}

// TestCheckMergesWorkers replays two fake workers' logs of playHistory —
// conns 0 and 1 on worker 0, 2 and 3 on worker 1 — into one verdict, which
// needs both: the loss is of worker 1's message at worker 0's member.
func TestCheckMergesWorkers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		deliver       func(g int) []uint64
		dropResult    bool
		ok            bool
		lost, dup     int
		lostExample   string
		incompleteHas string
	}{
		{name: "clean", ok: true},
		{name: "lost and duplicated", deliver: lostAndDuplicated, lost: 1, dup: 1, lostExample: "c1 missed lt-run-r0 #4 (c2/1)"},
		{name: "a worker without a result", dropResult: true, incompleteHas: "worker 1 sent no result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := &Config{Scenario: ScenarioChat, Rooms: 1, Members: 4, Conns: 4, Workers: 2, Check: true}
			run := newCheckRun(cfg, "run", 2)
			results := make([]*workerResult, 2)
			for i := range 2 {
				fw := newFakeWorker(cfg, 2*i, 2*i+2)
				playHistory(fw, tt.deliver)
				msgs, res := fw.ship(t)
				if len(msgs) == 0 {
					t.Fatalf("worker %d shipped no check line", i)
				}
				for _, m := range msgs {
					run.feed(i, m.Check)
				}
				if !(tt.dropResult && i == 1) {
					results[i] = res
				}
			}
			got := run.result(results)
			var tab bytes.Buffer
			got.WriteTable(&tab)
			t.Logf("\n%s", tab.String())
			r := got.Report
			if got.OK != tt.ok || r.Lost != tt.lost || r.Duplicated != tt.dup || r.Reordered != 0 || len(r.Diverged) != 0 {
				t.Errorf("ok %v lost %d dup %d reordered %d diverged %v; want ok %v lost %d dup %d",
					got.OK, r.Lost, r.Duplicated, r.Reordered, r.Diverged, tt.ok, tt.lost, tt.dup)
			}
			if r.Sent != 5 || r.Acked != 5 || r.Unacked != 0 {
				t.Errorf("sent %d acked %d unacked %d; want 5, 5, 0", r.Sent, r.Acked, r.Unacked)
			}
			if tt.lostExample != "" && (len(r.LostExamples) != 1 || r.LostExamples[0] != tt.lostExample) {
				t.Errorf("lost examples %q; want %q", r.LostExamples, tt.lostExample)
			}
			if tt.incompleteHas == "" && len(got.Incomplete) > 0 {
				t.Errorf("incomplete: %q", got.Incomplete)
			}
			if tt.incompleteHas != "" && !strings.Contains(strings.Join(got.Incomplete, "\n"), tt.incompleteHas) {
				t.Errorf("incomplete %q; want %q", got.Incomplete, tt.incompleteHas)
			}
			if v := got.Verdict(); tt.ok != (v == "OK") {
				t.Errorf("verdict %q", v)
			}
		})
	}
}

// scriptedLauncher runs fake workers that speak the worker protocol but
// open no connection: each reports ready, waits for finish, then plays
// its share of playHistory and ships it with its result, as a worker does.
type scriptedLauncher struct {
	deliver func(g int) []uint64
}

func (l scriptedLauncher) launch(_ context.Context, _ int) (*workerProc, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- l.work(inR, outW)
		_ = outW.Close()
		_ = inR.Close()
	}()
	return &workerProc{in: inW, out: outR, wait: func() error { return <-done }, kill: func() { _ = inR.Close() }, pid: os.Getpid()}, nil
}

func (l scriptedLauncher) work(in io.Reader, out io.Writer) error {
	sc := newLineScanner(in)
	var spec workerSpec
	if err := readLine(sc, &spec); err != nil {
		return err
	}
	cfg := spec.Config
	fw := newFakeWorker(&cfg, spec.First, spec.Last)
	fw.w.out = newLineWriter(out)
	n := uint64(spec.Last - spec.First)
	if err := fw.w.out.write(workerMsg{Type: msgReady, Ready: &counters{Connected: n, Joined: n}}); err != nil {
		return err
	}
	for {
		var c command
		if err := readLine(sc, &c); err != nil || c.Cmd == cmdFinish {
			break
		}
	}
	playHistory(fw, l.deliver)
	shipped, err := fw.w.shipCheck()
	if err != nil {
		return err
	}
	return fw.w.out.write(workerMsg{Type: msgResult, Result: &workerResult{Totals: counters{Connected: n}, CheckEvents: shipped}})
}

// TestRunFailsOnCheckVerdict runs the coordinator with two scripted
// workers whose merged history loses and duplicates a delivery: Run must
// fail with ErrCheckFailed, and the result file and summary must say why.
func TestRunFailsOnCheckVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the coordinator for a few seconds")
	}
	t.Parallel()
	for _, tt := range []struct {
		name    string
		deliver func(g int) []uint64
	}{{"clean", nil}, {"lost and duplicated", lostAndDuplicated}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r, err := New(Config{
				Scenario: ScenarioChat, Secret: testSecret, Rooms: 1, Members: 4, Workers: 2,
				Duration: time.Second, Ramp: 0, Grace: 100 * time.Millisecond, Quiet: true, Check: true,
				Out: filepath.Join(dir, "scripted"),
			}, testWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			r.launcher = scriptedLauncher{deliver: tt.deliver}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := r.Run(ctx)
			if res == nil || res.Check == nil {
				t.Fatalf("no check result (err %v)", err)
			}
			if tt.deliver == nil {
				if err != nil || !res.Check.OK {
					t.Fatalf("err %v, verdict %s", err, res.Check.Verdict())
				}
				return
			}
			if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "1 lost, 1 duplicated") {
				t.Fatalf("err %v; want ErrCheckFailed with 1 lost, 1 duplicated", err)
			}
			back, rerr := ReadResult(filepath.Join(dir, "scripted.json"))
			if rerr != nil {
				t.Fatal(rerr)
			}
			if back.Check == nil || back.Check.OK || back.Check.Report.Lost != 1 || back.Check.Report.Duplicated != 1 {
				t.Fatalf("result file's check: %+v", back.Check)
			}
			var sum strings.Builder
			WriteSummary(&sum, []*Result{back})
			if !strings.Contains(sum.String(), "c1 missed") || !strings.Contains(sum.String(), "check FAILED: 1 lost, 1 duplicated") {
				t.Errorf("summary:\n%s", sum.String())
			}
		})
	}
}

// TestCheckLongLogKeepsOrder ships one connection's log over many blocks:
// the pieces must be replayed in order (no reordering, nothing missing).
func TestCheckLongLogKeepsOrder(t *testing.T) {
	t.Parallel()
	cfg := &Config{Scenario: ScenarioChat, Rooms: 1, Members: 2, Conns: 2, Workers: 1, Check: true}
	fw := newFakeWorker(cfg, 0, 2)
	const n = 100000
	fw.rec(1, func(c *lconn) { c.record(evJoined, 0) })
	for i := uint64(1); i <= n; i++ {
		fw.rec(0, func(c *lconn) {
			c.record(evSent, i)
			c.record(evAcked, i, 0, i)
		})
		h := msgHeader{pub: 0, counter: i}
		fw.rec(1, func(c *lconn) { c.recordDelivery(evLive, i, h.cmid()) })
	}
	if b := len(fw.conns[1].ck.blocks); b < 3 {
		t.Fatalf("conn 1's log has %d blocks; want several", b)
	}
	msgs, res := fw.ship(t)
	if len(msgs) < 2 {
		t.Errorf("%d check lines; want the log split over several", len(msgs))
	}
	run := newCheckRun(cfg, "run", 1)
	for _, m := range msgs {
		run.feed(0, m.Check)
	}
	got := run.result([]*workerResult{res})
	if !got.OK || got.Report.Delivered != n || got.Events != 3*n+1 {
		t.Fatalf("ok %v, delivered %d, events %d, incomplete %q; want ok, %d, %d", got.OK, got.Report.Delivered, got.Events, got.Incomplete, n, 3*n+1)
	}
	// A log recorded after shipping is not part of the run.
	fw.rec(1, func(c *lconn) { c.record(evLeft, 0) })
	if fw.conns[1].ck.n != n+1 || fw.conns[1].ck.blocks != nil {
		t.Error("a sealed log took an event")
	}
}

func TestCheckRejectsBadLogs(t *testing.T) {
	t.Parallel()
	cfg := &Config{Scenario: ScenarioChat, Rooms: 1, Members: 1, Conns: 1, Workers: 1, Check: true}
	run := newCheckRun(cfg, "run", 1)
	run.feed(0, &checkBatch{Logs: []connLog{
		{Conn: 0, Events: []byte{evJoined}},    // truncated
		{Conn: 7, Events: []byte{evJoined, 0}}, // no such connection
		{Conn: 0, Events: []byte{99}},          // unknown kind
	}})
	got := run.result([]*workerResult{{}})
	if got.OK || len(got.Incomplete) != 3 {
		t.Fatalf("ok %v, incomplete %q; want 3 problems", got.OK, got.Incomplete)
	}
	for _, s := range got.Incomplete {
		if !strings.Contains(s, errBadLog.Error()) {
			t.Errorf("incomplete %q lacks %q", s, errBadLog)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	base := func() Config { return Config{Secret: "s", Check: true} }
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" means accepted
	}{
		{name: "small chat", mod: func(c *Config) { c.Rooms, c.Members, c.Rate, c.Duration = 10, 5, 100, time.Minute }},
		{name: "default chat (about 370,000 events)", mod: func(*Config) {}},
		{name: "ten minutes of default chat is too large", mod: func(c *Config) { c.Duration = 10 * time.Minute }, want: "about 7,210,000 events"},
		{name: "idle publishes nothing", mod: func(c *Config) { c.Scenario = ScenarioIdle }, want: "needs a scenario that publishes"},
		{name: "amqp-baseline", mod: func(c *Config) { c.Scenario = ScenarioAMQPBaseline }, want: "needs a scenario that publishes"},
		{name: "default fanout is too large", mod: func(c *Config) { c.Scenario = ScenarioFanout }, want: "over the limit"},
		{name: "small fanout", mod: func(c *Config) { c.Scenario, c.Members, c.MaxSteps = ScenarioFanout, 200, 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := base()
			tt.mod(&c)
			err := c.normalize()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v; want ErrConfig with %q", err, tt.want)
			}
		})
	}
}

func TestCheckInReports(t *testing.T) {
	t.Parallel()
	r := sampleResult()
	r.Check = &CheckResult{Events: 123, Incomplete: []string{"worker 1 sent no result"}}
	r.Check.Report.Lost = 2
	r.Check.Report.LostExamples = []string{"c1 missed lt-x-r0 #4 (c2/1)"}
	var page, sum bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	WriteSummary(&sum, []*Result{r})
	for _, out := range []string{page.String(), sum.String()} {
		for _, want := range []string{"FAILED: 2 lost; incomplete history", "c1 missed lt-x-r0 #4 (c2/1)", "worker 1 sent no result"} {
			if !strings.Contains(out, want) {
				t.Errorf("report lacks %q:\n%s", want, out)
			}
		}
	}
}
