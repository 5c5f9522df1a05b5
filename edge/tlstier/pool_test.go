package tlstier

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestPool(t *testing.T, n, unhealthyAfter, healthyAfter int) *pool {
	t.Helper()
	var edges []string
	for i := range n {
		edges = append(edges, "http://10.0.0."+string(rune('1'+i))+":8081")
	}
	met, err := newMetrics(prometheus.NewRegistry(), edges)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPool(edges, unhealthyAfter, healthyAfter, met)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.edges {
		p.record(e, true)
	}
	return p
}

func TestPoolLeastConnectionsTiesRotate(t *testing.T) {
	t.Parallel()
	p := newTestPool(t, 3, 1, 1)
	tried := make([]bool, 3)
	var got []int
	for range 6 {
		got = append(got, p.acquire(tried).idx)
	}
	want := []int{0, 1, 2, 0, 1, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picks %v, want %v", got, want)
		}
	}
	// Release two on edge 1: it now has the fewest and wins twice.
	p.release(p.edges[1])
	p.release(p.edges[1])
	if a, b := p.acquire(tried).idx, p.acquire(tried).idx; a != 1 || b != 1 {
		t.Fatalf("picks %d, %d after edge 1 lost two connections; want 1, 1", a, b)
	}
	// Tried edges are skipped even when they have the fewest.
	tried[1] = true
	p.release(p.edges[1])
	if e := p.acquire(tried); e.idx == 1 {
		t.Fatal("acquire returned an edge already tried")
	}
}

func TestPoolHealthThresholds(t *testing.T) {
	t.Parallel()
	p := newTestPool(t, 1, 2, 3)
	e := p.edges[0]
	steps := []struct {
		ok      bool
		healthy bool
		change  healthChange
	}{
		{false, true, healthSame}, // 1 failure < UnhealthyAfter 2
		{true, true, healthSame},  // a success resets the failure run
		{false, true, healthSame},
		{false, false, healthDown}, // 2 consecutive failures
		{true, false, healthSame},
		{true, false, healthSame},
		{true, true, healthUp}, // 3 consecutive successes
	}
	for i, s := range steps {
		if change := p.record(e, s.ok); change != s.change || e.healthy != s.healthy {
			t.Fatalf("step %d (ok=%v): healthy %v change %v, want %v %v", i, s.ok, e.healthy, change, s.healthy, s.change)
		}
	}
	if p.markDown(e) != healthDown || p.acquire(make([]bool, 1)) != nil {
		t.Fatal("markDown left the edge in rotation")
	}
	if p.anyHealthy() {
		t.Fatal("anyHealthy with the only edge down")
	}
}

func TestPoolFirstCheckDecides(t *testing.T) {
	t.Parallel()
	met, _ := newMetrics(nil, []string{"http://a:1", "http://b:1"})
	p, _ := newPool([]string{"http://a:1", "http://b:1"}, 3, 3, met)
	if p.record(p.edges[0], true) != healthUp || p.record(p.edges[1], false) != healthDown {
		t.Fatal("the first check did not decide the state regardless of thresholds")
	}
	if !p.edges[0].healthy || p.edges[1].healthy {
		t.Fatal("wrong state after the first check")
	}
}
