package loadtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
)

// WriteHTML renders r as one self-contained HTML page: inline CSS and SVG,
// no script and nothing fetched from anywhere.
func WriteHTML(w io.Writer, r *Result) error {
	v := reportView{R: r, Headline: r.Headline()}
	for _, c := range reportCharts(r) {
		v.Charts = append(v.Charts, template.HTML(c.SVG)) // #nosec G203: built by svg.go, which escapes every text
	}
	for _, name := range []string{"e2e", "ack", "connect", "join", "lag"} {
		if s, ok := r.Latency[name]; ok && s.Count > 0 {
			v.Lat = append(v.Lat, latRow{Name: name, Label: latLabels[name], S: s})
		}
	}
	v.Counters = counterRows(r)
	shown := r.Config
	shown.Secret = ""
	cfg, _ := json.MarshalIndent(shown, "", "  ")
	v.ConfigJSON = string(cfg)
	for _, k := range sortedKeys(r.ErrorCodes) {
		v.Codes = append(v.Codes, kv{"error frame " + k, r.ErrorCodes[k]})
	}
	for _, k := range sortedKeys(r.CloseCodes) {
		v.Codes = append(v.Codes, kv{"closed by server, code " + k, r.CloseCodes[k]})
	}
	return reportTmpl.Execute(w, v)
}

var latLabels = map[string]string{
	"e2e":     "end-to-end (publish → every member)",
	"ack":     "ack (publish → ack)",
	"connect": "connect (dial → welcome)",
	"join":    "join (join → joined)",
	"lag":     "tool pacing lag (planned → sent)",
}

type reportView struct {
	R          *Result
	Headline   string
	Charts     []template.HTML
	Lat        []latRow
	Counters   []kv
	Codes      []kv
	ConfigJSON string
}

type latRow struct {
	Name, Label string
	S           Summary
}

type kv struct {
	K string
	V uint64
}

func counterRows(r *Result) []kv {
	t := r.Totals
	rows := []kv{
		{"connection attempts", t.Dials}, {"connected", t.Connected}, {"connect errors", t.ConnectErrors},
		{"joined", t.Joined}, {"join errors", t.JoinErrors}, {"disconnects (by the server)", t.Disconnects},
		{"published (sent)", t.Sent}, {"send errors", t.SendErrors}, {"skipped by the pacer", t.Skipped},
		{"acknowledged", t.Acked}, {"refused (error reply)", t.Failed}, {"delivered (message frames)", t.Delivered},
		{"duplicated", t.Duplicated}, {"stale (≤ join snapshot)", t.Stale}, {"corrupt", t.Corrupt},
		{"presence frames", t.Presence}, {"error frames", t.ErrorFrames}, {"undecodable frames", t.BadFrames},
	}
	if r.Scenario == ScenarioAMQPBaseline {
		rows = []kv{{"published", t.Sent}, {"confirmed or nacked", t.Acked}, {"nacked", t.ErrorFrames}, {"consumed", t.Delivered}}
	}
	out := rows[:0]
	for _, x := range rows {
		if x.V != 0 || strings.HasPrefix(x.K, "connected") || strings.HasPrefix(x.K, "delivered") || strings.HasPrefix(x.K, "acknowledged") {
			out = append(out, x)
		}
	}
	return out
}

// namedChart is one chart of a report; Slug names its .svg file.
type namedChart struct {
	Slug string
	SVG  string
}

// reportCharts draws the charts that apply to r.
func reportCharts(r *Result) []namedChart {
	var out []namedChart
	slug := ""
	add := func(s string) { out = append(out, namedChart{Slug: slug, SVG: s}) }
	tl := r.Timeline
	xs := func(f func(p Point) (float64, bool)) [][2]float64 {
		var pts [][2]float64
		for _, p := range tl {
			if v, ok := f(p); ok {
				pts = append(pts, [2]float64{p.T, v})
			}
		}
		return pts
	}
	hasLat := false
	for _, p := range tl {
		if p.E2E != nil {
			hasLat = true
			break
		}
	}
	if hasLat {
		slug = "latency"
		add(chart{Title: "End-to-end latency per second (log scale)", XLabel: "seconds", YLabel: "ms", LogY: true, Series: []series{
			{Name: "p50", Pts: xs(func(p Point) (float64, bool) { return latOf(p.E2E, 0) })},
			{Name: "p99", Pts: xs(func(p Point) (float64, bool) { return latOf(p.E2E, 1) })},
			{Name: "max", Pts: xs(func(p Point) (float64, bool) { return latOf(p.E2E, 2) }), Dash: true},
			{Name: "ack p99", Pts: xs(func(p Point) (float64, bool) { return latOf(p.Ack, 1) }), Color: "#9333ea", Dash: true},
		}}.svg())
	}
	var curves []series
	for _, name := range []string{"e2e", "ack", "connect", "join"} {
		s, ok := r.Latency[name]
		if !ok || s.Count == 0 {
			continue
		}
		var pts [][2]float64
		for _, c := range s.Curve {
			pts = append(pts, [2]float64{percentileX(c[0]), c[1]})
		}
		curves = append(curves, series{Name: name, Pts: pts})
	}
	if len(curves) > 0 {
		slug = "percentiles"
		add(chart{Title: "Latency by percentile (log scale)", XLabel: "percentile", YLabel: "ms", LogY: true, XTicks: percentileTicks, Series: curves}.svg())
	}
	if r.Scenario == ScenarioFanout && len(r.Steps) > 0 {
		var labels []string
		var vals []float64
		var ok []bool
		var pts, cpu [][2]float64
		for _, s := range r.Steps {
			labels = append(labels, fmt.Sprintf("%g/s", s.Rate))
			vals = append(vals, s.Deliveries)
			ok = append(ok, s.Pass)
			pts = append(pts, [2]float64{float64(s.Index), s.P99})
			cpu = append(cpu, [2]float64{float64(s.Index), s.EdgeCPUPerDelivery})
		}
		slug = "steps"
		add(barChart("Deliveries per second by step (green: passed)", "deliveries/s", labels, vals, ok, 100000))
		slug = "steps-p99"
		add(chart{Title: "Per step: p99 end-to-end (ms) and edge CPU per delivery (µs)", XLabel: "step", YLabel: "ms / µs", Series: []series{
			{Name: "p99 ms", Pts: pts}, {Name: "edge µs/delivery", Pts: cpu, Color: "#ea580c"},
		}}.svg())
	}
	var rate []series
	if anyPoint(tl, func(p Point) bool { return p.Sent > 0 }) {
		rate = append(rate,
			series{Name: "published/s", Pts: xs(func(p Point) (float64, bool) { return float64(p.Sent), true })},
			series{Name: "acked/s", Pts: xs(func(p Point) (float64, bool) { return float64(p.Acked), true }), Dash: true})
	}
	if anyPoint(tl, func(p Point) bool { return p.Delivered > 0 }) {
		rate = append(rate, series{Name: "delivered/s", Pts: xs(func(p Point) (float64, bool) { return float64(p.Delivered), true }), Color: "#16a34a"})
	}
	if len(rate) > 0 {
		slug = "throughput"
		add(chart{Title: "Throughput per second", XLabel: "seconds", YLabel: "per second", Series: rate}.svg())
	}
	if anyPoint(tl, func(p Point) bool { return p.Open > 0 || p.Connects > 0 }) {
		slug = "connections"
		add(chart{Title: "Connections", XLabel: "seconds", YLabel: "connections", Series: []series{
			{Name: "open", Pts: xs(func(p Point) (float64, bool) { return float64(p.Open), true })},
			{Name: "joined", Pts: xs(func(p Point) (float64, bool) { return float64(p.Joined), true }), Dash: true},
			{Name: "connects/s", Pts: xs(func(p Point) (float64, bool) { return float64(p.Connects), true }), Color: "#ea580c"},
			{Name: "errors/s", Pts: xs(func(p Point) (float64, bool) { return float64(p.Errors + p.Disconnects), true }), Color: "#dc2626"},
		}}.svg())
	}
	names := map[string]bool{}
	for _, p := range tl {
		for k := range p.CPU {
			names[k] = true
		}
	}
	if len(names) > 0 {
		var cpu, rss []series
		for _, n := range sortedKeys(names) {
			cpu = append(cpu, series{Name: n, Pts: xs(func(p Point) (float64, bool) { v, ok := p.CPU[n]; return v, ok })})
			rss = append(rss, series{Name: n, Pts: xs(func(p Point) (float64, bool) { v, ok := p.RSS[n]; return float64(v) / (1 << 20), ok })})
		}
		slug = "cpu"
		add(chart{Title: "CPU per process (% of one core; the machine has " + fmt.Sprint(r.Host.CPUs) + " cores)", XLabel: "seconds", YLabel: "% of a core", Series: cpu}.svg())
		slug = "rss"
		add(chart{Title: "Resident memory per process", XLabel: "seconds", YLabel: "MiB", Series: rss}.svg())
	}
	return out
}

func latOf(l *PointLat, i int) (float64, bool) {
	if l == nil {
		return 0, false
	}
	return [3]float64{l.P50, l.P99, l.Max}[i], true
}

func anyPoint(tl []Point, f func(Point) bool) bool {
	for _, p := range tl {
		if f(p) {
			return true
		}
	}
	return false
}

var reportFuncs = template.FuncMap{
	"ms": func(v float64) string {
		switch {
		case v == 0:
			return "0"
		case v < 1:
			return fmt.Sprintf("%.3f", v)
		case v < 100:
			return fmt.Sprintf("%.2f", v)
		default:
			return fmt.Sprintf("%.0f", v)
		}
	},
	"n":   func(v uint64) string { return thousands(float64(v)) },
	"i64": func(v int64) string { return thousands(float64(v)) },
	"f0":  func(v float64) string { return thousands(v) },
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f2":  func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"kib": func(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) },
	"mib": func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) },
	"gib": func(v int64) string { return fmt.Sprintf("%.1f GiB", float64(v)/(1<<30)) },
	"pct": func(v float64) string { return fmt.Sprintf("%.0f%%", v) },
	"ok": func(b bool) template.HTML {
		if b {
			return `<span class="pass">PASS</span>`
		}
		return `<span class="miss">MISS</span>`
	},
	"round": func(v float64) float64 { return math.Round(v) },
	"sorted": func(ps []ProcResult) []ProcResult {
		out := append([]ProcResult(nil), ps...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].Edge && !out[j].Edge })
		return out
	},
}

var reportTmpl = template.Must(template.New("report").Funcs(reportFuncs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Hearth load test: {{.R.Name}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1f2937;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.sub{color:#6b7280} .head{font-size:16px;margin:14px 0;padding:10px 14px;background:#f3f4f6;border-radius:8px}
table{border-collapse:collapse;margin:6px 0 12px} td,th{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right}
th{background:#f9fafb;font-weight:600} td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:220px}
.card .v{font-size:20px;font-weight:600} .card .g{color:#6b7280;font-size:12px}
.pass{color:#fff;background:#16a34a;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
.miss{color:#fff;background:#dc2626;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
.warn{background:#fef3c7;border:1px solid #f59e0b;border-radius:8px;padding:8px 12px}
svg.chart{display:block;margin:8px 0 18px;max-width:100%;height:auto;background:#fff}
svg .ct{font-size:13px;font-weight:600;fill:#111} svg .grid{stroke:#eef0f3} svg .frame{fill:none;stroke:#9ca3af}
svg .yl{font-size:11px;fill:#4b5563;text-anchor:end} svg .xl{font-size:11px;fill:#4b5563;text-anchor:middle}
svg .axl{font-size:11px;fill:#6b7280;text-anchor:middle} svg .lg{font-size:11px;fill:#374151} svg .na{fill:#9ca3af}
pre{background:#f9fafb;padding:10px;overflow:auto;font-size:12px} code{font-size:12px}
</style></head><body>
<h1>Hearth load test — {{.R.Name}}</h1>
<div class="sub">scenario <b>{{.R.Scenario}}</b> · run {{.R.RunID}} · {{.R.Started.Format "2006-01-02 15:04:05 MST"}} · {{f1 .R.Elapsed}} s ·
{{.R.Host.CPUs}} CPUs{{if .R.Host.CPUModel}} ({{.R.Host.CPUModel}}){{end}}, {{gib .R.Host.MemTotal}}, Linux {{.R.Host.Kernel}}, {{.R.Host.Go}}{{if .R.Workers}} · {{.R.Workers}} worker process(es){{end}}</div>
{{if .Headline}}<div class="head">{{.Headline}}</div>{{end}}
{{if .R.Aborted}}<p class="warn"><b>This run was cut short.</b></p>{{end}}
{{if .R.Problems}}<div class="warn"><b>Problems:</b><ul>{{range .R.Problems}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{if .R.Targets}}<h2>Targets</h2><div class="cards">{{range .R.Targets}}<div class="card"><div>{{ok .Pass}} {{.Name}}</div><div class="v">{{.Measured}}</div><div class="g">goal {{.Goal}}</div></div>{{end}}</div>{{end}}
<p class="sub">The tool runs on the same {{.R.Host.CPUs}}-core machine as the servers and competes with them for CPU: its own CPU is charted as <i>hearth-load</i>; <i>machine</i> is every core together and <i>others</i> what processes outside this run used (on average {{f1 .R.OthersCPU}}% of a core; load average {{index .R.LoadAvg 0}} at the start, {{index .R.LoadAvg 1}} at the end).</p>

{{with .R.Idle}}<h2>Idle connections</h2><table>
<tr><td>connections held</td><td>{{.Conns}}</td></tr>
<tr><td>edges' RSS before the first connection</td><td>{{mib .RSSBefore}}</td></tr>
<tr><td>edges' RSS with every connection joined</td><td>{{mib .RSSAfter}}</td></tr>
<tr><td><b>edge RSS per connection</b></td><td><b>{{kib .RSSPerConn}}</b></td></tr>
<tr><td>edges' CPU while holding ({{f1 .HoldSeconds}} s)</td><td>{{f2 .IdleCPU}}% of a core</td></tr>
{{if .ToolRSSPerConn}}<tr><td>the tool's own RSS per connection</td><td>{{kib .ToolRSSPerConn}}</td></tr>{{end}}
</table>{{end}}
{{with .R.Storm}}<h2>Connection storm</h2><table>
<tr><td>attempted</td><td>{{n .Attempted}}</td></tr><tr><td>connected (welcome received)</td><td>{{n .Connected}}</td></tr>
<tr><td>errors</td><td>{{n .Errors}}</td></tr><tr><td>first dial → last welcome</td><td>{{f2 .Seconds}} s</td></tr>
<tr><td><b>connections per second</b></td><td><b>{{f0 .Rate}}</b></td></tr></table>{{end}}
{{with .R.Chat}}<h2>Chat</h2><table>
<tr><td>rooms × members</td><td>{{.Rooms}} × {{.Members}}</td></tr><tr><td>target publish rate</td><td>{{f0 .TargetRate}}/s</td></tr>
<tr><td>acknowledged publishes</td><td>{{f0 .Published}}/s</td></tr><tr><td>deliveries</td><td>{{f0 .Deliveries}}/s</td></tr></table>{{end}}
{{with .R.AMQP}}<h2>RabbitMQ baseline</h2><table>
<tr><td>queue</td><td>{{.QueueType}}, persistent={{.Persistent}}, {{.Payload}}-byte bodies</td></tr>
<tr><td>publishers × unconfirmed window</td><td>{{.Publishers}} × {{.Window}}</td></tr>
<tr><td>published / confirmed / nacked / consumed</td><td>{{n .Published}} / {{n .Confirmed}} / {{n .Nacked}} / {{n .Consumed}}</td></tr>
<tr><td>confirmed per second</td><td>{{f0 .PublishRate}}</td></tr><tr><td><b>consumed per second</b></td><td><b>{{f0 .ConsumeRate}}</b></td></tr>
<tr><td>confirm p99</td><td>{{ms .ConfirmP99Ms}} ms</td></tr></table>{{end}}
{{with .R.Fanout}}<h2>Fan-out</h2><p>{{.Members}} members in one room.
Fastest step without loss: {{if ge .LossFreeStep 0}}<b>{{f0 .LossFreeDeliveries}} deliveries/s</b> (step {{.LossFreeStep}}, p99 {{ms .LossFreeP99}} ms), edge CPU <b>{{f2 .EdgeCPUPerDelivery}} µs</b> per delivery{{else}}none{{end}}.
Fastest step within every limit: {{if ge .BestStep 0}}{{f0 .BestDeliveries}} deliveries/s at {{.BestRate}} publishes/s{{else}}none{{end}}. Stopped by: {{.StoppedBy}}.</p>{{end}}
{{if .R.Steps}}<table><tr><th>step</th><th>rate/s</th><th>acked/s</th><th>deliveries/s</th><th>members</th><th>expected</th><th>delivered</th><th>lost</th><th>disc.</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>edge CPU</th><th>edge µs/deliv.</th><th>tool CPU</th><th></th></tr>
{{range .R.Steps}}<tr><td>{{.Index}}</td><td>{{.Rate}}</td><td>{{f1 .Published}}</td><td>{{f0 .Deliveries}}</td><td>{{.Members}}</td><td>{{n .Expected}}</td><td>{{n .Delivered}}</td><td>{{n .Lost}}</td><td>{{.Disconnects}}</td><td>{{ms .P50}}</td><td>{{ms .P99}}</td><td>{{ms .Max}}</td><td>{{pct .EdgeCPU}}</td><td>{{f2 .EdgeCPUPerDelivery}}</td><td>{{pct .ToolCPU}}</td><td>{{ok .Pass}} {{.Reason}}</td></tr>{{end}}</table>{{end}}

{{if .Lat}}<h2>Latency (ms)</h2><table><tr><th>measure</th><th>count</th><th>min</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>
{{range .Lat}}<tr><td>{{.Label}}</td><td>{{i64 .S.Count}}</td><td>{{ms .S.Min}}</td><td>{{ms .S.Mean}}</td><td>{{ms .S.P50}}</td><td>{{ms .S.P90}}</td><td><b>{{ms .S.P99}}</b></td><td>{{ms .S.P999}}</td><td>{{ms .S.P9999}}</td><td>{{ms .S.Max}}</td></tr>{{end}}</table>
<p class="sub">End-to-end latency is measured from the send time the publisher writes at the start of the body to the moment each member's reader decodes the message; both ends are this tool, on the same clock. <i>lag</i> is how late the tool's pacer sent messages against their planned times (the tool's own share of the delay).</p>{{end}}

<h2>Charts</h2>
{{range .Charts}}{{.}}{{end}}

{{with .R.Accounting}}<h2>Message accounting</h2>
<p class="sub">Every acknowledged message (its cmid maps to the hub's seq through the ack) against every member that joined before it was sequenced (joined snapshot &lt; seq).</p>
<table><tr><td>distinct acknowledged messages</td><td>{{n .Acked}}</td></tr>
<tr><td>members checked (joined, never disconnected)</td><td>{{.Members}}</td></tr>
<tr><td>members disconnected by the server (not checked)</td><td>{{.Disconnected}}</td></tr>
<tr><td>members whose join was never answered</td><td>{{.NotJoined}}</td></tr>
<tr><td>expected deliveries</td><td>{{n .Expected}}</td></tr>
<tr><td><b>lost</b> (member × message)</td><td><b>{{n .Lost}}</b> ({{.LostMembers}} members)</td></tr>
<tr><td><b>duplicated</b></td><td><b>{{n .Duplicated}}</b></td></tr>
<tr><td>stale / reordered</td><td>{{n .Stale}} / {{n .Reordered}}</td></tr></table>{{end}}

{{with .R.Check}}<h2>Correctness check</h2>
<p class="sub">Every publish, ack, joined reply and delivery of every connection, replayed at the end into shared/checker (<code>-check</code>): each acknowledged message must reach every member that joined before its seq exactly once and in order, and no seq may name two messages.</p>
<p>{{ok .OK}} {{.Verdict}} — {{n .Events}} events</p>
<table><tr><td>sent / acknowledged / unacknowledged</td><td>{{.Report.Sent}} / {{.Report.Acked}} / {{.Report.Unacked}}</td></tr>
<tr><td>delivered (distinct client × message)</td><td>{{.Report.Delivered}}</td></tr>
<tr><td>recovered (joined reply's history)</td><td>{{.Report.Recovered}}</td></tr>
<tr><td><b>lost</b></td><td><b>{{.Report.Lost}}</b></td></tr>
<tr><td><b>duplicated</b> / reordered</td><td><b>{{.Report.Duplicated}}</b> / {{.Report.Reordered}}</td></tr>
<tr><td>diverged seqs</td><td>{{len .Report.Diverged}}</td></tr></table>
{{if or .Report.LostExamples .Report.Diverged .Incomplete}}<pre>{{range .Report.LostExamples}}lost: {{.}}
{{end}}{{range .Report.Diverged}}diverged: {{.}}
{{end}}{{range .Incomplete}}incomplete: {{.}}
{{end}}</pre>{{end}}{{end}}

<h2>Counts</h2><table>{{range .Counters}}<tr><td>{{.K}}</td><td>{{n .V}}</td></tr>{{end}}
{{range .Codes}}<tr><td>{{.K}}</td><td>{{n .V}}</td></tr>{{end}}</table>
{{if .R.ConnectErrorSamples}}<p>First connect errors:</p><pre>{{range .R.ConnectErrorSamples}}{{.}}
{{end}}</pre>{{end}}

{{if .R.Processes}}<h2>Processes</h2><table><tr><th>process</th><th>pid</th><th>CPU s</th><th>avg CPU (run)</th><th>RSS start</th><th>RSS end</th><th>RSS max</th><th>threads</th></tr>
{{range sorted .R.Processes}}<tr><td>{{.Name}}{{if .Edge}} (edge){{end}}</td><td>{{.PID}}</td><td>{{f1 .CPUSeconds}}</td><td>{{pct .AvgCPU}}</td><td>{{mib .RSSStart}}</td><td>{{mib .RSSEnd}}</td><td>{{mib .RSSMax}}</td><td>{{.Threads}}</td></tr>{{end}}</table>{{end}}

<h2>How to repeat</h2>
{{if .R.Command}}<pre>{{.R.Command}}</pre>{{end}}
<details><summary>Configuration</summary><pre>{{.ConfigJSON}}</pre></details>
</body></html>`))
