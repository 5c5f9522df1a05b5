package tlstier

import (
	"context"
	"net"
	"sync"
)

// session is one spliced connection pair.
type session struct {
	client, edge net.Conn
	once         sync.Once
}

// close closes both connections, which ends both copies. Idempotent.
func (s *session) close() {
	s.once.Do(func() {
		s.client.Close()
		s.edge.Close()
	})
}

// tracker counts the upgrade handlers in flight and the spliced
// connections, so that shutdown can stop new upgrades, wait for the rest,
// and close what is left. http.Server forgets hijacked connections.
type tracker struct {
	mu       sync.Mutex
	wg       sync.WaitGroup // handlers between enter and leave
	closing  bool           // no new handlers
	killed   bool           // spliced connections are being closed
	sessions map[*session]struct{}
}

// enter counts a handler, or reports false once shutdown has begun.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.wg.Add(1)
	return true
}

// leave uncounts a handler counted by enter.
func (t *tracker) leave() { t.wg.Done() }

// add registers a spliced connection, or reports false once they are
// being closed.
func (t *tracker) add(s *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.killed {
		return false
	}
	if t.sessions == nil {
		t.sessions = make(map[*session]struct{})
	}
	t.sessions[s] = struct{}{}
	return true
}

func (t *tracker) remove(s *session) {
	t.mu.Lock()
	delete(t.sessions, s)
	t.mu.Unlock()
}

// count returns the number of spliced connections.
func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// stop makes enter refuse new handlers. Idempotent.
func (t *tracker) stop() {
	t.mu.Lock()
	t.closing = true // from here on no wg.Add can happen: Wait is legal
	t.mu.Unlock()
}

// drain stops new handlers, waits until every handler has returned or
// ctx is done, then closes the remaining connections and waits for their
// handlers. It returns how many connections it had to close. Handlers
// still talking to an edge are not closed here: they end when their
// client's request is cancelled (http.Server.Close) or their timeouts run
// out.
func (t *tracker) drain(ctx context.Context) int {
	t.stop()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
	}
	t.mu.Lock()
	t.killed = true
	closed := len(t.sessions)
	for s := range t.sessions {
		s.close()
	}
	t.mu.Unlock()
	<-done
	return closed
}
