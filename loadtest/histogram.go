package loadtest

import (
	"fmt"
	"sync"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1µs to one minute, with 3
// significant digits (0.1% resolution).
const (
	histLowest  = 1
	histHighest = 60_000_000
	histDigits  = 3
	// recShards spreads concurrent recorders over this many histograms.
	recShards = 4
)

func newHist() *hdr.Histogram { return hdr.New(histLowest, histHighest, histDigits) }

// recorder is a histogram many goroutines record into: sharded, each shard
// behind its own mutex. swap takes out what was recorded since the last swap.
type recorder struct {
	shards [recShards]struct {
		mu sync.Mutex
		h  *hdr.Histogram
		n  int64
		_  [40]byte // keep shards on separate cache lines
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i].h = newHist()
	}
	return r
}

// record adds one value in microseconds. Values beyond the range are
// clamped, so nothing is silently dropped. shard picks the histogram (any
// int; callers pass something that differs between goroutines).
func (r *recorder) record(shard int, us int64) {
	if us < 0 {
		us = 0
	}
	if us > histHighest {
		us = histHighest
	}
	s := &r.shards[uint(shard)%recShards]
	s.mu.Lock()
	_ = s.h.RecordValue(us)
	s.n++
	s.mu.Unlock()
}

// swap returns the values recorded since the previous swap, merged into
// one histogram, and resets the shards. It returns nil when there were none.
func (r *recorder) swap() *hdr.Histogram {
	var out *hdr.Histogram
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if s.n > 0 {
			if out == nil {
				out = newHist()
			}
			out.Merge(s.h)
			s.h.Reset()
			s.n = 0
		}
		s.mu.Unlock()
	}
	return out
}

// encodeHist returns h's compressed HdrHistogram V2 encoding (nil for nil).
func encodeHist(h *hdr.Histogram) ([]byte, error) {
	if h == nil {
		return nil, nil
	}
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encoding histogram: %w", err)
	}
	return b, nil
}

// decodeHist reverses encodeHist; empty input gives an empty histogram.
func decodeHist(b []byte) (*hdr.Histogram, error) {
	if len(b) == 0 {
		return newHist(), nil
	}
	h, err := hdr.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("decoding histogram: %w", err)
	}
	return h, nil
}

// mergeInto merges the encoded histogram b into *dst, creating it when nil.
func mergeInto(dst **hdr.Histogram, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	h, err := decodeHist(b)
	if err != nil {
		return err
	}
	if *dst == nil {
		*dst = newHist()
	}
	if dropped := (*dst).Merge(h); dropped > 0 {
		return fmt.Errorf("merging histogram: %d values out of range", dropped)
	}
	return nil
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	P9999 float64 `json:"p9999_ms"`
	Max   float64 `json:"max_ms"`
	// Curve holds (percentile, ms) points for a percentile plot.
	Curve [][2]float64 `json:"curve,omitempty"`
}

// curvePercentiles are the points of a Summary's Curve.
var curvePercentiles = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100}

func us2ms(v int64) float64 { return float64(v) / 1000 }

// summarize describes h; nil or empty gives a zero Summary.
func summarize(h *hdr.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	s := Summary{
		Count: h.TotalCount(),
		Min:   us2ms(h.Min()),
		Mean:  h.Mean() / 1000,
		P50:   us2ms(h.ValueAtQuantile(50)),
		P90:   us2ms(h.ValueAtQuantile(90)),
		P99:   us2ms(h.ValueAtQuantile(99)),
		P999:  us2ms(h.ValueAtQuantile(99.9)),
		P9999: us2ms(h.ValueAtQuantile(99.99)),
		Max:   us2ms(h.Max()),
	}
	for _, p := range curvePercentiles {
		v := h.ValueAtQuantile(p)
		if p == 100 {
			v = h.Max()
		}
		s.Curve = append(s.Curve, [2]float64{p, us2ms(v)})
	}
	return s
}
