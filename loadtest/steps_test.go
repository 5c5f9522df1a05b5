package loadtest

import (
	"io"
	"testing"
	"time"
)

func TestFanoutSchedule(t *testing.T) {
	t.Parallel()
	c := Config{Scenario: ScenarioFanout, Secret: testSecret, StepStart: 10, StepFactor: 2, MaxSteps: 4, StepDuration: 3 * time.Second}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	want := []float64{10, 20, 40, 80}
	for p, w := range want {
		if got := c.phaseRate(p); got != w {
			t.Errorf("phase %d rate %v, want %v", p, got, w)
		}
	}
	if c.steps() != 4 || c.runLen() != 12*time.Second || c.Rooms != 1 || c.Members != 10000 || c.Publishers != 10 {
		t.Errorf("steps %d runLen %v rooms %d members %d publishers %d", c.steps(), c.runLen(), c.Rooms, c.Members, c.Publishers)
	}
	for g := 0; g < 12; g++ {
		if c.isPublisher(g) != (g < 10) || c.room(g) != 0 {
			t.Errorf("conn %d: publisher %v room %d", g, c.isPublisher(g), c.room(g))
		}
	}
}

// fakeFanout builds a coordinator in the middle of a fan-out run: one
// worker with 100 joined members, step 0 from t0+2s to t0+7s, one edge
// whose CPU grows 0.1 s per second.
func fakeFanout(t *testing.T, acked, delivered uint64, disconnects uint64, latencyUS int64) *coord {
	t.Helper()
	cfg := Config{Scenario: ScenarioFanout, Secret: testSecret, Members: 100, StepStart: 10, StepDuration: 5 * time.Second, MaxSteps: 3}
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: cfg, stderr: io.Discard}
	c := newCoord(r, &Result{Latency: map[string]Summary{}})
	c.t0 = time.Unix(1000, 0)
	c.startAt = c.t0.Add(2 * time.Second)
	c.workers = []*wstate{{last: &progress{Joined: 100, PhaseAcked: []uint64{acked, 0, 0}, PhaseDelivered: []uint64{delivered, 0, 0}}}}
	edge := &procTrack{w: watched{Name: "edge", Edge: true}, samples: map[int]procSample{}}
	c.procs = []*procTrack{edge}
	c.tool = &procTrack{w: watched{Name: "hearth-load"}, samples: map[int]procSample{}}
	for k := 0; k <= 10; k++ {
		edge.samples[k] = procSample{CPU: time.Duration(k) * 100 * time.Millisecond}
		c.tool.samples[k] = procSample{CPU: time.Duration(k) * 300 * time.Millisecond}
		c.ticks[k] = &tickAgg{c: counters{Delivered: 1000}}
	}
	c.ticks[5].c.Disconnects = disconnects
	h := newRecorder()
	for i := 0; i < 100; i++ {
		h.record(i, latencyUS)
	}
	c.hists["e2e/0"] = h.swap()
	return c
}

func TestJudgeStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		acked, delivered      uint64
		disconnects           uint64
		latencyUS             int64
		pass                  bool
		reason                string
		wantLost, wantExpectd uint64
	}{
		{name: "pass", acked: 50, delivered: 5000, latencyUS: 2000, pass: true, wantExpectd: 5000},
		{name: "loss", acked: 50, delivered: 4990, latencyUS: 2000, reason: "lost 10 deliveries", wantLost: 10, wantExpectd: 5000},
		{name: "slow", acked: 50, delivered: 5000, latencyUS: 150000, reason: "p99 150 ms > 100 ms", wantExpectd: 5000},
		{name: "disconnect", acked: 50, delivered: 5000, disconnects: 2, latencyUS: 2000, reason: "2 disconnects", wantExpectd: 5000},
		{name: "nothing acked", acked: 0, delivered: 0, latencyUS: 2000, reason: "nothing acknowledged"},
		{name: "publishers held back", acked: 44, delivered: 4400, latencyUS: 2000, reason: "acknowledged 8.8 of 10 msg/s", wantExpectd: 4400},
		{name: "publishers nearly on time", acked: 45, delivered: 4500, latencyUS: 2000, pass: true, wantExpectd: 4500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := fakeFanout(t, tt.acked, tt.delivered, tt.disconnects, tt.latencyUS)
			s := c.judgeStep(0, c.startAt, c.startAt.Add(5*time.Second))
			if s.Pass != tt.pass || s.Reason != tt.reason || s.Lost != tt.wantLost || s.Expected != tt.wantExpectd {
				t.Fatalf("step %+v", s)
			}
			// Steady seconds are ticks 4..7 (the step's first second is
			// skipped): 1000 deliveries and 0.1 s of edge CPU each.
			if s.Deliveries != 1000 || s.EdgeCPUPerDelivery != 100 || s.EdgeCPU != 10 || s.ToolCPU != 30 {
				t.Fatalf("deliveries %v/s, edge %v µs/delivery, edge %v%%, tool %v%%", s.Deliveries, s.EdgeCPUPerDelivery, s.EdgeCPU, s.ToolCPU)
			}
		})
	}
}

// judgeSteps waits for a step's grace, stops at the first failure, and
// the fan-out summary picks the best passing step.
func TestJudgeStepsStopsAtFirstFailure(t *testing.T) {
	t.Parallel()
	c := fakeFanout(t, 50, 5000, 0, 1000)
	c.judgeSteps(c.startAt.Add(5*time.Second), false)
	if c.judged != 0 {
		t.Fatal("step judged before its grace")
	}
	c.judgeSteps(c.startAt.Add(5*time.Second+stepGrace), false)
	if c.judged != 0 {
		t.Fatal("step judged while its deliveries were still arriving")
	}
	c.judgeSteps(c.startAt.Add(6*time.Second+stepGrace), false)
	if c.judged != 1 || c.stoppedBy != "" {
		t.Fatalf("judged %d, stopped by %q", c.judged, c.stoppedBy)
	}
	// Step 1 loses deliveries.
	c.workers[0].last.PhaseAcked[1] = 10
	c.workers[0].last.PhaseDelivered[1] = 999
	c.judgeSteps(c.startAt.Add(10*time.Second+stepGrace), false)
	c.judgeSteps(c.startAt.Add(11*time.Second+stepGrace), false)
	if c.judged != 2 || c.stoppedBy == "" {
		t.Fatalf("judged %d, stopped by %q", c.judged, c.stoppedBy)
	}
	c.judgeSteps(c.startAt.Add(time.Minute), true)
	if c.judged != 2 {
		t.Fatal("judged a step after the run stopped")
	}
	c.finishResult()
	f := c.res.Fanout
	if f == nil || f.BestStep != 0 || f.BestDeliveries != 1000 || f.LossFreeStep != 0 || f.EdgeCPUPerDelivery != 100 || f.Members != 100 || f.StoppedBy == "" {
		t.Fatalf("fanout %+v", f)
	}
}
