package client

import (
	"errors"
	"slices"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// Delivery of room messages. For every room it joined, the client keeps the
// seq of the last message it put on Messages (last) and puts there only the
// message with seq last+1: a seq at or below last is a duplicate and
// dropped; one above last+1 reveals a gap and is held back while the client
// fetches what is missing. Replies to joins (History) and to history
// requests are applied the same way. Whenever the next message delivered is
// not last+1 — the server no longer retains the missing ones, or has none
// to give — the client emits EventReset first, so a gap is never silent.
//
// Only the reader of the live connection puts frames on Messages, and it
// does so with mu held, so that deliveries keep the order in which the
// reader decided them; OnDeliver hooks and the requests a delivery decision
// makes are collected in a batch and run once mu is released. The
// supervisor (sync) only sends requests: fetches that timed out or failed,
// and those waiting for a full Messages to drain.

// starvedPoll is how often the supervisor looks whether a full Messages has
// drained to half, so that it can fetch what was set aside; the interval
// doubles while the consumer stays stalled, up to starvedPollMax.
const (
	starvedPoll    = 10 * time.Millisecond
	starvedPollMax = 640 * time.Millisecond
)

// room is the delivery state of one room. Guarded by Client.mu.
type room struct {
	name string
	// joined: a join of the room succeeded, and the client re-joins it
	// after every reconnection. False while the room's first join waits
	// for its reply; the messages that arrive meanwhile are held.
	joined bool
	// joinID is the request id of the first join while joined is false.
	joinID uint32
	// last is the seq of the last message put on Messages, or where
	// delivery starts (a fresh join's seq, JoinSince's since).
	last uint64
	// top is the highest seq known to exist in the room.
	top uint64
	// held are live messages with seq > last+1, in seq order, unique: at
	// most Config.HoldLimit.
	held []protocol.Frame
	// fetch is the id of the request in flight that fills the room from
	// last (a re-join or a history request); 0 when none.
	fetch   uint32
	fetchAt time.Time
	// failures counts failed fetches in a row; retryAt delays the next.
	failures int
	retryAt  time.Time
}

// applyKind says what a reply does to the delivery state besides answering
// its request.
type applyKind uint8

const (
	applyNone  applyKind = iota
	applyJoin            // a join: the reply starts or resumes the room's delivery
	applyFetch           // a history request of the client's own, filling a gap
)

// batch is what a delivery decision leaves to do once mu is released.
type batch struct {
	hooks []delivery       // OnDeliver calls, in delivery order
	sends []protocol.Frame // requests already registered in pending
}

type delivery struct {
	f         protocol.Frame
	recovered bool
}

// onMessage handles a message frame from s. Called by s's reader.
func (c *Client) onMessage(s *session, f protocol.Frame) {
	b := &s.batch
	c.mu.Lock()
	if r := c.rooms[f.Room]; r != nil && f.Seq != 0 {
		c.receive(b, s, r, f)
	} else if !c.push(b, f, false) {
		// Unsequenced notices and rooms this client did not join pass
		// through without ordering.
		c.dropped.Add(1)
		c.overflow()
	}
	c.mu.Unlock()
	c.flush(s, b)
}

// onNotice handles presence, typing and receipt frames: no seq, no order
// to keep. Called by s's reader.
func (c *Client) onNotice(s *session, f protocol.Frame) {
	b := &s.batch
	c.mu.Lock()
	if !c.push(b, f, false) {
		c.dropped.Add(1)
		c.overflow()
	}
	c.mu.Unlock()
	c.flush(s, b)
}

// receive handles a live message of room r. mu held on entry.
func (c *Client) receive(b *batch, s *session, r *room, f protocol.Frame) {
	r.top = max(r.top, f.Seq)
	if !r.joined {
		r.hold(f, c.cfg.HoldLimit)
		return
	}
	if f.Seq <= r.last {
		c.duplicates.Add(1)
		return
	}
	if f.Seq == r.last+1 && len(r.held) == 0 { // the usual case
		if c.push(b, f, false) {
			r.last = f.Seq
		} else {
			c.setAside(1)
		}
		return
	}
	if !r.hold(f, c.cfg.HoldLimit) {
		c.duplicates.Add(1)
	}
	c.advance(b, r)
	c.maybeFetch(b, s, r, time.Now())
}

// hold inserts a live message into r.held, keeping it sorted. When held is
// full the newest message is discarded: the fetch that fills the gap gets
// it again. It returns false for a message already held.
func (r *room) hold(f protocol.Frame, limit int) bool {
	i, found := slices.BinarySearchFunc(r.held, f.Seq, func(h protocol.Frame, seq uint64) int {
		return cmpSeq(h.Seq, seq)
	})
	if found {
		return false
	}
	if len(r.held) >= limit {
		if i == len(r.held) {
			return true // newer than everything held: fetched later
		}
		r.held[len(r.held)-1] = protocol.Frame{}
		r.held = r.held[:len(r.held)-1]
	}
	r.held = slices.Insert(r.held, i, f)
	return true
}

// holds reports whether a live message with seq is held.
func (r *room) holds(seq uint64) bool {
	_, found := slices.BinarySearchFunc(r.held, seq, func(h protocol.Frame, seq uint64) int {
		return cmpSeq(h.Seq, seq)
	})
	return found
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// advance delivers the held messages that follow last, and forgets those
// at or below it. mu held on entry.
func (c *Client) advance(b *batch, r *room) {
	n := 0
	for ; n < len(r.held); n++ {
		f := r.held[n]
		if f.Seq <= r.last {
			continue
		}
		// A full Messages keeps the rest held; the fetch that follows the
		// drain re-delivers from last.
		if f.Seq != r.last+1 || !c.push(b, f, false) {
			break
		}
		r.last = f.Seq
	}
	if n > 0 {
		m := copy(r.held, r.held[n:])
		clear(r.held[m:])
		r.held = r.held[:m]
	}
}

// needsFetch reports whether r misses messages that only a request can
// bring, and may send one now. mu held on entry.
func (c *Client) needsFetch(r *room, now time.Time) bool {
	return r.joined && r.fetch == 0 && !c.starved && r.last < r.top && !now.Before(r.retryAt)
}

func (c *Client) maybeFetch(b *batch, s *session, r *room, now time.Time) {
	if c.needsFetch(r, now) {
		c.fetch(b, s, r, now)
	}
}

// fetch registers, on s, a request for the messages of r after last and
// queues it in b. A history request cannot say "after 0" (After is omitted
// when zero, which means "the newest"), so from 0 the client joins again
// with Since 0, which the server answers with the same messages. mu held on
// entry.
func (c *Client) fetch(b *batch, s *session, r *room, now time.Time) {
	if c.stopped || c.sess != s {
		return
	}
	var cl *call
	if r.last == 0 {
		since := uint64(0)
		f := protocol.Frame{Type: protocol.TypeJoin, Room: r.name, Since: &since}
		cl = c.registerOn(s, &f, protocol.TypeJoined, applyJoin)
		cl.since = &since
		b.sends = append(b.sends, f)
	} else {
		f := protocol.Frame{Type: protocol.TypeHistory, Room: r.name, After: r.last, Limit: protocol.MaxHistoryLimit}
		cl = c.registerOn(s, &f, protocol.TypeHistoryReply, applyFetch)
		cl.after = r.last
		b.sends = append(b.sends, f)
	}
	cl.r = r
	r.fetch, r.fetchAt = b.sends[len(b.sends)-1].ID, now
	c.fetches.Add(1)
	c.kickSupervisor() // to time the request out
}

// applyJoined applies a join's reply to the room's delivery state. mu held
// on entry.
func (c *Client) applyJoined(b *batch, s *session, id uint32, cl *call, res result) {
	r := c.rooms[cl.room]
	if r == nil || r != cl.r {
		return // left meanwhile (and maybe joined again)
	}
	if r.fetch == id {
		r.fetch = 0
	}
	if res.err != nil {
		if !r.joined && r.joinID == id {
			delete(c.rooms, cl.room)
		}
		return
	}
	f := res.f
	switch {
	case !r.joined && cl.since == nil:
		// A fresh join: its History is the room's recent messages, up to
		// Seq, the point live delivery starts after.
		r.joined = true
		var prev uint64
		for _, h := range f.History {
			if h.Seq <= prev || h.Seq > f.Seq {
				continue
			}
			prev = h.Seq
			if !c.push(b, asMessage(h, r.name), true) {
				c.dropped.Add(1)
				c.overflow()
			}
		}
		r.last = f.Seq
	case cl.since == nil:
		// A fresh join of a room joined meanwhile: its History does not
		// continue what was delivered; a fetch fills up to its Seq.
	case f.Reset || f.Seq < r.last:
		// Not retained any more, or the room's sequence restarted.
		r.joined = true
		c.reset(b, r, f)
	default:
		r.joined = true
		c.deliverAfter(b, r, f.History, f)
	}
	r.top = max(r.top, f.Seq)
	c.advance(b, r)
	c.maybeFetch(b, s, r, time.Now())
}

// applyFetch applies the reply to a history request of the client's own.
// mu held on entry.
func (c *Client) applyFetch(b *batch, s *session, id uint32, cl *call, res result) {
	r := c.rooms[cl.room]
	if r == nil || r != cl.r || r.fetch != id {
		return // left, or superseded after a timeout
	}
	r.fetch = 0
	now := time.Now()
	if res.err != nil {
		var re *RequestError
		if errors.As(res.err, &re) && !re.Retryable() {
			s.log.Warn().Err(res.err).Str("room", r.name).Uint64("after", cl.after).
				Msg("history request refused; skipping the gap")
			c.skip(r, res.f)
		} else {
			r.failures++
			r.retryAt = now.Add(backoff(r.failures, c.cfg.ReconnectMin, c.cfg.ReconnectMax))
			s.log.Warn().Err(res.err).Str("room", r.name).Uint64("after", cl.after).Int("failures", r.failures).
				Msg("history request failed; retrying")
			c.kickSupervisor()
			return
		}
	} else {
		r.failures = 0
		f := res.f
		if f.Reset || f.Seq < r.last {
			c.reset(b, r, f)
		} else {
			answered := len(f.History) > 0 && f.History[len(f.History)-1].Seq > cl.after
			c.deliverAfter(b, r, f.History, f)
			r.top = max(r.top, f.Seq)
			if !answered && r.last == cl.after && r.last < r.top {
				s.log.Warn().Str("room", r.name).Uint64("after", cl.after).Uint64("top", r.top).
					Msg("history has nothing after a seq known to exist; skipping the gap")
				c.skip(r, f)
			}
		}
	}
	c.advance(b, r)
	c.maybeFetch(b, s, r, now)
}

// deliverAfter delivers the messages of hist (in seq order) that come after
// last; from is the reply they came in. Messages still held because they
// arrived live count as live. It stops when Messages is full: what is left
// is fetched again. A jump over missing seqs is reported. mu held on entry.
func (c *Client) deliverAfter(b *batch, r *room, hist []protocol.Frame, from protocol.Frame) {
	for i, h := range hist {
		if h.Seq <= r.last {
			continue
		}
		if h.Seq != r.last+1 {
			c.lost(r, from, h.Seq-1)
		}
		if !c.push(b, asMessage(h, r.name), !r.holds(h.Seq)) {
			n := 0 // held ones are not set aside: they stay held
			for _, h := range hist[i:] {
				if h.Seq > r.last && !r.holds(h.Seq) {
					n++
				}
			}
			c.setAside(n)
			return
		}
		r.last = h.Seq
	}
}

// reset starts r over from a reply that says the messages after last are
// gone: its History (what the room retains) is delivered, and paging goes on
// from there up to the reply's Seq. mu held on entry.
func (c *Client) reset(b *batch, r *room, f protocol.Frame) {
	clear(r.held)
	r.held = r.held[:0]
	r.top = f.Seq
	next := f.Seq
	if len(f.History) > 0 && f.History[0].Seq > 0 {
		next = f.History[0].Seq - 1
	}
	c.lost(r, f, next)
	c.deliverAfter(b, r, f.History, f)
}

// skip gives up on the gap after last: delivery continues with the next
// held message, or after top. mu held on entry.
func (c *Client) skip(r *room, f protocol.Frame) {
	to := r.top
	if len(r.held) > 0 {
		to = r.held[0].Seq - 1
	}
	if to > r.last {
		c.lost(r, f, to)
	}
}

// lost reports that the messages of r after last up to to will not be
// delivered, and moves last to to. A reset may move last back (the room's
// sequence restarted). mu held on entry.
func (c *Client) lost(r *room, f protocol.Frame, to uint64) {
	f.History = nil
	c.resets.Add(1)
	c.log.Warn().Str("room", r.name).Uint64("last", r.last).Uint64("next", to+1).Bool("reset", f.Reset).
		Msg("messages lost to this client; delivery goes on after them")
	c.emit(Event{Kind: EventReset, Room: r.name, Seq: r.last, Frame: f})
	r.last = to
}

// asMessage fills in what a history entry may leave implicit.
func asMessage(h protocol.Frame, room string) protocol.Frame {
	if h.Type == 0 {
		h.Type = protocol.TypeMessage
	}
	if h.Room == "" {
		h.Room = room
	}
	return h
}

// push puts f on Messages if there is room, recording the OnDeliver call in
// b. mu held on entry.
func (c *Client) push(b *batch, f protocol.Frame, recovered bool) bool {
	select {
	case c.msgs <- f:
	default:
		return false
	}
	if c.dropping {
		c.dropping = false
		c.log.Info().Uint64("dropped_total", c.dropped.Load()).Uint64("refetched_total", c.refetched.Load()).
			Msg("receive buffer drained; delivering again")
	}
	if recovered {
		c.recovered.Add(1)
	}
	if c.cfg.OnDeliver != nil {
		b.hooks = append(b.hooks, delivery{f, recovered})
	}
	return true
}

// setAside records that n room messages did not fit in Messages: fetches
// wait until it has drained to half, then fetch them again. mu held on
// entry.
func (c *Client) setAside(n int) {
	c.refetched.Add(uint64(n))
	if !c.starved {
		c.starved = true
		c.kickSupervisor()
	}
	c.overflow()
}

// overflow logs and reports the first frame of a run that did not fit in
// Messages. mu held on entry.
func (c *Client) overflow() {
	if c.dropping {
		return
	}
	c.dropping = true
	n := c.dropped.Load()
	c.log.Warn().Int("buffer", cap(c.msgs)).Uint64("dropped_total", n).Uint64("refetched_total", c.refetched.Load()).
		Msg("receive buffer full: room messages are fetched again later, other frames dropped")
	c.emit(Event{Kind: EventOverflow, Dropped: n})
}

// flush sends the requests of b on s and runs its OnDeliver calls, with mu
// not held. A join is sent under roomsMu, and only while its room is still
// joined, so that it cannot follow a Leave onto the wire.
func (c *Client) flush(s *session, b *batch) {
	for i := range b.sends {
		f := &b.sends[i]
		var err error
		if f.Type == protocol.TypeJoin {
			err = c.sendJoin(s, f)
		} else {
			err = s.sendFrame(f)
		}
		if err != nil {
			c.forget(f.ID)
			s.log.Debug().Err(err).Str("room", f.Room).Msg("fetch not sent")
		}
	}
	if h := c.cfg.OnDeliver; h != nil {
		for _, d := range b.hooks {
			h(d.f, d.recovered)
		}
	}
	clear(b.sends)
	b.sends = b.sends[:0]
	clear(b.hooks)
	b.hooks = b.hooks[:0]
}

func (c *Client) sendJoin(s *session, f *protocol.Frame) error {
	c.roomsMu.Lock()
	defer c.roomsMu.Unlock()
	c.mu.Lock()
	cl := c.pending[f.ID]
	ok := cl != nil && cl.r != nil && c.rooms[f.Room] == cl.r
	c.mu.Unlock()
	if !ok {
		return errRoomLeft
	}
	return s.sendFrame(f)
}

var errRoomLeft = errors.New("room left")

// kickSupervisor wakes the supervisor to run sync.
func (c *Client) kickSupervisor() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// sync does the delivery work that waits for time or for the consumer, on
// the live connection s: it gives up on fetches that got no reply within
// RequestTimeout, sends the fetches that waited for a backoff or for a full
// Messages to drain to half, and returns how long until it has work again
// (0: only when kicked). Called by the supervisor.
func (c *Client) sync(s *session) time.Duration {
	var b batch
	now := time.Now()
	var next time.Duration
	soon := func(d time.Duration) {
		d = max(d, time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	c.mu.Lock()
	if c.sess != s {
		c.mu.Unlock()
		return 0
	}
	if c.starved {
		if len(c.msgs) > cap(c.msgs)/2 {
			d := min(starvedPoll<<min(c.starvedPolls, 6), starvedPollMax)
			c.starvedPolls++
			c.mu.Unlock()
			return d
		}
		c.starved, c.starvedPolls = false, 0
	}
	for _, r := range c.rooms {
		if r.fetch != 0 && now.Sub(r.fetchAt) >= c.cfg.RequestTimeout {
			if cl := c.pending[r.fetch]; cl != nil && cl.ch == nil {
				delete(c.pending, r.fetch) // the client's own; a re-join is awaited by rejoin
			}
			s.log.Warn().Str("room", r.name).Uint64("after", r.last).Msg("fetch timed out; sending it again")
			r.fetch = 0
		}
		switch {
		case r.fetch != 0:
			soon(r.fetchAt.Add(c.cfg.RequestTimeout).Sub(now))
		case c.needsFetch(r, now):
			c.fetch(&b, s, r, now)
			soon(c.cfg.RequestTimeout)
		case r.joined && r.last < r.top && now.Before(r.retryAt):
			soon(r.retryAt.Sub(now))
		}
	}
	c.mu.Unlock()
	c.flush(s, &b)
	return next
}
