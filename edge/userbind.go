package edge

import (
	"context"
	"sync"

	"github.com/hearth-gateway/hearth/protocol"
)

// userBinds binds each new connection's user key (user.<user>) off the
// handshake path, one connection after another on one goroutine. Binding
// is a broker round trip, and the broker client runs them one at a time
// anyway: a goroutine per connection would only wait in line, and a storm
// of 10,000 connections would leave 10,000 goroutines (and their stacks)
// waiting, which is most of an edge's memory at that moment.
type userBinds struct {
	mu      sync.Mutex
	queue   []*conn
	stopped bool
	wake    chan struct{}
}

func newUserBinds() *userBinds { return &userBinds{wake: make(chan struct{}, 1)} }

// add queues c. Messages to user.<user> reach c once its turn came and the
// binding is in place; c.userBound is closed then, or at once when the
// queue has stopped.
func (u *userBinds) add(c *conn) {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		c.notBound()
		return
	}
	u.queue = append(u.queue, c)
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// run binds queued connections until ctx is done. A connection that ended
// before its turn, or is still queued then, is marked as not bound.
func (u *userBinds) run(ctx context.Context, s *Server) {
	defer s.wg.Done()
	var batch []*conn
	for {
		u.mu.Lock()
		batch, u.queue = u.queue, batch[:0]
		u.mu.Unlock()
		for i, c := range batch {
			if ctx.Err() == nil && !c.closing.Load() {
				s.bindUser(c)
			} else {
				c.notBound()
			}
			batch[i] = nil
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			u.mu.Lock()
			u.stopped = true
			rest := u.queue
			u.queue = nil
			u.mu.Unlock()
			for _, c := range rest {
				c.notBound()
			}
			return
		case <-u.wake:
		}
	}
}

// notBound settles c's user key as never bound: Server.closed then has
// nothing to release.
func (c *conn) notBound() {
	c.userBindFailed = true
	close(c.userBound)
}

// bindUser binds c's user key and closes c.userBound.
func (s *Server) bindUser(c *conn) {
	defer close(c.userBound)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.binder.acquire(ctx, protocol.UserKey(c.user)); err != nil {
		s.log.Warn().Err(err).Str("user", c.user).Msg("binding user key")
		c.userBindFailed = true
	}
}
