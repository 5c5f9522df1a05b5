package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Stages of a WebSocket run.
const (
	stageConnect = "connect"
	stageRun     = "run"
	stageDrain   = "drain"
	stageFinish  = "finish"
	stageDone    = "done"
)

// Names of the machine-wide CPU series.
const (
	cpuMachine = "machine"
	cpuOthers  = "others"
)

// stepGrace is how long after a fan-out step ends its deliveries may still
// arrive before the step is judged; a step whose deliveries are still
// arriving then is judged when they stop, or at maxStepGrace, so that late
// is not taken for lost (lateness is the p99's business).
const (
	stepGrace    = 1500 * time.Millisecond
	maxStepGrace = 10 * time.Second
)

// coord is the coordinator of one WebSocket run. Only its run goroutine
// touches it, except the reader goroutines, which only send on msgs.
type coord struct {
	r     *Runner
	cfg   *Config
	res   *Result
	runID string
	t0    time.Time

	workers []*wstate
	msgs    chan wmsg

	ticks map[int]*tickAgg
	hists map[string]*hdr.Histogram // cumulative, by name ("e2e/3", "connect", …)
	procs []*procTrack
	tool  *procTrack // the tool's own processes, summed
	// machine holds /proc/stat samples by tick: busy and total ticks of all cores.
	machine map[int][2]uint64

	stage    string
	startAt  time.Time
	deadline time.Time // of the current stage

	// idle
	rssAt, holdEnd time.Time
	rssBefore      int64
	rssSampled     bool
	holdStartK     int
	idle           IdleResult

	// fanout
	steps     []Step
	judged    int
	stoppedBy string
	lastDeliv [maxPhases]uint64 // a step's deliveries when last looked at

	check *checkRun // nil unless Config.Check

	problems []string
}

// wstate is the coordinator's view of one worker.
type wstate struct {
	p      *workerProc
	ready  bool
	eof    bool
	result *workerResult
	last   *progress
}

type wmsg struct {
	w   int
	m   workerMsg
	eof bool
	err error
}

// tickAgg merges the workers' progress for one second.
type tickAgg struct {
	c            counters
	open, joined int64
	e2e, ack     *hdr.Histogram
	stage        string
}

// procTrack holds the samples of one process, or of a group (pids).
type procTrack struct {
	w       watched
	pids    []int
	samples map[int]procSample // by tick
	first   procSample
	max     int64
	failed  bool
}

func newCoord(r *Runner, res *Result) *coord {
	c := &coord{
		r:       r,
		cfg:     &r.cfg,
		res:     res,
		runID:   res.RunID,
		ticks:   make(map[int]*tickAgg),
		hists:   make(map[string]*hdr.Histogram),
		stage:   stageConnect,
		machine: make(map[int][2]uint64),
	}
	for _, w := range r.watched {
		c.procs = append(c.procs, &procTrack{w: w, pids: []int{w.PID}, samples: make(map[int]procSample)})
	}
	return c
}

func (c *coord) logf(format string, args ...any) {
	fmt.Fprintf(c.r.stderr, "hearth-load: "+format+"\n", args...)
}

func (c *coord) problem(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.problems = append(c.problems, s)
	c.logf("%s", s)
}

func (c *coord) run(ctx context.Context) error {
	cfg := c.cfg
	c.t0 = time.Now().Truncate(time.Millisecond)
	c.res.Workers = cfg.Workers
	// Samples before the first connection: the edges' baseline.
	for _, p := range c.procs {
		c.sample(p, 0)
	}
	c.sampleMachine(0)
	c.rssBefore = c.edgeRSS(0)

	c.logf("%s: %d connections over %d worker(s) to %s (run %s)", cfg.Name, cfg.Conns, cfg.Workers, strings.Join(cfg.URLs, ","), c.runID)
	c.msgs = make(chan wmsg, 256)
	if cfg.Check {
		c.check = newCheckRun(cfg, c.runID, cfg.Workers)
	}
	toolPIDs := []int{os.Getpid()}
	for i := 0; i < cfg.Workers; i++ {
		p, err := c.r.launcher.launch(ctx, i)
		if err != nil {
			c.killAll()
			return err
		}
		ws := &wstate{p: p}
		c.workers = append(c.workers, ws)
		if p.pid != os.Getpid() {
			toolPIDs = append(toolPIDs, p.pid)
		}
		spec := workerSpec{
			Config: *cfg, RunID: c.runID, Index: i, Count: cfg.Workers,
			First: i * cfg.Conns / cfg.Workers, Last: (i + 1) * cfg.Conns / cfg.Workers,
			T0: c.t0.UnixNano(),
		}
		if err := newLineWriter(p.in).write(spec); err != nil {
			c.killAll()
			return fmt.Errorf("loadtest: sending spec to worker %d: %w", i, err)
		}
		go c.read(i, p)
	}
	c.tool = &procTrack{w: watched{Name: "hearth-load"}, pids: toolPIDs, samples: make(map[int]procSample)}
	c.sample(c.tool, 0)
	c.deadline = c.t0.Add(cfg.Ramp + cfg.ConnectTimeout + cfg.JoinTimeout + 30*time.Second)

	k := 1
	timer := time.NewTimer(time.Until(c.tickTime(k)))
	defer timer.Stop()
	var runErr error
	for c.stage != stageDone {
		select {
		case m := <-c.msgs:
			c.handle(m)
		case <-timer.C:
			c.onTick(k)
			k = max(k+1, int(time.Since(c.t0)/time.Second)+1)
			timer.Reset(time.Until(c.tickTime(k)))
		case <-ctx.Done():
			runErr = fmt.Errorf("loadtest: run cut short: %w", ctx.Err())
			c.abort()
		}
	}
	c.reap()
	c.finishResult()
	if runErr == nil && len(c.problems) > 0 && c.res.Totals.Connected == 0 {
		runErr = errors.New("loadtest: no connection succeeded")
	}
	return runErr
}

// reap waits for the worker processes to exit, killing those that linger.
func (c *coord) reap() {
	for i, w := range c.workers {
		done := make(chan error, 1)
		go func() { done <- w.p.wait() }()
		select {
		case err := <-done:
			if err != nil && w.result == nil {
				c.problem("worker %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			c.problem("worker %d still running 10s after its result; killing it", i)
			w.p.kill()
		}
	}
}

func (c *coord) tickTime(k int) time.Time { return c.t0.Add(time.Duration(k) * time.Second) }

// read forwards one worker's lines to msgs until its output ends.
func (c *coord) read(i int, p *workerProc) {
	sc := newLineScanner(p.out)
	for {
		var m workerMsg
		if err := readLine(sc, &m); err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			c.msgs <- wmsg{w: i, eof: true, err: err}
			return
		}
		c.msgs <- wmsg{w: i, m: m}
	}
}

func (c *coord) handle(m wmsg) {
	w := c.workers[m.w]
	if m.eof {
		w.eof = true
		if m.err != nil {
			c.problem("worker %d output: %v", m.w, m.err)
		}
		if w.result == nil {
			c.problem("worker %d ended without a result", m.w)
		}
		if c.stage == stageFinish && c.allFinished() {
			c.stage = stageDone
		}
		return
	}
	switch m.m.Type {
	case msgProgress:
		c.addProgress(w, m.m.Progress)
	case msgReady:
		w.ready = true
	case msgResult:
		w.result = m.m.Result
	case msgCheck:
		if c.check != nil && m.m.Check != nil {
			c.check.feed(m.w, m.m.Check)
			if c.stage == stageFinish {
				// Replaying millions of events takes seconds: a worker
				// still shipping them is not a worker that hangs.
				c.deadline = time.Now().Add(60 * time.Second)
			}
		}
	case msgError:
		c.problem("worker %d: %s", m.w, m.m.Error)
	}
}

func (c *coord) addProgress(w *wstate, p *progress) {
	if p == nil {
		return
	}
	w.last = p
	t := c.ticks[p.Tick]
	if t == nil {
		t = &tickAgg{stage: c.stage}
		c.ticks[p.Tick] = t
	}
	t.c.add(p.C)
	t.open += p.Open
	t.joined += p.Joined
	for name, b := range p.Hists {
		h := c.hists[name]
		if err := mergeInto(&h, b); err != nil {
			c.problem("worker histogram %s: %v", name, err)
			continue
		}
		c.hists[name] = h
		switch {
		case strings.HasPrefix(name, "e2e/"):
			_ = mergeInto(&t.e2e, b)
		case strings.HasPrefix(name, "ack/"):
			_ = mergeInto(&t.ack, b)
		}
	}
}

// addHist merges h into the run's histogram name.
func (c *coord) addHist(name string, h *hdr.Histogram) {
	hm := c.hists[name]
	if hm == nil {
		hm = newHist()
		c.hists[name] = hm
	}
	hm.Merge(h)
}

func (c *coord) allReady() bool {
	for _, w := range c.workers {
		if !w.ready && !w.eof {
			return false
		}
	}
	return true
}

func (c *coord) allFinished() bool {
	for _, w := range c.workers {
		if !w.eof {
			return false
		}
	}
	return true
}

func (c *coord) sendAll(cmd command) {
	for i, w := range c.workers {
		if w.eof {
			continue
		}
		if err := newLineWriter(w.p.in).write(cmd); err != nil {
			c.problem("sending %s to worker %d: %v", cmd.Cmd, i, err)
		}
	}
}

func (c *coord) killAll() {
	for _, w := range c.workers {
		w.p.kill()
	}
}

// abort ends the run now: workers are asked to finish, and killed if they
// do not within a few seconds.
func (c *coord) abort() {
	c.problem("aborted in stage %s", c.stage)
	c.res.Aborted = true
	c.sendAll(command{Cmd: cmdFinish})
	limit := time.After(15 * time.Second)
	for !c.allFinished() {
		select {
		case m := <-c.msgs:
			c.handle(m)
		case <-limit:
			c.problem("workers did not finish within 15s of the abort; killing them")
			c.killAll()
			limit = time.After(5 * time.Second)
			for !c.allFinished() {
				select {
				case m := <-c.msgs:
					c.handle(m)
				case <-limit:
					c.stage = stageDone
					return
				}
			}
		}
	}
	c.stage = stageDone
}

// onTick runs at T0 + k seconds: it samples the processes, moves the
// scenario along, and prints the progress of the second that just ended.
func (c *coord) onTick(k int) {
	for _, p := range c.procs {
		c.sample(p, k)
	}
	c.sample(c.tool, k)
	c.sampleMachine(k)
	now := time.Now()
	cfg := c.cfg
	switch c.stage {
	case stageConnect:
		if c.allReady() || now.After(c.deadline) {
			if !c.allReady() {
				c.problem("not every worker was ready within %v; going on", c.deadline.Sub(c.t0))
			}
			if cfg.Scenario == ScenarioStorm {
				c.finish()
				break
			}
			c.startAt = c.tickTime(k + 1)
			c.sendAll(command{Cmd: cmdStart, At: c.startAt.UnixNano()})
			c.stage = stageRun
			c.rssAt = c.startAt.Add(cfg.Settle)
			c.holdEnd = c.rssAt.Add(cfg.Duration)
		}
	case stageRun:
		switch cfg.Scenario {
		case ScenarioIdle:
			if !c.rssSampled && !now.Before(c.rssAt) {
				c.sampleIdle(k)
			}
			if !now.Before(c.holdEnd) {
				c.endIdle(k)
				c.sendAll(command{Cmd: cmdStop})
				c.finish()
			}
		case ScenarioChat:
			if !now.Before(c.startAt.Add(cfg.Duration)) {
				c.drain()
			}
		case ScenarioFanout:
			c.judgeSteps(now, false)
			if c.stoppedBy != "" || !now.Before(c.startAt.Add(cfg.runLen())) {
				c.drain()
			}
		}
	case stageDrain:
		if cfg.Scenario == ScenarioFanout {
			c.judgeSteps(now, false)
		}
		if c.caughtUp() || now.After(c.deadline) {
			if cfg.Scenario == ScenarioFanout {
				c.judgeSteps(now, true)
			}
			c.finish()
		}
	case stageFinish:
		if c.allFinished() {
			c.stage = stageDone
		} else if now.After(c.deadline) {
			c.problem("workers did not report within 60s of finish; killing them")
			c.killAll()
			c.deadline = now.Add(10 * time.Second)
			c.stage = stageFinish + "-kill"
		}
	case stageFinish + "-kill":
		if c.allFinished() || now.After(c.deadline) {
			c.stage = stageDone
		}
	}
	if t := c.ticks[k-1]; t != nil && !c.cfg.Quiet {
		p := c.point(k - 1)
		fmt.Fprintln(c.r.stderr, progressLine(p.T, t.stage, &p, c.totalsSoFar(), p.CPU))
	}
}

func (c *coord) drain() {
	if c.stage != stageRun {
		return
	}
	c.sendAll(command{Cmd: cmdStop})
	c.stage = stageDrain
	c.deadline = time.Now().Add(c.cfg.Grace)
}

func (c *coord) finish() {
	c.sendAll(command{Cmd: cmdFinish})
	c.stage = stageFinish
	c.deadline = time.Now().Add(60 * time.Second)
}

// caughtUp reports whether every publish got its reply and every member its
// deliveries (assuming rooms of equal size, as the scenarios make them).
func (c *coord) caughtUp() bool {
	var inflight, joined int64
	var acked, delivered uint64
	for _, w := range c.workers {
		if w.last == nil {
			continue
		}
		inflight += w.last.Inflight
		joined += w.last.Joined
		for i := range w.last.PhaseAcked {
			acked += w.last.PhaseAcked[i]
			delivered += w.last.PhaseDelivered[i]
		}
	}
	perRoom := float64(joined) / float64(c.cfg.Rooms)
	return inflight <= 0 && float64(delivered) >= float64(acked)*perRoom
}

func (c *coord) totalsSoFar() counters {
	var t counters
	for _, a := range c.ticks {
		t.add(a.c)
	}
	return t
}

// sampleMachine reads the whole machine's CPU at tick k.
func (c *coord) sampleMachine(k int) {
	if busy, total, err := machineCPU(); err == nil {
		c.machine[k] = [2]uint64{busy, total}
	}
}

// sample reads /proc for p at tick k; a group sums its processes.
func (c *coord) sample(p *procTrack, k int) {
	if p == nil || p.failed {
		return
	}
	var s procSample
	ok := false
	for _, pid := range p.pids {
		x, err := readProc(pid)
		if err != nil {
			continue
		}
		ok = true
		s.At, s.CPU, s.RSS, s.Threads = x.At, s.CPU+x.CPU, s.RSS+x.RSS, s.Threads+x.Threads
	}
	if !ok {
		if len(p.samples) > 0 && p.w.Name != "hearth-load" {
			c.problem("process %s (pid %d) is gone", p.w.Name, p.w.PID)
			p.failed = true
		}
		return
	}
	if len(p.samples) == 0 {
		p.first = s
	}
	p.samples[k] = s
	p.max = max(p.max, s.RSS)
}

// cpuBetween returns p's CPU time between ticks a and b, and whether both exist.
func (p *procTrack) cpuBetween(a, b int) (time.Duration, bool) {
	sa, ok1 := p.samples[a]
	sb, ok2 := p.samples[b]
	if !ok1 || !ok2 {
		return 0, false
	}
	return sb.CPU - sa.CPU, true
}

// edgeRSS sums the edges' RSS at tick k.
func (c *coord) edgeRSS(k int) int64 {
	var n int64
	for _, p := range c.procs {
		if p.w.Edge {
			n += p.samples[k].RSS
		}
	}
	return n
}

// edgeCPU sums the edges' CPU between ticks a and b.
func (c *coord) edgeCPU(a, b int) time.Duration {
	var d time.Duration
	for _, p := range c.procs {
		if p.w.Edge {
			x, _ := p.cpuBetween(a, b)
			d += x
		}
	}
	return d
}

func (c *coord) sampleIdle(k int) {
	c.rssSampled = true
	var open, toolRSS int64
	for _, w := range c.workers {
		if w.last != nil {
			open += w.last.Open
			toolRSS += w.last.RSS
		}
	}
	c.idle = IdleResult{Conns: open, RSSBefore: c.rssBefore, RSSAfter: c.edgeRSS(k)}
	if open > 0 {
		c.idle.RSSPerConn = float64(c.idle.RSSAfter-c.idle.RSSBefore) / float64(open)
		if c.tool != nil && len(c.tool.pids) > 1 {
			// Workers are processes of their own: their RSS is the tool's.
			c.idle.ToolRSSPerConn = float64(toolRSS) / float64(open)
		}
	}
	c.holdStartK = k
	c.logf("idle: %d connections, edges' RSS %.1f MiB → %.1f MiB: %.1f KiB per connection",
		open, mib(c.idle.RSSBefore), mib(c.idle.RSSAfter), c.idle.RSSPerConn/1024)
}

func (c *coord) endIdle(k int) {
	if !c.rssSampled {
		c.sampleIdle(k)
	}
	c.idle.HoldSeconds = float64(k - c.holdStartK)
	if c.idle.HoldSeconds > 0 {
		c.idle.IdleCPU = c.edgeCPU(c.holdStartK, k).Seconds() / c.idle.HoldSeconds * 100
	}
	c.res.Idle = &c.idle
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// judgeSteps judges the fan-out steps whose deliveries have had time to
// arrive (all remaining ones when final), and stops the run at the first
// that fails.
func (c *coord) judgeSteps(now time.Time, final bool) {
	cfg := c.cfg
	for c.judged < cfg.steps() && c.stoppedBy == "" {
		i := c.judged
		start := c.startAt.Add(time.Duration(i) * cfg.StepDuration)
		end := start.Add(cfg.StepDuration)
		if now.Before(end.Add(stepGrace)) && !final {
			return
		}
		if start.After(now) {
			return
		}
		var deliv uint64
		for _, w := range c.workers {
			if w.last != nil && i < len(w.last.PhaseDelivered) {
				deliv += w.last.PhaseDelivered[i]
			}
		}
		if deliv != c.lastDeliv[i] && !final && now.Before(end.Add(maxStepGrace)) {
			c.lastDeliv[i] = deliv
			return
		}
		s := c.judgeStep(i, start, end)
		c.steps = append(c.steps, s)
		c.judged++
		mark := "ok"
		if !s.Pass {
			mark = "FAIL: " + s.Reason
			c.stoppedBy = fmt.Sprintf("step %d: %s", i, s.Reason)
		}
		c.logf("step %d: %.0f msg/s → %s deliveries/s, p99 %.1f ms, lost %d, edge %.2f µs/delivery — %s",
			i, s.Rate, thousands(s.Deliveries), s.P99, s.Lost, s.EdgeCPUPerDelivery, mark)
	}
}

// minStepPublished is the share of a step's publish rate that must be
// acknowledged within the step for it to count as sustained.
const minStepPublished = 0.9

func (c *coord) judgeStep(i int, start, end time.Time) Step {
	s := Step{Index: i, Rate: c.cfg.phaseRate(i)}
	var acked, delivered uint64
	for _, w := range c.workers {
		if w.last == nil {
			continue
		}
		s.Members += w.last.Joined
		if i < len(w.last.PhaseAcked) {
			acked += w.last.PhaseAcked[i]
			delivered += w.last.PhaseDelivered[i]
		}
	}
	s.Expected = acked * uint64(max(s.Members, 0))
	s.Delivered = delivered
	if s.Expected > delivered {
		s.Lost = s.Expected - delivered
	}
	s.Published = float64(acked) / c.cfg.StepDuration.Seconds()
	if h := c.hists["e2e/"+strconv.Itoa(i)]; h != nil {
		sum := summarize(h)
		s.P50, s.P99, s.Max = sum.P50, sum.P99, sum.Max
	}
	// Steady seconds: ticks wholly inside the step, without its first second.
	k0 := int(start.Sub(c.t0)/time.Second) + 2
	k1 := int(end.Sub(c.t0) / time.Second)
	var n int
	var deliv uint64
	var edge, tool time.Duration
	for k := k0; k <= k1; k++ {
		t := c.ticks[k]
		if t == nil {
			continue
		}
		n++
		deliv += t.c.Delivered
		edge += c.edgeCPU(k-1, k)
		if d, ok := c.tool.cpuBetween(k-1, k); ok {
			tool += d
		}
	}
	// Disconnects from the step's start to its judgement.
	for k := k0 - 1; k <= k1+2; k++ {
		if t := c.ticks[k]; t != nil {
			s.Disconnects += t.c.Disconnects
		}
	}
	if n > 0 {
		s.Deliveries = float64(deliv) / float64(n)
		s.EdgeCPU = edge.Seconds() / float64(n) * 100
		s.ToolCPU = tool.Seconds() / float64(n) * 100
		if deliv > 0 {
			s.EdgeCPUPerDelivery = float64(edge.Microseconds()) / float64(deliv)
		}
	}
	var reasons []string
	if acked == 0 {
		reasons = append(reasons, "nothing acknowledged")
	} else if s.Published < minStepPublished*s.Rate {
		// The publishers wait for their acks: a pipeline that cannot keep
		// up slows them down, and the step's deliveries per second then
		// come partly from earlier steps' backlog.
		reasons = append(reasons, fmt.Sprintf("acknowledged %.1f of %.4g msg/s", s.Published, s.Rate))
	}
	if s.Lost > 0 {
		reasons = append(reasons, fmt.Sprintf("lost %d deliveries", s.Lost))
	}
	if s.Disconnects > 0 {
		reasons = append(reasons, fmt.Sprintf("%d disconnects", s.Disconnects))
	}
	if p99 := float64(c.cfg.StepP99) / float64(time.Millisecond); s.P99 > p99 {
		reasons = append(reasons, fmt.Sprintf("p99 %.0f ms > %.0f ms", s.P99, p99))
	}
	s.Pass = len(reasons) == 0
	s.Reason = strings.Join(reasons, ", ")
	return s
}

// point builds the timeline point of tick k.
func (c *coord) point(k int) Point {
	t := c.ticks[k]
	p := Point{T: float64(k)}
	if t == nil {
		return p
	}
	p.Stage = t.stage
	p.Open, p.Joined = t.open, t.joined
	p.Connects, p.Sent, p.Acked, p.Delivered = t.c.Connected, t.c.Sent, t.c.Acked, t.c.Delivered
	p.Errors = t.c.ErrorFrames + t.c.ConnectErrors + t.c.SendErrors
	p.Disconnects = t.c.Disconnects
	if t.e2e != nil && t.e2e.TotalCount() > 0 {
		p.E2E = &PointLat{P50: us2ms(t.e2e.ValueAtQuantile(50)), P99: us2ms(t.e2e.ValueAtQuantile(99)), Max: us2ms(t.e2e.Max())}
	}
	if t.ack != nil && t.ack.TotalCount() > 0 {
		p.Ack = &PointLat{P50: us2ms(t.ack.ValueAtQuantile(50)), P99: us2ms(t.ack.ValueAtQuantile(99)), Max: us2ms(t.ack.Max())}
	}
	p.CPU = map[string]float64{}
	p.RSS = map[string]int64{}
	var sampled float64
	for _, pt := range append(append([]*procTrack(nil), c.procs...), c.tool) {
		if pt == nil {
			continue
		}
		if d, ok := pt.cpuBetween(k-1, k); ok {
			p.CPU[pt.w.Name] = d.Seconds() * 100
			sampled += d.Seconds() * 100
		}
		if s, ok := pt.samples[k]; ok {
			p.RSS[pt.w.Name] = s.RSS
		}
	}
	// The whole machine, and what the processes not sampled used: other
	// work on a shared machine shows up here.
	a, ok1 := c.machine[k-1]
	b, ok2 := c.machine[k]
	if ok1 && ok2 && b[1] > a[1] {
		busy := float64(b[0]-a[0]) / float64(b[1]-a[1]) * float64(c.res.Host.CPUs) * 100
		p.CPU[cpuMachine] = busy
		p.CPU[cpuOthers] = max(0, busy-sampled)
	}
	return p
}

// finishResult merges the workers' results into c.res.
func (c *coord) finishResult() {
	res := c.res
	cfg := c.cfg
	acked := make(map[int]*rangeSet)
	var members []memberReport
	res.ErrorCodes = map[string]uint64{}
	res.CloseCodes = map[string]uint64{}
	var firstDial, lastConnect int64
	for _, w := range c.workers {
		r := w.result
		if r == nil {
			continue
		}
		res.Totals.add(r.Totals)
		members = append(members, r.Members...)
		for room, rs := range r.Acked {
			s := acked[room]
			if s == nil {
				s = &rangeSet{}
				acked[room] = s
			}
			for _, x := range rs {
				if n := s.addRange(x); n < x.len() {
					res.DupAcks += x.len() - n
				}
			}
		}
		res.DupAcks += r.DupAcks
		for k, v := range r.ErrorCodes {
			res.ErrorCodes[k] += v
		}
		for k, v := range r.CloseCodes {
			res.CloseCodes[k] += v
		}
		res.ConnectErrorSamples = append(res.ConnectErrorSamples, r.ConnectErrorSamples...)
		if r.FirstDial > 0 && (firstDial == 0 || r.FirstDial < firstDial) {
			firstDial = r.FirstDial
		}
		lastConnect = max(lastConnect, r.LastConnect)
	}
	if cfg.publishes() {
		a := account(acked, members)
		res.Accounting = &a
	}
	if c.check != nil {
		results := make([]*workerResult, len(c.workers))
		for i, w := range c.workers {
			results[i] = w.result
		}
		res.Check = c.check.result(results)
		c.logf("check: %s", res.Check.Verdict())
	}
	// Latency: phases merged.
	merged := map[string]*hdr.Histogram{}
	for name, h := range c.hists {
		base, _, _ := strings.Cut(name, "/")
		if merged[base] == nil {
			merged[base] = newHist()
		}
		merged[base].Merge(h)
	}
	res.Histograms = map[string][]byte{}
	for name, h := range merged {
		res.Latency[name] = summarize(h)
		if b, err := encodeHist(h); err == nil {
			res.Histograms[name] = b
		}
	}
	// Timeline.
	var ks []int
	for k := range c.ticks {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	for _, k := range ks {
		res.Timeline = append(res.Timeline, c.point(k))
	}
	c.finishProcs()
	switch cfg.Scenario {
	case ScenarioStorm:
		s := &StormResult{Attempted: res.Totals.Dials, Connected: res.Totals.Connected, Errors: res.Totals.ConnectErrors}
		if firstDial > 0 && lastConnect > firstDial {
			s.Seconds = float64(lastConnect-firstDial) / 1e9
			s.Rate = float64(s.Connected) / s.Seconds
		}
		res.Storm = s
	case ScenarioIdle:
		if res.Idle == nil && c.rssSampled {
			res.Idle = &c.idle
		}
	case ScenarioChat:
		d := cfg.Duration.Seconds()
		res.Chat = &ChatResult{Rooms: cfg.Rooms, Members: cfg.Members, TargetRate: cfg.Rate,
			Published: float64(res.Totals.Acked) / d, Deliveries: float64(res.Totals.Delivered) / d}
	case ScenarioFanout:
		res.Steps = c.steps
		f := &FanoutResult{BestStep: -1, LossFreeStep: -1, StoppedBy: c.stoppedBy}
		if f.StoppedBy == "" {
			f.StoppedBy = "last step passed"
		}
		for _, s := range c.steps {
			f.Members = max(f.Members, s.Members)
			if s.Pass && s.Deliveries >= f.BestDeliveries {
				f.BestStep, f.BestDeliveries, f.BestRate = s.Index, s.Deliveries, s.Rate
			}
			if s.Lost == 0 && s.Disconnects == 0 && s.Expected > 0 && s.Deliveries >= f.LossFreeDeliveries {
				f.LossFreeStep, f.LossFreeDeliveries, f.LossFreeP99, f.EdgeCPUPerDelivery = s.Index, s.Deliveries, s.P99, s.EdgeCPUPerDelivery
			}
		}
		res.Fanout = f
	}
	res.Problems = append(res.Problems, c.problems...)
}

func (c *coord) finishProcs() {
	startK := 0
	if !c.startAt.IsZero() {
		startK = int(c.startAt.Sub(c.t0) / time.Second)
	}
	for _, p := range append(append([]*procTrack(nil), c.procs...), c.tool) {
		if p == nil || len(p.samples) == 0 {
			continue
		}
		var lastK int
		for k := range p.samples {
			lastK = max(lastK, k)
		}
		last := p.samples[lastK]
		pr := ProcResult{Name: p.w.Name, PID: p.w.PID, Edge: p.w.Edge,
			CPUSeconds: (last.CPU - p.first.CPU).Seconds(), RSSStart: p.first.RSS, RSSEnd: last.RSS, RSSMax: p.max, Threads: last.Threads}
		sk := startK
		if _, ok := p.samples[sk]; !ok {
			sk = 0
		}
		if d, ok := p.cpuBetween(sk, lastK); ok && lastK > sk {
			pr.AvgCPU = d.Seconds() / float64(lastK-sk) * 100
		}
		c.res.Processes = append(c.res.Processes, pr)
	}
}
