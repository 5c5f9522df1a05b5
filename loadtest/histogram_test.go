package loadtest

import (
	"math/rand/v2"
	"testing"
)

// Two workers' interval histograms, encoded as they travel and merged by
// the coordinator, give the same distribution as one histogram of every value.
func TestHistogramMergeAcrossWorkers(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	whole := newHist()
	var merged = newHist()
	for w := 0; w < 2; w++ {
		r := newRecorder()
		for i := 0; i < 20000; i++ {
			v := int64(rng.ExpFloat64()*800) + int64(w*300)
			r.record(i, v)
			_ = whole.RecordValue(v)
		}
		b, err := encodeHist(r.swap())
		if err != nil {
			t.Fatal(err)
		}
		h := merged
		if err := mergeInto(&h, b); err != nil {
			t.Fatal(err)
		}
		if r.swap() != nil {
			t.Fatal("swap did not reset the recorder")
		}
	}
	if merged.TotalCount() != whole.TotalCount() {
		t.Fatalf("merged count %d, want %d", merged.TotalCount(), whole.TotalCount())
	}
	for _, q := range []float64{50, 90, 99, 99.9, 100} {
		if a, b := merged.ValueAtQuantile(q), whole.ValueAtQuantile(q); a != b {
			t.Errorf("p%v: merged %d, whole %d", q, a, b)
		}
	}
	s := summarize(merged)
	if s.Count != 40000 || s.P50 <= 0 || s.P99 < s.P50 || s.Max < s.P99 || len(s.Curve) != len(curvePercentiles) {
		t.Errorf("summary %+v", s)
	}
}

func TestRecorderClampsAndEmpty(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	if r.swap() != nil {
		t.Fatal("empty recorder swapped a histogram")
	}
	r.record(0, -5)
	r.record(1, histHighest*10)
	h := r.swap()
	if h.TotalCount() != 2 || h.Min() != 0 || !h.ValuesAreEquivalent(h.Max(), histHighest) {
		t.Fatalf("count %d min %d max %d", h.TotalCount(), h.Min(), h.Max())
	}
	if got := summarize(nil); got.Count != 0 {
		t.Fatalf("summary of nil: %+v", got)
	}
	var dst = newHist()
	if err := mergeInto(&dst, []byte("not a histogram")); err == nil {
		t.Fatal("garbage merged without error")
	}
}
