package loadtest

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/hub"
	"github.com/hearth-gateway/hearth/shared/broker"
)

const testSecret = "loadtest-secret-0123456789abcdef"

// startPipeline runs a hub and an edge on the in-process broker, as
// hearth-standalone does, on a random port. It returns the edge's /ws URL.
func startPipeline(t *testing.T, tune func(*edge.Config)) string {
	t.Helper()
	b := broker.NewLocal(broker.LocalConfig{})
	log := zerolog.Nop()
	w, err := hub.New(hub.Config{ID: "hub-lt", ListenAdmin: "-"}, hub.Hooks{}, b, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := edge.Config{
		ID: "edge-lt", Listen: "127.0.0.1:0", JWTSecret: testSecret,
		RatePerSecond: 10000, RateBurst: 10000,
	}
	if tune != nil {
		tune(&ecfg)
	}
	e, err := edge.New(ecfg, b, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("pipeline: %v", err)
			}
		}()
	}
	run(w.Run)
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("hub not ready within 10s")
	}
	run(e.Run)
	select {
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("edge not ready within 10s")
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = b.Close()
	})
	return "ws://" + e.Addr().String() + "/ws"
}

// TestChatAgainstPipeline runs the chat scenario for about three seconds
// through a real edge and hub on the in-process broker, with two worker
// "processes" (in-process, same protocol), and checks the accounting and
// the -check verdict, which replays both workers' events into one checker.
func TestChatAgainstPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a pipeline for a few seconds")
	}
	t.Parallel()
	url := startPipeline(t, nil)
	dir := t.TempDir()
	r, err := New(Config{
		Scenario: ScenarioChat,
		URLs:     []string{url},
		Secret:   testSecret,
		Rooms:    6, Members: 4, Rate: 150,
		Duration: 3 * time.Second, Ramp: 300 * time.Millisecond,
		Grace: 2 * time.Second, Workers: 2, Quiet: true, Check: true,
		Out: filepath.Join(dir, "chat"),
	}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	r.launcher = inProcessLauncher{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v (problems: %v)", err, res.Problems)
	}
	a := res.Accounting
	if a == nil {
		t.Fatal("no accounting")
	}
	t.Logf("acked %d, members %d, expected %d, lost %d, dup %d; e2e p99 %.2f ms",
		a.Acked, a.Members, a.Expected, a.Lost, a.Duplicated, res.Latency["e2e"].P99)
	if res.Totals.Connected != 24 || a.Members != 24 {
		t.Errorf("connected %d, members checked %d; want 24", res.Totals.Connected, a.Members)
	}
	if a.Lost != 0 || a.Duplicated != 0 || a.Stale != 0 || res.Totals.Corrupt != 0 {
		t.Errorf("lost %d, duplicated %d, stale %d, corrupt %d; want 0", a.Lost, a.Duplicated, a.Stale, res.Totals.Corrupt)
	}
	if res.Totals.Delivered == 0 || a.Expected == 0 || res.Totals.Delivered < a.Expected {
		t.Errorf("delivered %d of %d expected", res.Totals.Delivered, a.Expected)
	}
	if n := res.Latency["e2e"].Count; n != int64(res.Totals.Delivered) {
		t.Errorf("e2e histogram holds %d values for %d deliveries", n, res.Totals.Delivered)
	}
	if res.Totals.Acked < 300 {
		t.Errorf("acked %d; want about 450 (150/s for 3s)", res.Totals.Acked)
	}
	ck := res.Check
	if ck == nil {
		t.Fatal("no check result")
	}
	var tab strings.Builder
	ck.WriteTable(&tab)
	t.Logf("\n%s", tab.String())
	cr := ck.Report
	if !ck.OK || len(ck.Incomplete) > 0 || cr.Lost != 0 || cr.Duplicated != 0 || cr.Reordered != 0 || len(cr.Diverged) != 0 {
		t.Errorf("check verdict %s, incomplete %q", ck.Verdict(), ck.Incomplete)
	}
	// The checker saw what the range accounting saw.
	if uint64(cr.Acked) != a.Acked || uint64(cr.Sent) != res.Totals.Sent || uint64(cr.Delivered) != res.Totals.Delivered {
		t.Errorf("checker sent %d acked %d delivered %d; accounting sent %d acked %d delivered %d",
			cr.Sent, cr.Acked, cr.Delivered, res.Totals.Sent, a.Acked, res.Totals.Delivered)
	}
	want := res.Totals.Sent + res.Totals.Acked + res.Totals.Delivered + res.Totals.Joined
	if ck.Events != want {
		t.Errorf("%d events replayed; want %d (sent + acked + delivered + joined)", ck.Events, want)
	}
	back, err := ReadResult(filepath.Join(dir, "chat.json"))
	if err != nil {
		t.Fatalf("result file: %v", err)
	}
	if back.Check == nil || !back.Check.OK || back.Check.Report.Acked != cr.Acked {
		t.Errorf("result file's check: %+v", back.Check)
	}
	var sum strings.Builder
	WriteSummary(&sum, []*Result{back})
	if !strings.Contains(sum.String(), "check OK") || !strings.Contains(sum.String(), "duplicated") {
		t.Errorf("summary lacks the check table:\n%s", sum.String())
	}
}

// TestIdleAnswersHeartbeats holds idle connections through several edge
// heartbeats: none may be cut (4002, or a write failing on a stale deadline).
func TestIdleAnswersHeartbeats(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a pipeline for a few seconds")
	}
	t.Parallel()
	url := startPipeline(t, func(c *edge.Config) {
		c.Heartbeat, c.HeartbeatTimeout = 700*time.Millisecond, 500*time.Millisecond
	})
	r, err := New(Config{
		Scenario: ScenarioIdle, URLs: []string{url}, Secret: testSecret,
		Conns: 20, Rooms: 4, Duration: 3 * time.Second, Settle: 100 * time.Millisecond,
		Quiet: true, Out: filepath.Join(t.TempDir(), "idle"),
	}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	r.launcher = inProcessLauncher{}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v (problems: %v)", err, res.Problems)
	}
	if res.Totals.Joined != 20 || res.Totals.Disconnects != 0 {
		t.Fatalf("joined %d, disconnects %d (close codes %v)", res.Totals.Joined, res.Totals.Disconnects, res.CloseCodes)
	}
	if res.Idle == nil || res.Idle.Conns != 20 || res.Idle.HoldSeconds < 2 {
		t.Fatalf("idle result %+v", res.Idle)
	}
}

// testWriter sends the runner's notes to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
