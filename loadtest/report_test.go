package loadtest

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleResult is a fan-out result with every section filled in.
func sampleResult() *Result {
	r := &Result{
		Name: "fanout-sample", Scenario: ScenarioFanout, RunID: "abc123", Started: time.Unix(1700000000, 0),
		Elapsed: 42, Host: Host{CPUs: 2, MemTotal: 8 << 30, Kernel: "6.1", Go: "go1.26"}, Workers: 1,
		Config:  Config{Scenario: ScenarioFanout, Secret: "must-not-leak"},
		Command: "hearth-load -scenario fanout <script>alert(1)</script>",
		Totals:  counters{Connected: 100, Sent: 50, Acked: 50, Delivered: 5000},
		Latency: map[string]Summary{},
		Steps: []Step{
			{Index: 0, Rate: 5, Deliveries: 500, P99: 2, Pass: true, EdgeCPUPerDelivery: 3},
			{Index: 1, Rate: 8, Deliveries: 800, P99: 150, Reason: "p99 150 ms > 100 ms", EdgeCPUPerDelivery: 2.5},
		},
		Fanout: &FanoutResult{Members: 100, BestStep: 0, BestDeliveries: 500, BestRate: 5, LossFreeStep: 1, LossFreeDeliveries: 800,
			LossFreeP99: 150, EdgeCPUPerDelivery: 3, StoppedBy: "step 1"},
		Accounting: &Accounting{Acked: 50, Members: 100, Expected: 5000},
		ErrorCodes: map[string]uint64{"429": 3},
		Processes:  []ProcResult{{Name: "hearth-load", PID: 1}, {Name: "edge-1", PID: 2, Edge: true, CPUSeconds: 1.5}},
	}
	h := newRecorder()
	for i := int64(1); i <= 1000; i++ {
		h.record(int(i), i*10)
	}
	r.Latency["e2e"] = summarize(h.swap())
	for k := 1; k <= 20; k++ {
		r.Timeline = append(r.Timeline, Point{T: float64(k), Open: 100, Joined: 100, Sent: 10, Acked: 10, Delivered: 1000,
			E2E: &PointLat{P50: 1, P99: 2 + float64(k), Max: 5 * float64(k)}, CPU: map[string]float64{"edge-1": 40}, RSS: map[string]int64{"edge-1": 30 << 20}})
	}
	r.checkTargets()
	return r
}

func TestWriteHTMLIsSelfContained(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteHTML(&b, sampleResult()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<svg", "Targets", "edge CPU per delivered message", "fanout-sample", "p99 150 ms", "Deliveries per second by step", "Latency by percentile"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "@import", "url(", "must-not-leak"} {
		if strings.Contains(page, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if strings.Count(page, "<svg") < 5 {
		t.Errorf("report has %d charts, want at least 5", strings.Count(page, "<svg"))
	}
}

// Every chart is well-formed XML on its own, as the .svg files are.
func TestChartsAreWellFormedSVG(t *testing.T) {
	t.Parallel()
	charts := reportCharts(sampleResult())
	if len(charts) < 5 {
		t.Fatalf("%d charts", len(charts))
	}
	seen := map[string]bool{}
	for _, c := range charts {
		if c.Slug == "" || seen[c.Slug] {
			t.Errorf("chart slug %q empty or repeated", c.Slug)
		}
		seen[c.Slug] = true
		d := xml.NewDecoder(strings.NewReader(c.SVG))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chart %s: %v", c.Slug, err)
			}
		}
	}
}

func TestWriteFilesAndRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := sampleResult()
	r.Config.Secret = ""
	out := filepath.Join(dir, "sub", "fanout")
	if err := r.writeFiles(out); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(out + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != r.Name || len(back.Steps) != 2 || back.Latency["e2e"].P99 != r.Latency["e2e"].P99 {
		t.Fatalf("read back %+v", back)
	}
	for _, f := range []string{".html", "-latency.svg", "-steps.svg"} {
		if _, err := os.Stat(out + f); err != nil {
			t.Error(err)
		}
	}
	var sum bytes.Buffer
	WriteSummary(&sum, []*Result{back})
	if !strings.Contains(sum.String(), "MISS fan-out deliveries/s") || !strings.Contains(sum.String(), "PASS edge CPU per delivered message") {
		t.Fatalf("summary:\n%s", sum.String())
	}
}

func TestThousandsAndTicks(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4500: "-4,500"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]float64{0.7: 1, 3: 5, 7: 10, 120: 200, 0.03: 0.05} {
		if got := niceStep(in); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", in, got, want)
		}
	}
	if math.Abs(percentileX(99)-2) > 1e-9 || percentileX(100) != 6 || percentileX(0) != 0 {
		t.Error("percentileX")
	}
}
