package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
)

// Client is a connection to a Hearth edge that survives reconnections. Its
// methods are safe for concurrent use.
type Client struct {
	cfg     Config
	log     zerolog.Logger
	tls     *tls.Config // nil for ws://
	addr    string      // host:port to dial
	safeURL string      // URL without query, for messages

	cmidPrefix string
	cmidSeq    atomic.Uint64
	nextID     atomic.Uint32

	msgs   chan protocol.Frame
	events chan Event
	kick   chan struct{} // wakes the supervisor to run sync

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup // supervisor and readers
	done      chan struct{}  // closed when the supervisor has stopped

	dropped       atomic.Uint64
	refetched     atomic.Uint64
	recovered     atomic.Uint64
	duplicates    atomic.Uint64
	fetches       atomic.Uint64
	resets        atomic.Uint64
	eventsDropped atomic.Uint64
	reconnects    atomic.Uint64

	// roomsMu orders membership changes on the wire: the sending of a
	// reconnection's joins and of a Leave. Taken before mu.
	roomsMu sync.Mutex

	mu      sync.Mutex
	sess    *session // the live connection; nil while disconnected
	pending map[uint32]*call
	rooms   map[string]*room // delivery state; the joined ones are re-joined after a reconnection
	// up is closed while a connection is up and its rooms' re-joins are
	// sent; a new, open channel replaces it when the connection drops.
	up      chan struct{}
	welcome Welcome
	stopped bool  // closed by Close, or stopped for good
	err     error // why the client stopped; nil after Close
	starved bool  // a room message did not fit in msgs; fetches wait for it to drain
	// starvedPolls counts the supervisor's looks at a still-full msgs.
	starvedPolls uint
	dropping     bool // the last frame did not fit in msgs
}

// call is a request waiting for its reply.
type call struct {
	sess *session
	want protocol.FrameType
	room string
	cmid string
	// apply: what the reply does to the room's delivery state, in the
	// reader, before the waiter sees it.
	apply applyKind
	r     *room   // the room state a join or fetch was made for
	since *uint64 // a join's Since
	after uint64  // a fetch's After
	// ch has capacity 1, so the reader never blocks on it; nil for the
	// client's own fetches, which nobody waits for.
	ch chan result
}

type result struct {
	f   protocol.Frame
	err error
}

// Dial connects to the edge at cfg.URL and waits for its welcome. ctx bounds
// this first connection only (together with cfg.RequestTimeout); the client
// then lives until Close or until it stops by itself. A refused upgrade is a
// *HandshakeError; errors.Is(err, ErrUnauthorized) tells a 401 and
// errors.Is(err, ErrForbidden) a 403.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	tc, addr, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	var rnd [9]byte
	_, _ = rand.Read(rnd[:])
	c := &Client{
		cfg:        cfg,
		log:        cfg.Logger.With().Str("component", "hearth-client").Logger(),
		tls:        tc,
		addr:       addr,
		safeURL:    redactURL(cfg.URL),
		cmidPrefix: base64.RawURLEncoding.EncodeToString(rnd[:]) + "-",
		msgs:       make(chan protocol.Frame, cfg.RecvBuffer),
		events:     make(chan Event, eventBuffer),
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		pending:    make(map[uint32]*call),
		rooms:      make(map[string]*room),
		up:         make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	s, _, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		c.wg.Wait()
		return nil, err
	}
	c.install(s)
	c.markUp(s)
	c.wg.Add(1)
	go c.run(s)
	return c, nil
}

// Close closes the connection with code 1000, stops reconnecting, fails
// pending requests with ErrClosed and waits for the client's goroutines.
// It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		c.cancel()
	})
	c.wg.Wait()
	return nil
}

// Done is closed when the client has stopped, by Close or by itself.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client stopped by itself (wrapping a *CloseError, or
// ErrUnauthorized, ErrForbidden); nil while it runs and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Messages delivers the messages of the joined rooms — each once, in seq
// order per room, whether it arrived live or had to be fetched — and the
// presence, typing and receipt frames, as they come. See the package
// documentation. It is closed when the client stops.
func (c *Client) Messages() <-chan protocol.Frame { return c.msgs }

// Events delivers connection state changes; it holds 64 events and drops
// (and counts) further ones while full. It is closed when the client stops.
func (c *Client) Events() <-chan Event { return c.events }

// Welcome returns the welcome of the current connection, or of the last one
// while disconnected.
func (c *Client) Welcome() Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Dropped:       c.dropped.Load(),
		Refetched:     c.refetched.Load(),
		Recovered:     c.recovered.Load(),
		Duplicates:    c.duplicates.Load(),
		Fetches:       c.fetches.Load(),
		Resets:        c.resets.Load(),
		EventsDropped: c.eventsDropped.Load(),
		Reconnects:    c.reconnects.Load(),
	}
}

// Rooms returns the rooms the client has joined and re-joins after a
// reconnection, in no particular order.
func (c *Client) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.rooms))
	for name, r := range c.rooms {
		if r.joined {
			out = append(out, name)
		}
	}
	return out
}

// Join joins room and returns the edge's joined frame: Seq is the room's
// current sequence number, Members its members, History its recent
// messages (seq ≤ Seq). The client remembers the room and re-joins it after
// every reconnection until Leave, resuming from the last seq it delivered.
//
// Delivery of the room starts after Seq: the History messages are put on
// Messages first (recovered, oldest first, as far as Messages has room),
// then every message with a larger seq, each once and in order. Joining a
// room the client is already in resumes it instead (like JoinSince with the
// last seq delivered), so nothing is delivered twice.
func (c *Client) Join(ctx context.Context, room string) (protocol.Frame, error) {
	return c.join(ctx, room, nil)
}

// JoinSince joins room as a resume from since, the last seq the application
// has seen there (for example one it persisted across restarts): every
// message after since is delivered through Messages, the ones the room
// still retains as recovered messages. If the room no longer retains all of
// them, EventReset says so and delivery starts with the oldest retained.
// Since 0 asks for the whole retained history. If the client is already in
// room, since is ignored: it resumes from the last seq it delivered.
func (c *Client) JoinSince(ctx context.Context, room string, since uint64) (protocol.Frame, error) {
	return c.join(ctx, room, &since)
}

func (c *Client) join(ctx context.Context, name string, since *uint64) (protocol.Frame, error) {
	f := protocol.Frame{Type: protocol.TypeJoin, Room: name}
	if fe := f.ValidateClient(protocol.Limits{}); fe != nil {
		return protocol.Frame{}, fmt.Errorf("client: join %q: %w", name, fe)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()

	c.mu.Lock()
	r := c.rooms[name]
	fresh := r == nil
	if fresh {
		r = &room{name: name}
		if since != nil {
			r.last = *since
		}
	} else if r.joined {
		last := r.last
		since = &last
	}
	f.Since = since
	cl, err := c.register(&f, protocol.TypeJoined, applyJoin)
	if err == nil {
		cl.r, cl.since = r, since
		if fresh {
			c.rooms[name] = r
		}
		if !r.joined {
			r.joinID = f.ID
		}
	}
	c.mu.Unlock()
	if err == nil {
		if err = cl.sess.sendFrame(&f); err != nil {
			c.forget(f.ID)
		}
	}
	var reply protocol.Frame
	if err == nil {
		reply, err = c.wait(ctx, f.ID, cl)
	}
	if err != nil {
		c.mu.Lock()
		if c.rooms[name] == r && !r.joined && r.joinID == f.ID {
			delete(c.rooms, name)
		}
		c.mu.Unlock()
		return reply, fmt.Errorf("client: join %q: %w", name, err)
	}
	return reply, nil
}

// Leave leaves room, and the client stops re-joining it. If the client is
// disconnected, or the connection drops before the reply, Leave returns
// nil: a closed connection is a member of no room, and the room will not be
// re-joined. Join and Leave of the same room must not run concurrently.
// Messages of the room still on their way are delivered as they come,
// without de-duplication.
func (c *Client) Leave(ctx context.Context, room string) error {
	f := protocol.Frame{Type: protocol.TypeLeave, Room: room}
	if fe := f.ValidateClient(protocol.Limits{}); fe != nil {
		return fmt.Errorf("client: leave %q: %w", room, fe)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()

	c.roomsMu.Lock()
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
	cl, err := c.start(&f, protocol.TypeLeft, applyNone)
	c.roomsMu.Unlock()
	if err == nil {
		_, err = c.wait(ctx, f.ID, cl)
	}
	if err == nil || errors.Is(err, ErrDisconnected) {
		return nil
	}
	return fmt.Errorf("client: leave %q: %w", room, err)
}

// Publish sends body to room under a new client message id and returns the
// sequence number the room gave it. With Config.RetryPublish it survives
// reconnections (see there); without, it fails with ErrDisconnected or
// ErrTimeout when the connection drops or the reply is late, and NewCMID
// with PublishCMID lets the caller retry under the same id.
func (c *Client) Publish(ctx context.Context, room string, body []byte) (uint64, error) {
	return c.PublishCMID(ctx, room, c.NewCMID(), body)
}

// PublishCMID is Publish with a client message id chosen by the caller (at
// most protocol.MaxIDLen bytes). The hub de-duplicates ids per user: a
// publish repeated with the same id is acknowledged with the seq of the
// first and never sequenced twice.
func (c *Client) PublishCMID(ctx context.Context, room, cmid string, body []byte) (uint64, error) {
	f := protocol.Frame{Type: protocol.TypePublish, Room: room, CMID: cmid, Body: body}
	if !c.cfg.RetryPublish {
		r, err := c.do(ctx, "publish", f, protocol.TypeAck)
		return r.Seq, err
	}
	for attempt := 1; ; attempt++ {
		r, err := c.do(ctx, "publish", f, protocol.TypeAck)
		if err == nil {
			return r.Seq, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		var wait <-chan struct{}
		var delay time.Duration
		var re *RequestError
		switch {
		case errors.Is(err, ErrDisconnected):
			wait = c.upChan()
		case errors.Is(err, ErrTimeout):
		case errors.As(err, &re) && (re.Code == protocol.CodeUnavailable || re.Code == protocol.CodeInternal ||
			re.Code == protocol.CodeRateLimited):
			delay = backoff(attempt, c.cfg.ReconnectMin, c.cfg.ReconnectMax)
		default:
			return 0, err
		}
		c.log.Debug().Err(err).Str("room", room).Str("cmid", cmid).Int("attempt", attempt).Msg("publish failed; retrying")
		if perr := c.pause(ctx, wait, delay); perr != nil {
			return 0, fmt.Errorf("client: publish %q: %w (last attempt: %w)", room, perr, err)
		}
	}
}

// pause waits until wait is closed, or for delay when wait is nil. It
// fails with ctx's cause, or ErrClosed when the client stops.
func (c *Client) pause(ctx context.Context, wait <-chan struct{}, delay time.Duration) error {
	var timer <-chan time.Time
	if wait == nil {
		t := time.NewTimer(delay)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-wait:
	case <-timer:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.done:
		return ErrClosed
	}
	return nil
}

// NewCMID returns a client message id unique to this client: a random
// prefix chosen at Dial and a counter.
func (c *Client) NewCMID() string {
	return c.cmidPrefix + strconv.FormatUint(c.cmidSeq.Add(1), 36)
}

// HistoryQuery selects messages of a room for History.
type HistoryQuery struct {
	// After > 0 asks for the messages with seq > After, oldest first.
	After uint64
	// Before > 0 asks for the newest messages with seq < Before. With
	// neither After nor Before, the newest messages.
	Before uint64
	// Limit bounds the number of messages, at most
	// protocol.MaxHistoryLimit; the server may return fewer. Zero means
	// the server's default, protocol.DefaultHistoryLimit.
	Limit int
}

// HistoryPage is the answer to History.
type HistoryPage struct {
	// Messages are message frames in seq order.
	Messages []protocol.Frame
	// Seq is the room's current sequence number.
	Seq uint64
	// Reset: After was older than what the room retains; Messages start
	// with the oldest retained message.
	Reset bool
}

// History asks for retained messages of room. It only reads: the messages
// are returned, not put on Messages, and the client's delivery is not
// affected. To page forward, ask again with After set to the last seq
// returned until it reaches Seq.
func (c *Client) History(ctx context.Context, room string, q HistoryQuery) (HistoryPage, error) {
	if q.Limit < 0 || q.Limit > protocol.MaxHistoryLimit {
		return HistoryPage{}, fmt.Errorf("client: history %q: limit %d not in [0, %d]", room, q.Limit, protocol.MaxHistoryLimit)
	}
	f := protocol.Frame{Type: protocol.TypeHistory, Room: room, After: q.After, Before: q.Before, Limit: uint32(q.Limit)}
	r, err := c.do(ctx, "history", f, protocol.TypeHistoryReply)
	if err != nil {
		return HistoryPage{}, err
	}
	for i := range r.History {
		r.History[i] = asMessage(r.History[i], room)
	}
	return HistoryPage{Messages: r.History, Seq: r.Seq, Reset: r.Reset}, nil
}

// Typing tells room that the user is typing. It has no reply: the other
// members get a protocol.TypeTypingEvent frame through Messages. A refusal
// arrives as EventServerError.
func (c *Client) Typing(ctx context.Context, room string) error {
	return c.notify(ctx, "typing", protocol.Frame{Type: protocol.TypeTyping, Room: room})
}

// MarkRead records that the user has read room up to seq. It has no reply:
// the room's members (this client included) get a protocol.TypeReceipt
// frame through Messages. A refusal arrives as EventServerError.
func (c *Client) MarkRead(ctx context.Context, room string, seq uint64) error {
	return c.notify(ctx, "read", protocol.Frame{Type: protocol.TypeRead, Room: room, Seq: seq})
}

// notify sends a frame that has no reply.
func (c *Client) notify(ctx context.Context, op string, f protocol.Frame) error {
	if fe := f.ValidateClient(protocol.Limits{}); fe != nil {
		return fmt.Errorf("client: %s %q: %w", op, f.Room, fe)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: %s %q: %w", op, f.Room, context.Cause(ctx))
	}
	c.mu.Lock()
	s, err := c.live()
	c.mu.Unlock()
	if err == nil {
		err = s.sendFrame(&f)
	}
	if err != nil {
		return fmt.Errorf("client: %s %q: %w", op, f.Room, err)
	}
	return nil
}

// do sends a request and waits for its reply.
func (c *Client) do(ctx context.Context, op string, f protocol.Frame, want protocol.FrameType) (protocol.Frame, error) {
	if fe := f.ValidateClient(protocol.Limits{}); fe != nil {
		return protocol.Frame{}, fmt.Errorf("client: %s %q: %w", op, f.Room, fe)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	cl, err := c.start(&f, want, applyNone)
	if err != nil {
		return protocol.Frame{}, fmt.Errorf("client: %s %q: %w", op, f.Room, err)
	}
	r, err := c.wait(ctx, f.ID, cl)
	if err != nil {
		return r, fmt.Errorf("client: %s %q: %w", op, f.Room, err)
	}
	return r, nil
}

// start registers a call and writes its frame, with its new id, on the
// live connection.
func (c *Client) start(f *protocol.Frame, want protocol.FrameType, apply applyKind) (*call, error) {
	c.mu.Lock()
	cl, err := c.register(f, want, apply)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := cl.sess.sendFrame(f); err != nil {
		c.forget(f.ID)
		return nil, err
	}
	return cl, nil
}

// live returns the live connection, or why there is none. mu held on entry.
func (c *Client) live() (*session, error) {
	if c.stopped {
		if c.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrClosed, c.err)
		}
		return nil, ErrClosed
	}
	if c.sess == nil {
		return nil, ErrDisconnected
	}
	return c.sess, nil
}

// register records a call for f on the live connection and sets f.ID. mu
// held on entry.
func (c *Client) register(f *protocol.Frame, want protocol.FrameType, apply applyKind) (*call, error) {
	s, err := c.live()
	if err != nil {
		return nil, err
	}
	cl := c.registerOn(s, f, want, apply)
	cl.ch = make(chan result, 1)
	return cl, nil
}

// registerOn records a call for f on s, without a channel to wait on, and
// sets f.ID. mu held on entry.
func (c *Client) registerOn(s *session, f *protocol.Frame, want protocol.FrameType, apply applyKind) *call {
	id := c.newID()
	cl := &call{sess: s, want: want, room: f.Room, cmid: f.CMID, apply: apply}
	c.pending[id] = cl
	f.ID = id
	return cl
}

// wait waits for the reply of call id.
func (c *Client) wait(ctx context.Context, id uint32, cl *call) (protocol.Frame, error) {
	select {
	case r := <-cl.ch:
		return r.f, r.err
	case <-ctx.Done():
		c.forget(id)
		// The reply may have raced the deadline; prefer it.
		select {
		case r := <-cl.ch:
			return r.f, r.err
		default:
		}
		return protocol.Frame{}, context.Cause(ctx)
	}
}

// newID returns a request id that is not zero and not pending. mu held on entry.
func (c *Client) newID() uint32 {
	for {
		id := c.nextID.Add(1)
		if _, busy := c.pending[id]; id != 0 && !busy {
			return id
		}
	}
}

func (c *Client) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// reply completes the call a reply frame answers, applying it first to the
// room's delivery state when it is a join or a fetch. Called by s's reader.
func (c *Client) reply(s *session, f protocol.Frame) {
	b := &s.batch
	c.mu.Lock()
	cl, ok := c.pending[f.ID]
	if ok && cl.sess == s {
		delete(c.pending, f.ID)
	} else {
		ok = false
	}
	var r result
	if ok {
		r = checkReply(cl, f)
		switch cl.apply {
		case applyJoin:
			c.applyJoined(b, s, f.ID, cl, r)
		case applyFetch:
			c.applyFetch(b, s, f.ID, cl, r)
		}
	}
	c.mu.Unlock()
	c.flush(s, b)

	switch {
	case ok:
		if cl.ch != nil {
			cl.ch <- r
		}
	case f.Type == protocol.TypeError:
		s.log.Warn().Uint32("id", f.ID).Uint16("code", uint16(f.Code)).Str("text", f.Text).Str("room", f.Room).
			Msg("error frame for no pending request")
		c.emit(Event{Kind: EventServerError, Frame: f, Room: f.Room,
			Err: &RequestError{Code: f.Code, Text: f.Text, Room: f.Room}})
	default:
		s.log.Debug().Uint32("id", f.ID).Uint8("type", uint8(f.Type)).Msg("reply for no pending request")
	}
}

func checkReply(cl *call, f protocol.Frame) result {
	switch {
	case f.Type == protocol.TypeError:
		return result{f, &RequestError{Code: f.Code, Text: f.Text, Room: f.Room}}
	case f.Type != cl.want:
		return result{f, fmt.Errorf("%w: frame type %d, want %d", ErrUnexpectedReply, f.Type, cl.want)}
	case cl.want == protocol.TypeAck && f.CMID != cl.cmid:
		return result{f, fmt.Errorf("%w: ack for cmid %q, want %q", ErrUnexpectedReply, f.CMID, cl.cmid)}
	}
	return result{f: f}
}

// emit sends an event without blocking; a full channel drops it.
func (c *Client) emit(e Event) {
	select {
	case c.events <- e:
	default:
		c.eventsDropped.Add(1)
	}
}

// install makes s the live connection.
func (c *Client) install(s *session) {
	c.mu.Lock()
	c.sess = s
	c.welcome = s.welcome
	c.mu.Unlock()
	s.log.Info().Str("user", s.welcome.User).Dur("heartbeat", s.welcome.Heartbeat).Msg("connected")
	c.emit(Event{Kind: EventConnected, Welcome: s.welcome})
}

// markUp records that s is up with its rooms' re-joins sent: retried
// publishes may go.
func (c *Client) markUp(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		select {
		case <-c.up:
		default:
			close(c.up)
		}
	}
}

// upChan returns a channel closed once a connection is up with its rooms
// re-joined.
func (c *Client) upChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// detach forgets s as the live connection and fails its pending requests.
// Called by s's OnClose.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
		select {
		case <-c.up:
			c.up = make(chan struct{})
		default:
		}
	}
	err := ErrDisconnected
	if c.stopped {
		err = ErrClosed
	}
	for id, cl := range c.pending {
		if cl.sess == s {
			delete(c.pending, id)
			if cl.ch != nil {
				cl.ch <- result{err: err}
			}
		}
	}
}
