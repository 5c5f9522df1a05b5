package tlstier

import (
	"net"
	"net/url"
	"sync"
)

// edge is one edge process. Its identity fields are immutable; the fields
// below the mutex comment belong to the pool and are guarded by pool.mu.
type edge struct {
	idx      int
	name     string // base URL as configured; the metrics label
	addr     string // host:port to dial
	useTLS   bool   // https edge
	host     string // TLS server name of an https edge
	readyURL string // <base>/readyz

	// guarded by pool.mu
	active    int  // proxied connections, counted from selection to close
	healthy   bool // receives new connections
	okRun     int  // consecutive successful checks
	failRun   int  // consecutive failed checks
	everKnown bool // a check has decided its state at least once
}

// pool selects edges for new connections: the healthy edge with the fewest
// active connections, ties broken round-robin. Connections are long-lived,
// so balancing on the count of open connections, not on requests, is what
// keeps edges evenly loaded.
type pool struct {
	mu             sync.Mutex
	edges          []*edge
	next           int // round-robin cursor for ties; mu held
	unhealthyAfter int
	healthyAfter   int
	met            *metrics
}

func newPool(rawEdges []string, unhealthyAfter, healthyAfter int, met *metrics) (*pool, error) {
	p := &pool{unhealthyAfter: unhealthyAfter, healthyAfter: healthyAfter, met: met}
	for i, raw := range rawEdges {
		u, err := parseEdgeURL(raw)
		if err != nil {
			return nil, err
		}
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		ready := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/readyz"}
		p.edges = append(p.edges, &edge{
			idx:      i,
			name:     raw,
			addr:     net.JoinHostPort(u.Hostname(), port),
			useTLS:   u.Scheme == "https",
			host:     u.Hostname(),
			readyURL: ready.String(),
		})
	}
	return p, nil
}

// acquire picks the healthy edge not in tried with the fewest active
// connections and counts a connection on it, or returns nil if there is
// none. The caller must release the edge when the connection ends or the
// attempt fails. tried is indexed by edge.idx.
func (p *pool) acquire(tried []bool) *edge {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.edges)
	var best *edge
	for i := range n {
		e := p.edges[(p.next+i)%n]
		if !e.healthy || tried[e.idx] {
			continue
		}
		// Strictly fewer: among equals the first from the cursor wins, and
		// the cursor moves past the winner, so ties rotate.
		if best == nil || e.active < best.active {
			best = e
		}
	}
	if best == nil {
		return nil
	}
	best.active++
	p.next = (best.idx + 1) % n
	p.met.active.WithLabelValues(best.name).Inc()
	return best
}

// release uncounts a connection counted by acquire.
func (p *pool) release(e *edge) {
	p.mu.Lock()
	e.active--
	p.mu.Unlock()
	p.met.active.WithLabelValues(e.name).Dec()
}

// healthChange describes a transition reported by record.
type healthChange int

const (
	healthSame healthChange = iota
	healthUp
	healthDown
)

// record applies the result of one readiness check of e and reports
// whether e entered or left rotation. The first result for an edge decides
// its state at once (so the tier starts with the truth, not a guess);
// later ones count towards the thresholds.
func (p *pool) record(e *edge, ok bool) healthChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		e.okRun++
		e.failRun = 0
	} else {
		e.failRun++
		e.okRun = 0
	}
	was := e.healthy
	switch {
	case !e.everKnown:
		e.healthy = ok
		e.everKnown = true
		if !ok {
			// Report the first verdict even though the state did not
			// change: an edge down at startup deserves a log line.
			p.setHealthLocked(e, was)
			return healthDown
		}
	case ok && !e.healthy && e.okRun >= p.healthyAfter:
		e.healthy = true
	case !ok && e.healthy && e.failRun >= p.unhealthyAfter:
		e.healthy = false
	}
	return p.setHealthLocked(e, was)
}

// markDown takes e out of rotation at once: a dial to it failed, which is
// better evidence than waiting for the next check. It needs HealthyAfter
// successful checks to come back.
func (p *pool) markDown(e *edge) healthChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := e.healthy
	e.healthy = false
	e.everKnown = true
	e.okRun = 0
	return p.setHealthLocked(e, was)
}

// setHealthLocked publishes e's health and reports the change since was.
// mu held on entry.
func (p *pool) setHealthLocked(e *edge, was bool) healthChange {
	if e.healthy {
		p.met.up.WithLabelValues(e.name).Set(1)
	} else {
		p.met.up.WithLabelValues(e.name).Set(0)
	}
	switch {
	case e.healthy && !was:
		return healthUp
	case !e.healthy && was:
		return healthDown
	}
	return healthSame
}

// anyHealthy reports whether at least one edge receives new connections.
func (p *pool) anyHealthy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.edges {
		if e.healthy {
			return true
		}
	}
	return false
}

// edgeState is a snapshot of one edge, for tests and the admin endpoint.
type edgeState struct {
	Name    string
	Healthy bool
	Active  int
}

func (p *pool) snapshot() []edgeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]edgeState, len(p.edges))
	for i, e := range p.edges {
		out[i] = edgeState{Name: e.name, Healthy: e.healthy, Active: e.active}
	}
	return out
}
