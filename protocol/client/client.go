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

	"github.com/lxzan/gws"
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

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup // supervisor and readers
	done      chan struct{}  // closed when the supervisor has stopped

	dropped       atomic.Uint64
	eventsDropped atomic.Uint64
	reconnects    atomic.Uint64
	dropping      atomic.Bool // the last broadcast was dropped

	// roomsMu orders membership changes on the wire: the sending of a
	// reconnection's joins and of a Leave. Taken before mu.
	roomsMu sync.Mutex

	mu      sync.Mutex
	sess    *session // the live connection; nil while disconnected
	pending map[uint32]*call
	rooms   map[string]struct{} // rooms to re-join after a reconnection
	welcome Welcome
	stopped bool  // closed by Close, or stopped for good
	err     error // why the client stopped; nil after Close
}

// call is a request waiting for its reply.
type call struct {
	sess *session
	want protocol.FrameType
	room string
	cmid string
	// remember: a successful reply adds room to the rooms to re-join (a
	// user's join; a re-join must not undo a concurrent Leave).
	remember bool
	ch       chan result // capacity 1: the reader never blocks on it
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
		done:       make(chan struct{}),
		pending:    make(map[uint32]*call),
		rooms:      make(map[string]struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	s, _, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		c.wg.Wait()
		return nil, err
	}
	c.install(s)
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

// Messages delivers the message and presence frames of the joined rooms.
// See the package documentation for what happens when it is full. It is
// closed when the client stops.
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
	for r := range c.rooms {
		out = append(out, r)
	}
	return out
}

// Join joins room and returns the edge's joined frame (Seq is the room's
// current sequence number, Members its members). The client remembers the
// room and re-joins it after every reconnection until Leave.
func (c *Client) Join(ctx context.Context, room string) (protocol.Frame, error) {
	return c.do(ctx, "join", protocol.Frame{Type: protocol.TypeJoin, Room: room}, protocol.TypeJoined)
}

// Leave leaves room, and the client stops re-joining it. If the client is
// disconnected, or the connection drops before the reply, Leave returns
// nil: a closed connection is a member of no room, and the room will not be
// re-joined. Join and Leave of the same room must not run concurrently.
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
	id, cl, err := c.start(&f, protocol.TypeLeft, false)
	c.roomsMu.Unlock()
	if err == nil {
		_, err = c.wait(ctx, id, cl)
	}
	if err == nil || errors.Is(err, ErrDisconnected) {
		return nil
	}
	return fmt.Errorf("client: leave %q: %w", room, err)
}

// Publish sends body to room under a new client message id and returns the
// sequence number the room gave it. To retry a publish that failed with
// ErrDisconnected or ErrTimeout without risking a duplicate, use NewCMID
// and PublishCMID with the same id.
func (c *Client) Publish(ctx context.Context, room string, body []byte) (uint64, error) {
	return c.PublishCMID(ctx, room, c.NewCMID(), body)
}

// PublishCMID is Publish with a client message id chosen by the caller (at
// most protocol.MaxIDLen bytes). The hub de-duplicates ids, so repeating a
// publish with the same id is safe.
func (c *Client) PublishCMID(ctx context.Context, room, cmid string, body []byte) (uint64, error) {
	f, err := c.do(ctx, "publish", protocol.Frame{Type: protocol.TypePublish, Room: room, CMID: cmid, Body: body}, protocol.TypeAck)
	return f.Seq, err
}

// NewCMID returns a client message id unique to this client: a random
// prefix chosen at Dial and a counter.
func (c *Client) NewCMID() string {
	return c.cmidPrefix + strconv.FormatUint(c.cmidSeq.Add(1), 36)
}

// do sends a request and waits for its reply.
func (c *Client) do(ctx context.Context, op string, f protocol.Frame, want protocol.FrameType) (protocol.Frame, error) {
	if fe := f.ValidateClient(protocol.Limits{}); fe != nil {
		return protocol.Frame{}, fmt.Errorf("client: %s %q: %w", op, f.Room, fe)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	id, cl, err := c.start(&f, want, want == protocol.TypeJoined)
	if err != nil {
		return protocol.Frame{}, fmt.Errorf("client: %s %q: %w", op, f.Room, err)
	}
	r, err := c.wait(ctx, id, cl)
	if err != nil {
		return r, fmt.Errorf("client: %s %q: %w", op, f.Room, err)
	}
	return r, nil
}

// start registers a call and writes its frame on the live connection.
func (c *Client) start(f *protocol.Frame, want protocol.FrameType, remember bool) (uint32, *call, error) {
	c.mu.Lock()
	if c.stopped {
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return 0, nil, ErrClosed
	}
	s := c.sess
	if s == nil {
		c.mu.Unlock()
		return 0, nil, ErrDisconnected
	}
	id := c.newID()
	cl := &call{sess: s, want: want, room: f.Room, cmid: f.CMID, ch: make(chan result, 1),
		remember: remember}
	c.pending[id] = cl
	c.mu.Unlock()

	f.ID = id
	b, err := protocol.EncodeFrame(f)
	if err == nil {
		err = s.write(gws.OpcodeBinary, b)
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrDisconnected, err)
		}
	}
	if err != nil {
		c.forget(id)
		return 0, nil, err
	}
	return id, cl, nil
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

// reply completes the call a reply frame answers. Called by s's reader.
func (c *Client) reply(s *session, f protocol.Frame) {
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
		if r.err == nil && cl.remember {
			// Recorded here, by the reader, so that a reconnection that
			// follows this reply always re-joins the room.
			c.rooms[cl.room] = struct{}{}
		}
	}
	c.mu.Unlock()

	switch {
	case ok:
		cl.ch <- r
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

// deliver hands a broadcast to Messages without ever blocking: a full
// buffer drops the frame. Called by the reader.
func (c *Client) deliver(f protocol.Frame) {
	select {
	case c.msgs <- f:
		if c.dropping.Load() {
			c.dropping.Store(false)
			c.log.Info().Uint64("dropped_total", c.dropped.Load()).Msg("receive buffer drained; delivering broadcasts again")
		}
	default:
		n := c.dropped.Add(1)
		if !c.dropping.Swap(true) {
			c.log.Warn().Int("buffer", cap(c.msgs)).Uint64("dropped_total", n).
				Msg("receive buffer full: dropping broadcasts until the consumer catches up")
			c.emit(Event{Kind: EventOverflow, Dropped: n})
		}
	}
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

// detach forgets s as the live connection and fails its pending requests.
// Called by s's OnClose.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
	}
	err := ErrDisconnected
	if c.stopped {
		err = ErrClosed
	}
	for id, cl := range c.pending {
		if cl.sess == s {
			delete(c.pending, id)
			cl.ch <- result{err: err}
		}
	}
}
