package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// maxDrainHint caps the reconnect delay an edge may ask for when draining.
const maxDrainHint = 5 * time.Minute

// run is the supervisor: it watches the live connection and replaces it
// when it drops, until Close or a reason to stop. It closes Messages, Events
// and Done when it returns, after the last reader has finished.
func (c *Client) run(s *session) {
	defer c.wg.Done()
	defer func() {
		close(c.msgs)
		close(c.events)
		close(c.done)
	}()
	streak := 0 // connection attempts since the last stable connection
	for {
		c.watch(s) // returns once s's reader has finished
		c.emit(Event{Kind: EventDisconnected, Code: s.code, Reason: s.reason, Err: s.err})
		if c.ctx.Err() != nil {
			return
		}
		if !protocol.CloseReconnects(s.code) {
			c.stop(s.err)
			return
		}
		s.log.Warn().Err(s.err).Uint16("close_code", s.code).Str("close_reason", s.reason).Msg("disconnected; reconnecting")
		if time.Since(s.connectedAt) >= c.cfg.ReconnectMax {
			streak = 0 // stable: start the backoff over
		}
		if s, streak = c.reconnect(s, streak); s == nil {
			return
		}
	}
}

// watch waits until s ends. It closes s when the client closes and drops it
// when nothing (no frame, no ping) has arrived for deadAfter(heartbeat).
// Meanwhile it runs sync when kicked and when sync asked to run again.
func (c *Client) watch(s *session) {
	timeout := deadAfter(s.welcome.Heartbeat)
	var tick <-chan time.Time
	var t *time.Timer
	if timeout > 0 {
		t = time.NewTimer(timeout)
		defer t.Stop()
		tick = t.C
	}
	st := time.NewTimer(time.Hour)
	st.Stop()
	defer st.Stop()
	var syncC <-chan time.Time
	resync := func() {
		syncC = nil
		if d := c.sync(s); d > 0 {
			st.Reset(d)
			syncC = st.C
		}
	}
	resync()
	for {
		select {
		case <-s.done:
			return
		case <-c.kick:
			resync()
		case <-syncC:
			resync()
		case <-c.ctx.Done():
			s.closeNormal()
			<-s.done
			return
		case <-tick:
			if idle := s.idle(); idle < timeout {
				t.Reset(timeout - idle)
				continue
			}
			s.log.Warn().Dur("timeout", timeout).Msg("nothing from the edge; dropping the connection")
			s.kill(ErrHeartbeatTimeout)
			<-s.done
			return
		}
	}
}

// deadAfter is how long a connection with heartbeat interval hb may stay
// silent: two intervals and a margin. Zero (no heartbeat) disables the check.
func deadAfter(hb time.Duration) time.Duration {
	if hb <= 0 {
		return 0
	}
	return 2*hb + max(hb/2, 100*time.Millisecond)
}

// stop ends the client for good with err as the reason.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.stopped = true
	c.err = err
	c.mu.Unlock()
	c.log.Error().Err(err).Msg("stopped; not reconnecting")
	c.emit(Event{Kind: EventStopped, Err: err})
}

// reconnect dials until a connection is up (returned, with the rooms
// re-joined), the client closes, or a refusal that retrying cannot fix
// stops it (nil). Attempts are numbered from streak+1, so that an edge that
// accepts and drops connections at once still sees the backoff grow; it
// returns the number of the successful attempt.
func (c *Client) reconnect(prev *session, streak int) (*session, int) {
	drain := time.Duration(-1)
	if prev.code == protocol.CloseGoingAway {
		if hint, ok := parseDrain(prev.reason); ok {
			drain = rand.N(hint + 1)
		}
	}
	var lastErr error
	var refused string // the token of the last 401, when TokenFunc is set
	for attempt := streak + 1; ; attempt++ {
		delay := backoff(attempt, c.cfg.ReconnectMin, c.cfg.ReconnectMax)
		if attempt == streak+1 && drain >= 0 {
			delay = drain
		}
		c.emit(Event{Kind: EventReconnecting, Attempt: attempt, Delay: delay, Err: lastErr})
		t := time.NewTimer(delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil, attempt
		case <-t.C:
		}

		s, token, err := c.connect(c.ctx)
		if err == nil {
			c.reconnects.Add(1)
			c.install(s)
			c.rejoin(s)
			return s, attempt
		}
		if c.ctx.Err() != nil {
			return nil, attempt
		}
		switch {
		case errors.Is(err, ErrUnauthorized) && (c.cfg.TokenFunc == nil || token == refused):
			c.stop(err)
			return nil, attempt
		case errors.Is(err, ErrUnauthorized):
			refused = token
		case errors.Is(err, ErrForbidden):
			c.stop(err)
			return nil, attempt
		}
		c.log.Warn().Err(err).Int("attempt", attempt).Msg("reconnection failed")
		lastErr = err
	}
}

// rejoin joins again, on the new connection s, every room the client had
// joined, each with Since set to the last seq delivered there, so that the
// replies bring what was missed (applied by the reader, see applyJoined).
// The joins are sent back to back, then retried publishes may go, then the
// joins are awaited. A room the edge refuses is forgotten and reported; if
// the connection drops meanwhile, the rooms stay for the next one.
func (c *Client) rejoin(s *session) {
	type join struct {
		r  *room
		f  protocol.Frame
		cl *call
	}
	c.roomsMu.Lock()
	c.mu.Lock()
	names := make([]string, 0, len(c.rooms))
	for name, r := range c.rooms {
		r.fetch, r.failures, r.retryAt = 0, 0, time.Time{} // they went with the old connection
		if r.joined {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	joins := make([]join, 0, len(names))
	now := time.Now()
	for _, name := range names {
		r := c.rooms[name]
		since := r.last
		f := protocol.Frame{Type: protocol.TypeJoin, Room: name, Since: &since}
		cl, err := c.register(&f, protocol.TypeJoined, applyJoin)
		if err != nil {
			break // the connection is gone; the next one re-joins
		}
		cl.r, cl.since = r, &since
		r.fetch, r.fetchAt = f.ID, now
		joins = append(joins, join{r, f, cl})
	}
	c.mu.Unlock()
	for i := range joins {
		if err := s.sendFrame(&joins[i].f); err != nil {
			for _, j := range joins[i:] {
				c.forget(j.f.ID)
			}
			joins = joins[:i]
			break
		}
	}
	c.markUp(s)
	c.roomsMu.Unlock()

	ctx, cancel := context.WithTimeoutCause(c.ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	for _, j := range joins {
		f, err := c.wait(ctx, j.f.ID, j.cl)
		switch {
		case err == nil:
			c.emit(Event{Kind: EventRejoined, Room: j.r.name, Frame: f})
		case errors.Is(err, ErrDisconnected), errors.Is(err, ErrClosed), c.ctx.Err() != nil:
		default:
			c.mu.Lock()
			if c.rooms[j.r.name] == j.r {
				delete(c.rooms, j.r.name)
			}
			c.mu.Unlock()
			err = fmt.Errorf("client: re-join %q: %w", j.r.name, err)
			s.log.Warn().Err(err).Msg("re-join failed; room forgotten")
			c.emit(Event{Kind: EventRejoinFailed, Room: j.r.name, Err: err})
		}
	}
}

// backoff is the full-jitter delay before connection attempt n (from 1):
// uniform in [0, min(hi, lo·2^(n-1))].
func backoff(n int, lo, hi time.Duration) time.Duration {
	ceil := lo
	for i := 1; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	return rand.N(min(ceil, hi) + 1)
}

// parseDrain reads the delay hint of a draining edge's close reason
// (protocol.DrainReason), capped at maxDrainHint.
func parseDrain(reason string) (time.Duration, bool) {
	v, ok := strings.CutPrefix(reason, "reconnect=")
	if !ok {
		return 0, false
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms < 0 {
		return 0, false
	}
	return min(time.Duration(ms)*time.Millisecond, maxDrainHint), true
}
