package hub

import (
	"sort"
	"sync"
	"time"
)

// liveness tracks the processes heard on the control exchange.
type liveness struct {
	timeout time.Duration

	mu      sync.Mutex
	started time.Time // guarded by mu
	// deaf is set while this hub cannot hear the control exchange (its
	// broker connection is down); nobody is declared dead meanwhile.
	deaf bool
	seen map[string]heard
}

type heard struct {
	at          time.Time
	incarnation string
}

func newLiveness(timeout time.Duration) *liveness {
	return &liveness{timeout: timeout, started: time.Now(), seen: make(map[string]heard)}
}

// restart starts a new listening period, after this hub (re)subscribed to
// the control exchange: everyone silent while it was not listening gets a
// full timeout to speak again before being declared dead.
func (l *liveness) restart() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.deaf = false
	l.started = now
	for id, h := range l.seen {
		h.at = now
		l.seen[id] = h
	}
}

// stopListening marks the hub deaf until the next restart.
func (l *liveness) stopListening() {
	l.mu.Lock()
	l.deaf = true
	l.mu.Unlock()
}

// heard records an announcement; leaving forgets the process at once.
func (l *liveness) heard(id, incarnation string, leaving bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if leaving {
		delete(l.seen, id)
		return
	}
	l.seen[id] = heard{at: time.Now(), incarnation: incarnation}
}

// alive reports whether id was heard within the timeout, and its current
// incarnation. Until this process has listened for a whole timeout, a
// process not yet heard counts as alive: it may simply not have spoken yet.
func (l *liveness) alive(id string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.seen[id]
	if l.deaf {
		return true, h.incarnation
	}
	if !ok {
		return time.Since(l.started) < l.timeout, ""
	}
	return time.Since(h.at) < l.timeout, h.incarnation
}

// live returns the ids heard within the timeout, sorted.
func (l *liveness) live() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.seen))
	for id, h := range l.seen {
		if l.deaf || time.Since(h.at) < l.timeout {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
