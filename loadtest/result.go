package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything a run measured; it is written as <out>.json and
// rendered as <out>.html.
type Result struct {
	Name     string    `json:"name"`
	Scenario Scenario  `json:"scenario"`
	RunID    string    `json:"run_id"`
	Started  time.Time `json:"started"`
	// Elapsed is the run's wall time in seconds.
	Elapsed float64 `json:"elapsed_s"`
	Command string  `json:"command"`
	Config  Config  `json:"config"`
	Host    Host    `json:"host"`
	Workers int     `json:"workers"`
	// Aborted is set when the hard deadline or a failure cut the run short.
	Aborted  bool     `json:"aborted,omitempty"`
	Problems []string `json:"problems,omitempty"`
	// OthersCPU is the average CPU, in % of one core, that processes the
	// run did not sample used during it: on a shared machine, the noise.
	OthersCPU float64 `json:"others_cpu_pct"`
	// LoadAvg is /proc/loadavg at the start and at the end.
	LoadAvg [2]string `json:"loadavg"`

	Totals     counters    `json:"totals"`
	Accounting *Accounting `json:"accounting,omitempty"`
	DupAcks    uint64      `json:"dup_acks,omitempty"`
	// Check is the shared/checker verdict of a -check run.
	Check *CheckResult `json:"check,omitempty"`
	// Latency holds the summaries of "e2e", "ack", "connect", "join" and
	// "lag" (the pacing delay of the tool itself: planned → actual send).
	Latency map[string]Summary `json:"latency"`
	// Histograms are the same, HdrHistogram V2 compressed, for re-analysis.
	Histograms map[string][]byte `json:"histograms,omitempty"`

	ErrorCodes          map[string]uint64 `json:"error_codes,omitempty"`
	CloseCodes          map[string]uint64 `json:"close_codes,omitempty"`
	ConnectErrorSamples []string          `json:"connect_error_samples,omitempty"`

	Timeline  []Point       `json:"timeline"`
	Processes []ProcResult  `json:"processes,omitempty"`
	Steps     []Step        `json:"steps,omitempty"`
	Idle      *IdleResult   `json:"idle,omitempty"`
	Storm     *StormResult  `json:"storm,omitempty"`
	Chat      *ChatResult   `json:"chat,omitempty"`
	AMQP      *AMQPResult   `json:"amqp,omitempty"`
	Targets   []Target      `json:"targets,omitempty"`
	Fanout    *FanoutResult `json:"fanout,omitempty"`
}

// Host describes the machine.
type Host struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	MemTotal int64  `json:"mem_total_bytes"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				h.MemTotal = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// Point is one second of the run.
type Point struct {
	// T is the end of the second, in seconds since the run began.
	T      float64 `json:"t"`
	Stage  string  `json:"stage"`
	Open   int64   `json:"open"`
	Joined int64   `json:"joined"`
	// Per-second counts.
	Connects    uint64 `json:"connects,omitempty"`
	Sent        uint64 `json:"sent,omitempty"`
	Acked       uint64 `json:"acked,omitempty"`
	Delivered   uint64 `json:"delivered,omitempty"`
	Errors      uint64 `json:"errors,omitempty"`
	Disconnects uint64 `json:"disconnects,omitempty"`
	// E2E and Ack are the second's latency percentiles in ms.
	E2E *PointLat `json:"e2e,omitempty"`
	Ack *PointLat `json:"ack,omitempty"`
	// CPU is each sampled process's CPU over the second, in % of one core;
	// "hearth-load" is the tool's workers together. RSS in bytes.
	CPU map[string]float64 `json:"cpu_pct,omitempty"`
	RSS map[string]int64   `json:"rss,omitempty"`
}

// PointLat is one second's latency percentiles in ms.
type PointLat struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// ProcResult summarizes one sampled process over the run.
type ProcResult struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	Edge       bool    `json:"edge,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	// AvgCPU is CPUSeconds over the run's running stage, in % of one core.
	AvgCPU   float64 `json:"avg_cpu_pct"`
	RSSStart int64   `json:"rss_start"`
	RSSEnd   int64   `json:"rss_end"`
	RSSMax   int64   `json:"rss_max"`
	Threads  int     `json:"threads"`
}

// Step is one fan-out step.
type Step struct {
	Index int     `json:"index"`
	Rate  float64 `json:"rate"`
	// Published is acknowledged publishes per second.
	Published float64 `json:"published_per_s"`
	// Deliveries is message frames received per second (steady seconds).
	Deliveries float64 `json:"deliveries_per_s"`
	Members    int64   `json:"members"`
	Expected   uint64  `json:"expected"`
	Delivered  uint64  `json:"delivered"`
	Lost       uint64  `json:"lost"`
	// Disconnects during the step.
	Disconnects uint64  `json:"disconnects"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	// EdgeCPU is the edges' CPU in % of one core; EdgeCPUPerDelivery in µs.
	EdgeCPU            float64 `json:"edge_cpu_pct"`
	EdgeCPUPerDelivery float64 `json:"edge_cpu_per_delivery_us"`
	ToolCPU            float64 `json:"tool_cpu_pct"`
	Pass               bool    `json:"pass"`
	Reason             string  `json:"reason,omitempty"`
}

// FanoutResult is the fan-out summary.
type FanoutResult struct {
	Members int64 `json:"members"`
	// BestStep is the fastest step that passed every check (-1: none).
	BestStep       int     `json:"best_step"`
	BestDeliveries float64 `json:"best_deliveries_per_s"`
	BestRate       float64 `json:"best_rate"`
	// LossFreeStep is the fastest step without a lost delivery or a
	// disconnect, whatever its latency (-1: none); the throughput
	// goal ("with 0 loss") and the CPU per delivery are read from it.
	LossFreeStep       int     `json:"loss_free_step"`
	LossFreeDeliveries float64 `json:"loss_free_deliveries_per_s"`
	LossFreeP99        float64 `json:"loss_free_p99_ms"`
	EdgeCPUPerDelivery float64 `json:"edge_cpu_per_delivery_us"`
	StoppedBy          string  `json:"stopped_by"`
}

// IdleResult is the idle scenario's memory and CPU per connection.
type IdleResult struct {
	Conns int64 `json:"conns"`
	// RSSBefore and RSSAfter are the edges' total RSS before the first
	// connection and after Settle; RSSPerConn is their difference per
	// connection.
	RSSBefore  int64   `json:"rss_before"`
	RSSAfter   int64   `json:"rss_after"`
	RSSPerConn float64 `json:"rss_per_conn"`
	// IdleCPU is the edges' CPU while holding, in % of one core, over
	// HoldSeconds.
	IdleCPU     float64 `json:"idle_cpu_pct"`
	HoldSeconds float64 `json:"hold_s"`
	// ToolRSSPerConn is the tool's own RSS per connection, for comparison.
	ToolRSSPerConn float64 `json:"tool_rss_per_conn"`
}

// StormResult is the storm scenario's connection rate.
type StormResult struct {
	Attempted uint64  `json:"attempted"`
	Connected uint64  `json:"connected"`
	Errors    uint64  `json:"errors"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"conns_per_s"`
}

// ChatResult is the chat scenario's summary.
type ChatResult struct {
	Rooms      int     `json:"rooms"`
	Members    int     `json:"members"`
	TargetRate float64 `json:"target_rate"`
	// Published is acknowledged publishes per second over the running stage.
	Published  float64 `json:"published_per_s"`
	Deliveries float64 `json:"deliveries_per_s"`
}

// Target is one of the goals, checked against this run.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

// noteMachine records how busy the machine was apart from the run.
func (r *Result) noteMachine() {
	var sum float64
	n := 0
	for _, p := range r.Timeline {
		if v, ok := p.CPU[cpuOthers]; ok {
			sum += v
			n++
		}
	}
	if n > 0 {
		r.OthersCPU = sum / float64(n)
	}
	if r.OthersCPU > 20 {
		r.Problems = append(r.Problems, fmt.Sprintf("the machine was shared: processes outside this run used %.0f%% of a core on average", r.OthersCPU))
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// writeFiles writes <out>.json and <out>.html.
func (r *Result) writeFiles(out string) error {
	if i := strings.LastIndexByte(out, '/'); i > 0 {
		if err := os.MkdirAll(out[:i], 0o755); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out+".json", append(b, '\n'), 0o644); err != nil {
		return err
	}
	for _, c := range reportCharts(r) {
		if err := os.WriteFile(out+"-"+c.Slug+".svg", []byte(c.SVG), 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(out + ".html")
	if err != nil {
		return err
	}
	if err := WriteHTML(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadResult loads a result JSON file.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// checkTargets fills r.Targets with the goals for r's scenario.
func (r *Result) checkTargets() {
	r.Targets = nil
	add := func(name, goal, measured string, pass bool) {
		r.Targets = append(r.Targets, Target{Name: name, Goal: goal, Measured: measured, Pass: pass})
	}
	switch r.Scenario {
	case ScenarioIdle:
		if r.Idle != nil {
			add("edge RSS per idle connection", "≤ 10 KiB", fmt.Sprintf("%.1f KiB (%d conns)", r.Idle.RSSPerConn/1024, r.Idle.Conns),
				r.Idle.RSSPerConn > 0 && r.Idle.RSSPerConn <= 10*1024)
		}
	case ScenarioFanout:
		if f := r.Fanout; f != nil {
			add("edge CPU per delivered message", "≤ 7 µs", fmt.Sprintf("%.2f µs", f.EdgeCPUPerDelivery),
				f.EdgeCPUPerDelivery > 0 && f.EdgeCPUPerDelivery <= 7)
			add("fan-out deliveries/s with 0 loss", "≥ 100,000/s", fmt.Sprintf("%s/s to %d members (p99 %.0f ms)", thousands(f.LossFreeDeliveries), f.Members, f.LossFreeP99),
				f.LossFreeDeliveries >= 100000)
		}
	case ScenarioChat:
		e := r.Latency["e2e"]
		lost := uint64(0)
		if r.Accounting != nil {
			lost = r.Accounting.Lost
		}
		add("chat p99 end-to-end", "≤ 10 ms", fmt.Sprintf("%.2f ms", e.P99), e.Count > 0 && e.P99 <= 10)
		add("chat lost messages", "0", fmt.Sprintf("%d", lost), r.Accounting != nil && lost == 0 && r.Accounting.Acked > 0)
	case ScenarioStorm:
		if r.Storm != nil {
			add("storm connections/s", "≥ 4,000/s", fmt.Sprintf("%s/s (%d errors)", thousands(r.Storm.Rate), r.Storm.Errors),
				r.Storm.Rate >= 4000)
		}
	case ScenarioAMQPBaseline:
		if r.AMQP != nil {
			add("RabbitMQ publish→consume", "(reference)", fmt.Sprintf("%s msg/s", thousands(r.AMQP.ConsumeRate)), true)
		}
	}
}

// Headline is the one-line result of a run, for summaries.
func (r *Result) Headline() string {
	switch r.Scenario {
	case ScenarioIdle:
		if r.Idle != nil {
			return fmt.Sprintf("%d conns: edge RSS %.1f KiB/conn, idle CPU %.1f%%", r.Idle.Conns, r.Idle.RSSPerConn/1024, r.Idle.IdleCPU)
		}
	case ScenarioFanout:
		if f := r.Fanout; f != nil {
			return fmt.Sprintf("%d members: %s deliveries/s without loss (p99 %.0f ms), %s/s within every limit; edge %.2f µs CPU/delivery (stopped: %s)",
				f.Members, thousands(f.LossFreeDeliveries), f.LossFreeP99, thousands(f.BestDeliveries), f.EdgeCPUPerDelivery, f.StoppedBy)
		}
	case ScenarioChat:
		e := r.Latency["e2e"]
		lost := "?"
		if r.Accounting != nil {
			lost = fmt.Sprint(r.Accounting.Lost)
		}
		pub := 0.0
		if r.Chat != nil {
			pub = r.Chat.Published
		}
		return fmt.Sprintf("%.0f msg/s: e2e p50 %.2f ms p99 %.2f ms max %.1f ms, lost %s, dup %d", pub, e.P50, e.P99, e.Max, lost, r.Totals.Duplicated)
	case ScenarioStorm:
		if s := r.Storm; s != nil {
			c := r.Latency["connect"]
			return fmt.Sprintf("%d/%d connected in %.2f s: %s conns/s, connect p99 %.1f ms, %d errors", s.Connected, s.Attempted, s.Seconds, thousands(s.Rate), c.P99, s.Errors)
		}
	case ScenarioAMQPBaseline:
		if a := r.AMQP; a != nil {
			return fmt.Sprintf("%s queue, %d publishers × window %d, persistent=%v: %s msg/s consumed, p99 %.2f ms",
				a.QueueType, a.Publishers, a.Window, a.Persistent, thousands(a.ConsumeRate), r.Latency["e2e"].P99)
		}
	}
	return ""
}

// WriteSummary prints a table of results, one row per run.
func WriteSummary(w io.Writer, results []*Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tscenario\tresult\ttargets")
	for _, r := range results {
		var ts []string
		for _, t := range r.Targets {
			mark := "PASS"
			if !t.Pass {
				mark = "MISS"
			}
			ts = append(ts, fmt.Sprintf("%s %s %s (goal %s)", mark, t.Name, t.Measured, t.Goal))
		}
		head := r.Headline()
		if r.Aborted {
			head = "ABORTED: " + head
		}
		if r.Check != nil {
			head += "; check " + r.Check.Verdict()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Scenario, head, strings.Join(ts, "; "))
	}
	tw.Flush()
	for _, r := range results {
		if r.Check != nil {
			fmt.Fprintf(w, "\n%s ", r.Name)
			r.Check.WriteTable(w)
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// thousands formats v with thousands separators and no decimals.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
