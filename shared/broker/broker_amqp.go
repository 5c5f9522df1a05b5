package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
)

// AMQPConfig configures the RabbitMQ broker.
type AMQPConfig struct {
	// URLs of the RabbitMQ nodes (amqp:// or amqps://, credentials and vhost
	// included), tried in turn on every connect and reconnect. Several URLs
	// are the nodes of one cluster. Required.
	URLs []string
	// ReconnectMin is the base delay of the capped, full-jitter exponential
	// backoff between connection attempts: attempt n waits a random time in
	// (0, min(ReconnectMax, ReconnectMin·2ⁿ)]. Zero value means 100ms.
	ReconnectMin time.Duration
	// ReconnectMax caps the backoff delay. Zero value means 5s.
	ReconnectMax time.Duration
	// DialTimeout bounds the TCP connect plus the TLS and AMQP handshakes of
	// one attempt. Zero value means 5s.
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval proposed to the server; a dead
	// peer is detected after about two of them. Zero value means 10s.
	Heartbeat time.Duration
	// Name is sent as the connection_name client property, suffixed with
	// " publish" and " consume" for the two connections, so operators can
	// tell processes apart in RabbitMQ. Zero value means "hearth".
	Name string
	// Logger receives connection events: connect, disconnect (with the
	// reason), reconnect attempts, blocked and unblocked. Zero value means no
	// logging.
	Logger zerolog.Logger
}

// Defaults of AMQPConfig's zero values.
const (
	defaultReconnectMin = 100 * time.Millisecond
	defaultReconnectMax = 5 * time.Second
	defaultDialTimeout  = 5 * time.Second
	defaultHeartbeat    = 10 * time.Second
	defaultName         = "hearth"
)

// Header names of Message.Conn and Message.Room.
const (
	headerConn = "hearth-conn"
	headerRoom = "hearth-room"
	// headerReply carries Message.Reply, a byte array.
	headerReply = "hearth-reply"
	// headerBCC is RabbitMQ's sender-selected distribution header: more
	// routing keys, removed before delivery.
	headerBCC = "BCC"
)

// AMQP is the RabbitMQ Broker, built on amqp091-go.
//
// It keeps two connections, so that RabbitMQ's flow control on publishers
// (connection.blocked) never stalls consumers:
//
//   - publish: one channel in confirm mode. Publish waits for the broker's
//     confirm; concurrent publishes are pipelined on that channel.
//   - consume: one channel for topology calls (declare, bind, unbind), which
//     are made here so that exclusive queues belong to this connection, and
//     one channel per consumer (its prefetch is per channel).
//
// Each connection has a supervisor goroutine that reconnects forever with
// capped full-jitter backoff, rotating through the URLs. After the consume
// connection comes back, every recorded exchange, queue and binding is
// declared again and then the consumers subscribe again, with their handlers.
// A channel closed by a channel exception (404 NOT_FOUND, 406
// PRECONDITION_FAILED, ...) is reopened at once on the same connection.
//
// Locking: topoMu (topology record and channel) is taken before pub.mu or
// sub.mu, never after; pub.mu and sub.mu are never held together.
type AMQP struct {
	cfg AMQPConfig
	log zerolog.Logger

	ctx    context.Context // done once Close starts
	cancel context.CancelFunc

	goMu      sync.Mutex // guards closed and every wg.Add
	closed    bool
	wg        sync.WaitGroup
	closeOnce sync.Once

	pub pubSide
	sub subSide

	topoState atomic.Pointer[amqp.Channel] // topo, readable without topoMu (State)
	lastErr   atomic.Pointer[errorBox]     // last connection error, for NewAMQP's failure
	consumers atomic.Uint64                // consumer tag sequence

	topoMu    sync.Mutex               // serializes topology calls; guards the fields below
	topo      *amqp.Channel            // topology channel on the consume connection
	exchanges map[string]struct{}      // declared exchanges
	queues    map[string]QueueSpec     // declared queues
	bindings  map[amqpBinding]struct{} // current bindings
}

type errorBox struct{ err error }

type amqpBinding struct{ queue, exchange, pattern string }

// pubSide is the state of the publish connection.
type pubSide struct {
	mu      sync.Mutex
	conn    *amqp.Connection    // nil while down
	ch      *pubChannel         // nil while down
	up      chan struct{}       // closed while up
	blocked string              // non-empty while RabbitMQ blocks publishing: the reason
	known   map[string]struct{} // exchanges known to exist on conn
}

// pubChannel is one confirm-mode channel of the publish connection.
type pubChannel struct {
	ch   *amqp.Channel
	done chan struct{} // closed once the channel is closed and err is set
	// Set before done is closed.
	err        *amqp.Error // nil for a clean close
	connClosed bool        // the whole connection went down

	// Mandatory publishes (to the default exchange) come back as
	// basic.return when unroutable, before their confirm: amqp091's reader
	// puts the return in returns before it handles the ack, and the
	// publisher, once confirmed, drains returns and looks for its
	// MessageId.
	returns  chan amqp.Return
	ids      atomic.Uint64       // MessageId sequence
	retMu    sync.Mutex          // guards returned and mandatory
	returned map[string]struct{} // MessageIds drained from returns, not yet claimed
	// mandatory counts mandatory publishes in flight; at zero, returned is
	// emptied of the ids of publishes that gave up (ctx) before their return.
	mandatory int
}

// returnBuffer bounds the returns of mandatory publishes waiting to be
// drained (each mandatory publish drains them when it starts and when it
// ends). When it is full, amqp091's reader waits up to 5s and then drops
// the return, whose publish then succeeds: only past that many unroutable
// publishes to the default exchange awaiting their confirms at once.
const returnBuffer = 256

// beginMandatory registers a mandatory publish and returns its MessageId.
// It drains returns too, so that a long batch of mandatory publishes does
// not fill returns before it starts waiting for its confirms.
func (pc *pubChannel) beginMandatory() string {
	pc.retMu.Lock()
	pc.drainLocked()
	pc.mandatory++
	pc.retMu.Unlock()
	return "hearth-" + strconv.FormatUint(pc.ids.Add(1), 10)
}

// endMandatory forgets the mandatory publish id, and drains returns so
// that those of publishes that gave up do not fill it.
func (pc *pubChannel) endMandatory(id string) {
	pc.retMu.Lock()
	defer pc.retMu.Unlock()
	pc.drainLocked()
	delete(pc.returned, id)
	pc.mandatory--
	if pc.mandatory == 0 {
		clear(pc.returned)
	}
}

// wasReturned reports whether RabbitMQ returned the confirmed mandatory
// publish id as unroutable.
func (pc *pubChannel) wasReturned(id string) bool {
	pc.retMu.Lock()
	defer pc.retMu.Unlock()
	pc.drainLocked()
	_, ok := pc.returned[id]
	return ok
}

// drainLocked moves the waiting returns into returned. retMu held.
func (pc *pubChannel) drainLocked() {
	for {
		select {
		case r, ok := <-pc.returns:
			if !ok {
				return
			}
			pc.returned[r.MessageId] = struct{}{}
		default:
			return
		}
	}
}

// subSide is the state of the consume connection.
type subSide struct {
	mu   sync.Mutex
	conn *amqp.Connection // nil while down, and until topology is restored
	up   chan struct{}    // closed while up
}

var _ Broker = (*AMQP)(nil)

// NewAMQP connects to RabbitMQ and returns the broker once both connections
// are up. ctx bounds only that first wait: when it ends first, NewAMQP fails
// with an error wrapping ErrUnavailable and the last connection error. After
// that the broker reconnects by itself, forever, until Close.
func NewAMQP(ctx context.Context, cfg AMQPConfig) (*AMQP, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("broker: AMQPConfig.URLs is empty")
	}
	for _, u := range cfg.URLs {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, fmt.Errorf("broker: AMQP URL %q: %w", redact(u), err)
		}
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = defaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = defaultReconnectMax
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = cfg.ReconnectMin
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.Name == "" {
		cfg.Name = defaultName
	}

	b := &AMQP{
		cfg:       cfg,
		log:       cfg.Logger,
		exchanges: make(map[string]struct{}),
		queues:    make(map[string]QueueSpec),
		bindings:  make(map[amqpBinding]struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.pub.up = make(chan struct{})
	b.sub.up = make(chan struct{})
	pubUp, subUp := b.pub.up, b.sub.up
	b.goOwned(func() { b.supervise("publish", b.setupPub, b.teardownPub) })
	b.goOwned(func() { b.supervise("consume", b.setupSub, b.teardownSub) })

	for _, up := range []chan struct{}{pubUp, subUp} {
		select {
		case <-up:
		case <-ctx.Done():
			_ = b.Close()
			err := ctx.Err()
			if box := b.lastErr.Load(); box != nil {
				err = box.err
			}
			return nil, fmt.Errorf("broker: connecting to RabbitMQ: %w: %w", ErrUnavailable, err)
		}
	}
	return b, nil
}

// goOwned runs f on a goroutine counted by b.wg, unless b is closed.
func (b *AMQP) goOwned(f func()) bool {
	b.goMu.Lock()
	defer b.goMu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// supervise keeps one connection up until Close: dial, set up, wait for the
// connection to drop, tear down, back off, again.
func (b *AMQP) supervise(role string, setup func(*amqp.Connection) error, teardown func(*amqp.Connection)) {
	log := b.log.With().Str("amqp_conn", role).Logger()
	attempt, next := 0, 0
	for b.ctx.Err() == nil {
		u := b.cfg.URLs[next%len(b.cfg.URLs)]
		next++
		conn, err := b.dial(u, role)
		if err == nil {
			closes := conn.NotifyClose(make(chan *amqp.Error, 1))
			if err = setup(conn); err == nil {
				attempt = 0
				log.Info().Str("url", redact(u)).Msg("broker: connected")
				var reason *amqp.Error
				select {
				case reason = <-closes:
				case <-b.ctx.Done():
				}
				teardown(conn)
				if b.ctx.Err() != nil {
					_ = conn.CloseDeadline(time.Now().Add(b.cfg.DialTimeout))
					return
				}
				ev := log.Warn().Str("url", redact(u))
				if reason != nil {
					ev = ev.Int("code", reason.Code).Str("reason", reason.Reason)
				}
				ev.Msg("broker: disconnected")
				err = errors.New("connection lost")
				if reason != nil {
					err = reason
				}
			} else {
				_ = conn.CloseDeadline(time.Now().Add(b.cfg.DialTimeout))
			}
		}
		if b.ctx.Err() != nil {
			return
		}
		b.lastErr.Store(&errorBox{err})
		attempt++
		delay := b.backoff(attempt)
		log.Info().Err(err).Str("url", redact(u)).Int("attempt", attempt).
			Dur("delay", delay).Msg("broker: reconnecting")
		if !b.sleep(delay) {
			return
		}
	}
}

// backoff is the full-jitter delay before connection attempt n (n ≥ 1).
func (b *AMQP) backoff(n int) time.Duration {
	return backoffDelay(b.cfg.ReconnectMin, b.cfg.ReconnectMax, n)
}

// sleep waits d; it reports false when Close started meanwhile.
func (b *AMQP) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

func (b *AMQP) dial(u, role string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props["connection_name"] = b.cfg.Name + " " + role
	return amqp.DialConfig(u, amqp.Config{
		Properties: props,
		Heartbeat:  b.cfg.Heartbeat,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: b.cfg.DialTimeout, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(b.ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshakes; amqp091 clears it once the connection is open.
			if err := c.SetDeadline(time.Now().Add(b.cfg.DialTimeout)); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	})
}

// redact hides the password of an AMQP URL.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// ---- publish connection

func (b *AMQP) setupPub(conn *amqp.Connection) error {
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	b.goOwned(func() {
		// Ends when the connection closes (amqp091 closes blocks).
		for bl := range blocks {
			b.pub.mu.Lock()
			current := b.pub.conn == conn
			if current {
				b.pub.blocked = ""
				if bl.Active {
					b.pub.blocked = bl.Reason
					if b.pub.blocked == "" {
						b.pub.blocked = "no reason given"
					}
				}
			}
			b.pub.mu.Unlock()
			if !current {
				continue
			}
			if bl.Active {
				b.log.Warn().Str("reason", bl.Reason).Msg("broker: RabbitMQ blocked publishing")
			} else {
				b.log.Info().Msg("broker: RabbitMQ unblocked publishing")
			}
		}
	})
	pc, err := b.openPubChannel(conn)
	if err != nil {
		return err
	}
	b.pub.mu.Lock()
	b.pub.conn, b.pub.ch, b.pub.blocked = conn, pc, ""
	b.pub.known = map[string]struct{}{"": {}}
	close(b.pub.up)
	b.pub.mu.Unlock()
	return nil
}

func (b *AMQP) teardownPub(conn *amqp.Connection) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if b.pub.conn == conn {
		b.pub.conn, b.pub.ch, b.pub.blocked, b.pub.known = nil, nil, "", nil
		b.pub.up = make(chan struct{})
	}
}

// openPubChannel opens a confirm-mode channel and starts its watcher.
func (b *AMQP) openPubChannel(conn *amqp.Connection) (*pubChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enabling publisher confirms: %w", err)
	}
	pc := &pubChannel{
		ch:       ch,
		done:     make(chan struct{}),
		returns:  ch.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		returned: make(map[string]struct{}),
	}
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	if !b.goOwned(func() { b.watchPubChannel(conn, pc, closes) }) {
		_ = ch.Close()
		return nil, ErrClosed
	}
	return pc, nil
}

// watchPubChannel records why pc closed and, when only the channel failed
// (a channel exception), opens its replacement on the same connection.
func (b *AMQP) watchPubChannel(conn *amqp.Connection, pc *pubChannel, closes chan *amqp.Error) {
	e := <-closes
	pc.err = e
	pc.connClosed = conn.IsClosed()
	close(pc.done)
	if e == nil || pc.connClosed || b.ctx.Err() != nil {
		return
	}
	b.log.Warn().Int("code", e.Code).Str("reason", e.Reason).Msg("broker: publish channel closed by RabbitMQ; reopening it")
	npc, err := b.openPubChannel(conn)
	b.pub.mu.Lock()
	current := b.pub.conn == conn
	if current && err == nil {
		b.pub.ch = npc
		if e.Code == amqp.NotFound {
			// An exchange we thought existed is gone: check again.
			b.pub.known = map[string]struct{}{"": {}}
		}
	}
	b.pub.mu.Unlock()
	switch {
	case !current && npc != nil:
		_ = npc.ch.Close()
	case current && err != nil:
		// The connection is unusable; the supervisor reconnects.
		b.log.Warn().Err(err).Msg("broker: reopening the publish channel failed; reconnecting")
		_ = conn.Close()
	}
}

// Publish sends m to exchange and waits for RabbitMQ's confirm. Publishes
// from several goroutines are pipelined on one channel.
//
// Errors: ErrUnavailable (wrapped) at once while disconnected or while
// RabbitMQ blocks publishing (State().Blocked), and when the connection or
// channel went down before the confirm (the message may or may not have
// been routed: the caller decides whether to publish again); ErrNacked when
// RabbitMQ refused it (reject-publish overflow, ...); ErrNotFound for a
// missing exchange; ctx's error when ctx ended first (outcome unknown).
// Messages no queue matches are confirmed and dropped, except on the
// default exchange "", which routes to the queue named m.Key (a stream
// included): there the publish is mandatory, and fails with ErrUnroutable
// when RabbitMQ returns it. RabbitMQ does so when the queue does not exist,
// and also for a while after a node restart while a stream's log is not
// running yet: without mandatory, those appends would be confirmed and lost.
//
// The first publish to an exchange this broker did not declare checks that
// it exists (a passive declare on a scratch channel), so that publishing to a
// missing exchange does not close the channel shared by concurrent publishes.
func (b *AMQP) Publish(ctx context.Context, exchange string, m Message) error {
	pc, err := b.publishChannel(ctx, exchange)
	if err != nil {
		return err
	}
	p, err := pc.send(ctx, exchange, &m)
	if p.id != "" {
		defer pc.endMandatory(p.id)
	}
	if err != nil {
		return err
	}
	return pc.confirm(ctx, exchange, p)
}

// PublishBatch sends msgs one after another on the publish channel, without
// waiting in between, then waits for their confirms in order: a batch costs
// one round trip. Each message has Publish's outcomes; the error returned is
// that of the first message, in msgs' order, that failed. When sending
// fails part way (the channel closed), the messages not sent count as
// failed with that error. When ctx ends, PublishBatch returns ctx's error
// at once; the outcome of the messages not yet confirmed is unknown.
func (b *AMQP) PublishBatch(ctx context.Context, exchange string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	pc, err := b.publishChannel(ctx, exchange)
	if err != nil {
		return err
	}
	sent := make([]pending, 0, len(msgs))
	defer func() {
		for _, p := range sent {
			if p.id != "" {
				pc.endMandatory(p.id)
			}
		}
	}()
	var sendErr error
	for i := range msgs {
		p, err := pc.send(ctx, exchange, &msgs[i])
		if err != nil {
			if p.id != "" {
				pc.endMandatory(p.id)
			}
			sendErr = err
			break
		}
		sent = append(sent, p)
	}
	var first error
	for _, p := range sent {
		err := pc.confirm(ctx, exchange, p)
		if err != nil && ctx.Err() != nil {
			return err // the rest would wait for ctx too
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = sendErr
	}
	return first
}

// publishChannel returns the channel to publish to exchange on: it fails
// with ErrClosed, ctx's error, or ErrUnavailable while disconnected or
// blocked, and checks that exchange exists (checkExchange).
func (b *AMQP) publishChannel(ctx context.Context, exchange string) (*pubChannel, error) {
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Blocked first: a blocked connection stalls every method, even the
	// channel.open of checkExchange.
	b.pub.mu.Lock()
	pc, blocked := b.pub.ch, b.pub.blocked
	b.pub.mu.Unlock()
	if pc == nil {
		return nil, fmt.Errorf("publishing to exchange %q: %w", exchange, ErrUnavailable)
	}
	if blocked != "" {
		return nil, fmt.Errorf("publishing to exchange %q: RabbitMQ blocked publishing (%s): %w", exchange, blocked, ErrUnavailable)
	}
	if err := b.checkExchange(exchange); err != nil {
		return nil, err
	}
	return pc, nil
}

// pending is a message sent on a publish channel, awaiting its confirm.
type pending struct {
	dc  *amqp.DeferredConfirmation
	key string
	id  string // MessageId of a mandatory publish; "" for others
}

// send publishes m on pc without waiting for the confirm. A publish to the
// default exchange is mandatory: send registers it (beginMandatory) and
// returns its id, also on error, and the caller calls endMandatory(id)
// once it no longer waits for the outcome.
func (pc *pubChannel) send(ctx context.Context, exchange string, m *Message) (pending, error) {
	p := amqp.Publishing{Body: m.Body, Type: m.Type}
	if m.Persistent {
		p.DeliveryMode = amqp.Persistent
	}
	if m.Conn != "" || m.Room != "" || len(m.CC) > 0 || m.Reply != nil {
		p.Headers = make(amqp.Table, 4)
		if m.Conn != "" {
			p.Headers[headerConn] = m.Conn
		}
		if m.Room != "" {
			p.Headers[headerRoom] = m.Room
		}
		if m.Reply != nil {
			p.Headers[headerReply] = m.Reply
		}
		if len(m.CC) > 0 {
			cc := make([]any, len(m.CC))
			for i, k := range m.CC {
				cc[i] = k
			}
			p.Headers[headerBCC] = cc
		}
	}
	out := pending{key: m.Key}
	mandatory := exchange == ""
	if mandatory {
		out.id = pc.beginMandatory()
		p.MessageId = out.id
	}
	dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.Key, mandatory, false, p)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return out, ctxErr
		}
		if errors.Is(err, amqp.ErrClosed) || pc.ch.IsClosed() {
			return out, fmt.Errorf("publishing to exchange %q: %w (%v)", exchange, ErrUnavailable, err)
		}
		return out, fmt.Errorf("publishing to exchange %q: %w", exchange, err)
	}
	if dc == nil {
		return out, fmt.Errorf("publishing to exchange %q: channel not in confirm mode: %w", exchange, ErrUnavailable)
	}
	out.dc = dc
	return out, nil
}

// confirm waits for the confirm of p, sent on pc, and maps its outcome to
// the package's errors.
func (pc *pubChannel) confirm(ctx context.Context, exchange string, p pending) error {
	select {
	case <-p.dc.Done():
	case <-ctx.Done():
		return fmt.Errorf("publishing to exchange %q: waiting for the confirm: %w", exchange, ctx.Err())
	}
	if p.dc.Acked() {
		if p.id != "" && pc.wasReturned(p.id) {
			return fmt.Errorf("publishing to queue %q through the default exchange: %w", p.key, ErrUnroutable)
		}
		return nil
	}
	// amqp091 completes unconfirmed publishes with a nack when the channel
	// closes, after marking it closed: an open channel means a real nack.
	if !pc.ch.IsClosed() {
		return fmt.Errorf("publishing to exchange %q with key %q: %w", exchange, p.key, ErrNacked)
	}
	select {
	case <-pc.done:
	case <-ctx.Done():
		return fmt.Errorf("publishing to exchange %q: %w (channel closed)", exchange, ErrUnavailable)
	}
	if e := pc.err; e != nil && !pc.connClosed && e.Code == amqp.NotFound &&
		strings.Contains(e.Reason, "'"+exchange+"'") {
		return fmt.Errorf("publishing to exchange %q: %w: %w", exchange, ErrNotFound, e)
	}
	return fmt.Errorf("publishing to exchange %q: channel closed before the confirm: %w (%v)", exchange, ErrUnavailable, pc.err)
}

// checkExchange makes sure exchange exists before it is published to, so
// that a publish to a missing exchange fails alone.
func (b *AMQP) checkExchange(exchange string) error {
	b.pub.mu.Lock()
	_, ok := b.pub.known[exchange]
	conn := b.pub.conn
	b.pub.mu.Unlock()
	if ok {
		return nil
	}
	if conn == nil {
		return fmt.Errorf("publishing to exchange %q: %w", exchange, ErrUnavailable)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publishing to exchange %q: %w (%v)", exchange, ErrUnavailable, err)
	}
	// A 404 closes ch; otherwise close it here.
	if err := ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return b.opErr(conn, fmt.Sprintf("publishing to exchange %q", exchange), err)
	}
	_ = ch.Close()
	b.pub.mu.Lock()
	if b.pub.conn == conn {
		b.pub.known[exchange] = struct{}{}
	}
	b.pub.mu.Unlock()
	return nil
}

// ---- consume connection and topology

// setupSub opens the topology channel and declares the recorded topology
// again, then marks the consume side up so consumers subscribe again.
func (b *AMQP) setupSub(conn *amqp.Connection) error {
	b.topoMu.Lock()
	defer b.topoMu.Unlock()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening topology channel: %w", err)
	}
	b.topo = ch
	b.topoState.Store(ch)
	if err := b.restoreLocked(conn); err != nil {
		return err
	}
	b.sub.mu.Lock()
	b.sub.conn = conn
	close(b.sub.up)
	b.sub.mu.Unlock()
	return nil
}

// restoreLocked declares every recorded exchange, queue and binding on conn.
// A connection error, or an exclusive queue still held by our previous
// connection (405 RESOURCE_LOCKED, until RabbitMQ notices it is gone), fails
// the whole attempt so the supervisor retries; any other error is logged and
// that item skipped, so that one bad declaration cannot keep Hearth
// disconnected. topoMu held.
func (b *AMQP) restoreLocked(conn *amqp.Connection) error {
	skip := func(what string, err error) error {
		var ae *amqp.Error
		if conn.IsClosed() || !errors.As(err, &ae) || ae.Code == amqp.ResourceLocked {
			return fmt.Errorf("restoring %s: %w", what, err)
		}
		b.log.Error().Err(err).Msgf("broker: restoring %s failed; skipped", what)
		return b.reopenTopoLocked(conn)
	}
	for name := range b.exchanges {
		if err := b.topo.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			if err := skip(fmt.Sprintf("exchange %q", name), err); err != nil {
				return err
			}
		}
	}
	for _, spec := range b.queues {
		if _, err := b.topo.QueueDeclare(spec.Name, spec.Durable, false, spec.Exclusive, false, queueArgs(spec)); err != nil {
			if err := skip(fmt.Sprintf("queue %q", spec.Name), err); err != nil {
				return err
			}
		}
	}
	for bd := range b.bindings {
		if err := b.topo.QueueBind(bd.queue, bd.pattern, bd.exchange, false, nil); err != nil {
			if err := skip(fmt.Sprintf("binding %q→%q (%q)", bd.exchange, bd.queue, bd.pattern), err); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *AMQP) teardownSub(conn *amqp.Connection) {
	b.sub.mu.Lock()
	defer b.sub.mu.Unlock()
	if b.sub.conn == conn {
		b.sub.conn = nil
		b.sub.up = make(chan struct{})
	}
}

// subConn returns the consume connection, or nil while it is down.
func (b *AMQP) subConn() *amqp.Connection {
	b.sub.mu.Lock()
	defer b.sub.mu.Unlock()
	if b.sub.conn == nil || b.sub.conn.IsClosed() {
		return nil
	}
	return b.sub.conn
}

// topoChannelLocked returns the topology channel and its connection,
// reopening the channel if a channel exception closed it. topoMu held.
func (b *AMQP) topoChannelLocked(what string) (*amqp.Channel, *amqp.Connection, error) {
	if b.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	conn := b.subConn()
	if conn == nil {
		return nil, nil, fmt.Errorf("%s: %w", what, ErrUnavailable)
	}
	if b.topo == nil || b.topo.IsClosed() {
		if err := b.reopenTopoLocked(conn); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	return b.topo, conn, nil
}

// reopenTopoLocked replaces a closed topology channel. topoMu held.
func (b *AMQP) reopenTopoLocked(conn *amqp.Connection) error {
	if b.topo != nil && !b.topo.IsClosed() {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("reopening topology channel: %w (%v)", ErrUnavailable, err)
	}
	b.topo = ch
	b.topoState.Store(ch)
	return nil
}

// opErr maps an amqp091 error of an operation on conn to the package's
// errors, and reopens the topology channel if the error closed it.
func (b *AMQP) opErr(conn *amqp.Connection, what string, err error) error {
	if conn.IsClosed() || errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("%s: %w (%v)", what, ErrUnavailable, err)
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch ae.Code {
	case amqp.NotFound:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case amqp.PreconditionFailed:
		return fmt.Errorf("%s: %w: %w", what, ErrMismatch, err)
	case amqp.ResourceLocked:
		return fmt.Errorf("%s: %w: %w", what, ErrInUse, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// topoErr is opErr for calls on the topology channel; topoMu held.
func (b *AMQP) topoErr(conn *amqp.Connection, what string, err error) error {
	err = b.opErr(conn, what, err)
	if !conn.IsClosed() {
		if rerr := b.reopenTopoLocked(conn); rerr != nil {
			b.log.Warn().Err(rerr).Msg("broker: reopening the topology channel failed")
		}
	}
	return err
}

// queueArgs are the x-arguments of a normalized spec. A stream takes only
// its own: RabbitMQ refuses x-overflow and x-max-length for one.
func queueArgs(spec QueueSpec) amqp.Table {
	if spec.Stream {
		args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeStream}
		if spec.MaxLengthBytes > 0 {
			args[amqp.StreamMaxLenBytesArg] = int64(spec.MaxLengthBytes)
		}
		if spec.MaxAge > 0 {
			args[amqp.StreamMaxAgeArg] = strconv.FormatInt(int64(spec.MaxAge/time.Second), 10) + "s"
		}
		if spec.SegmentBytes > 0 {
			args[amqp.StreamMaxSegmentSizeBytesArg] = int64(spec.SegmentBytes)
		}
		return args
	}
	args := amqp.Table{"x-overflow": string(spec.Overflow)}
	if spec.MaxLength > 0 {
		args["x-max-length"] = int64(spec.MaxLength)
	}
	if spec.MaxLengthBytes > 0 {
		args["x-max-length-bytes"] = int64(spec.MaxLengthBytes)
	}
	if spec.Quorum {
		args["x-queue-type"] = amqp.QueueTypeQuorum
	}
	if spec.SingleActiveConsumer {
		args[amqp.SingleActiveConsumerArg] = true
	}
	return args
}

// DeclareExchange declares a durable topic exchange and records it, to
// declare it again after every reconnect. While disconnected it fails with
// ErrUnavailable and records nothing.
func (b *AMQP) DeclareExchange(ctx context.Context, name string) error {
	if err := checkExchangeName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.topoMu.Lock()
	defer b.topoMu.Unlock()
	what := fmt.Sprintf("declaring exchange %q", name)
	ch, conn, err := b.topoChannelLocked(what)
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return b.topoErr(conn, what, err)
	}
	b.exchanges[name] = struct{}{}
	b.pub.mu.Lock()
	if b.pub.known != nil {
		b.pub.known[name] = struct{}{}
	}
	b.pub.mu.Unlock()
	return nil
}

// DeclareQueue declares a queue (on the consume connection, which owns it
// when it is exclusive) and records it, to declare it again after every
// reconnect. Zero Overflow is sent as "drop-head", so declarations compare
// equal in RabbitMQ. A stream is declared durable with x-queue-type
// "stream" and only its retention arguments (x-max-length-bytes, x-max-age,
// x-stream-max-segment-size-bytes). While disconnected it fails with
// ErrUnavailable and records nothing.
func (b *AMQP) DeclareQueue(ctx context.Context, spec QueueSpec) error {
	spec, err := spec.normalize()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.topoMu.Lock()
	defer b.topoMu.Unlock()
	what := fmt.Sprintf("declaring queue %q", spec.Name)
	ch, conn, err := b.topoChannelLocked(what)
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(spec.Name, spec.Durable, false, spec.Exclusive, false, queueArgs(spec)); err != nil {
		return b.topoErr(conn, what, err)
	}
	b.queues[spec.Name] = spec
	return nil
}

// Bind binds queue to exchange and records the binding, to restore it after
// every reconnect. While disconnected it fails with ErrUnavailable and
// records nothing: the caller binds again later.
func (b *AMQP) Bind(ctx context.Context, queue, exchange, pattern string) error {
	if err := checkExchangeName(exchange); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.topoMu.Lock()
	defer b.topoMu.Unlock()
	what := fmt.Sprintf("binding queue %q to exchange %q with %q", queue, exchange, pattern)
	ch, conn, err := b.topoChannelLocked(what)
	if err != nil {
		return err
	}
	if err := ch.QueueBind(queue, pattern, exchange, false, nil); err != nil {
		return b.topoErr(conn, what, err)
	}
	b.bindings[amqpBinding{queue, exchange, pattern}] = struct{}{}
	return nil
}

// Unbind removes the binding from the record in every case, then from
// RabbitMQ. While disconnected it returns ErrUnavailable: the binding of an
// exclusive queue is gone anyway, but that of a durable queue survives in
// RabbitMQ until Unbind is called again. A missing queue or exchange counts
// as an absent binding.
func (b *AMQP) Unbind(ctx context.Context, queue, exchange, pattern string) error {
	if err := checkExchangeName(exchange); err != nil {
		return err
	}
	b.topoMu.Lock()
	defer b.topoMu.Unlock()
	delete(b.bindings, amqpBinding{queue, exchange, pattern})
	if err := ctx.Err(); err != nil {
		return err
	}
	what := fmt.Sprintf("unbinding queue %q from exchange %q with %q", queue, exchange, pattern)
	ch, conn, err := b.topoChannelLocked(what)
	if err != nil {
		return err
	}
	if err := ch.QueueUnbind(queue, pattern, exchange, nil); err != nil {
		err = b.topoErr(conn, what, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// State reports whether both connections and their channels are up, and
// whether RabbitMQ blocks publishing.
func (b *AMQP) State() State {
	var s State
	b.pub.mu.Lock()
	pubUp := b.pub.conn != nil && !b.pub.conn.IsClosed() && b.pub.ch != nil && !b.pub.ch.ch.IsClosed()
	s.Blocked = b.pub.blocked != ""
	b.pub.mu.Unlock()
	topo := b.topoState.Load()
	s.Connected = pubUp && b.subConn() != nil && topo != nil && !topo.IsClosed()
	return s
}

// Close stops the consumers (waiting for running handlers to return, so it
// must not be called from a Handler), closes both connections and waits for
// every goroutine the broker started. It is idempotent; later calls fail
// with ErrClosed.
func (b *AMQP) Close() error {
	b.closeOnce.Do(func() {
		b.goMu.Lock()
		b.closed = true
		b.goMu.Unlock()
		b.cancel()
		b.wg.Wait()
		b.log.Info().Msg("broker: closed")
	})
	return nil
}

// ---- consumers

// Consume subscribes on a channel of its own (prefetch is per channel). It
// fails at once with ErrUnavailable while disconnected, ErrNotFound for a
// missing queue and ErrInUse when exclusivity forbids it. Once started, the
// consumer subscribes again with the same handler after every reconnect,
// until ctx is done or Close is called; stopping closes its channel, so
// RabbitMQ requeues what it had not acknowledged (see ConsumeSpec).
//
// The consumer is a stream consumer when spec.StreamOffset is set or this
// broker declared the queue as a stream. Its AutoAck is refused here, and
// its Nacks are sent as acks: RabbitMQ answers both with a connection error
// (540 NOT_IMPLEMENTED) that would drop every consumer of the connection.
func (b *AMQP) Consume(ctx context.Context, spec ConsumeSpec, h Handler) error {
	spec, err := spec.normalize()
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("consuming %q: nil handler", spec.Queue)
	}
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stream := !spec.StreamOffset.IsZero()
	b.topoMu.Lock()
	declared, known := b.queues[spec.Queue]
	b.topoMu.Unlock()
	if known {
		if err := spec.checkStream(declared.Stream); err != nil {
			return err
		}
		stream = declared.Stream
	}
	c := &amqpConsumer{
		b:      b,
		ctx:    ctx,
		spec:   spec,
		h:      h,
		tag:    fmt.Sprintf("%s-%d", b.cfg.Name, b.consumers.Add(1)),
		stream: stream,
	}
	c.log = b.log.With().Str("queue", spec.Queue).Str("consumer", c.tag).Logger()
	conn := b.subConn()
	if conn == nil {
		return fmt.Errorf("consuming queue %q: %w", spec.Queue, ErrUnavailable)
	}
	s, err := c.subscribe(conn)
	if err != nil {
		return err
	}
	if !b.goOwned(func() { c.run(s) }) {
		_ = s.ch.Close()
		return ErrClosed
	}
	return nil
}

// amqpConsumer is one Consume call: it outlives reconnects. Its fields
// after log are used by its goroutine alone (and by Consume before it).
type amqpConsumer struct {
	b      *AMQP
	ctx    context.Context
	spec   ConsumeSpec
	h      Handler
	tag    string
	stream bool // a stream consumer
	log    zerolog.Logger

	delivered bool  // a stream delivery was handed to h
	last      int64 // the offset of the last one
}

// amqpSubscription is a consumer on one channel.
type amqpSubscription struct {
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	acker      *amqpAcker
}

// amqpAcker settles deliveries on the channel that received them. After that
// channel is gone it returns errors, never touching a newer channel.
//
// With a delay (ConsumeSpec.AckDelay) it holds acks back and sends them
// together. RabbitMQ's multiple ack with tag T settles every outstanding
// delivery of the channel up to T, and fails the channel (406 "unknown
// delivery tag") when T itself is not outstanding; delivery tags count the
// channel's deliveries from 1. So the acker keeps frontier, the highest tag
// up to which every delivery of the channel is settled here (acked, held
// or sent, or nacked), and sends the held acks at or below it as one
// multiple ack on the highest of them, which is still outstanding since
// its ack is held; held acks above it (acked out of order, past a delivery
// not settled yet) go one by one. This needs the channel to carry one
// consumer, as every subscription's does.
type amqpAcker struct {
	ch     ackChannel
	stream bool // nack is sent as ack

	delay time.Duration // 0: every ack is sent at once
	limit int           // held acks that make the acker send them at once

	mu       sync.Mutex
	frontier uint64              // every tag ≤ frontier is settled
	above    map[uint64]struct{} // settled tags > frontier+1
	held     []uint64            // acked tags not sent yet
	timer    *time.Timer         // sends held acks; nil while none are held
}

// ackChannel is what an amqpAcker needs of its channel (*amqp.Channel).
type ackChannel interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
	IsClosed() bool
}

// maxAbove bounds amqpAcker.above: settles past a delivery that stays
// unsettled are not recorded beyond it, which only makes the frontier stop
// there (held acks then go one by one), never pass a delivery too early.
const maxAbove = 1 << 14

func newAMQPAcker(ch ackChannel, stream bool, delay time.Duration, prefetch int) *amqpAcker {
	a := &amqpAcker{ch: ch, stream: stream}
	if delay > 0 && !stream {
		a.delay, a.limit = delay, max(1, prefetch/2)
		a.above = make(map[uint64]struct{})
	}
	return a
}

func (a *amqpAcker) ack(tag uint64) error {
	if a.delay == 0 {
		return ackErr(a.ch.Ack(tag, false))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ch.IsClosed() {
		return ackErr(amqp.ErrClosed)
	}
	a.settledLocked(tag)
	a.held = append(a.held, tag)
	if len(a.held) >= a.limit {
		return a.sendLocked()
	}
	if a.timer == nil {
		a.timer = time.AfterFunc(a.delay, func() { _ = a.flush() })
	}
	return nil
}

func (a *amqpAcker) nack(tag uint64, requeue bool) error {
	if a.stream {
		return ackErr(a.ch.Ack(tag, false))
	}
	if a.delay == 0 {
		return ackErr(a.ch.Nack(tag, false, requeue))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// The acks held so far go first (tag is not settled yet, so they stop
	// below it): what was processed is not delivered again if the channel
	// goes down after this nack.
	_ = a.sendLocked()
	err := ackErr(a.ch.Nack(tag, false, requeue))
	a.settledLocked(tag)
	return err
}

// flush sends the held acks now.
func (a *amqpAcker) flush() error {
	if a.delay == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sendLocked()
}

// settledLocked records that tag is settled and moves the frontier on.
func (a *amqpAcker) settledLocked(tag uint64) {
	switch {
	case tag == a.frontier+1:
		a.frontier = tag
		for {
			if _, ok := a.above[a.frontier+1]; !ok {
				break
			}
			delete(a.above, a.frontier+1)
			a.frontier++
		}
	case tag > a.frontier+1 && len(a.above) < maxAbove:
		a.above[tag] = struct{}{}
	}
}

// sendLocked sends the held acks: those at or below the frontier as one
// multiple ack on the highest of them, the others one by one.
func (a *amqpAcker) sendLocked() error {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.held) == 0 {
		return nil
	}
	var multi uint64
	var err error
	for _, t := range a.held {
		if t <= a.frontier {
			multi = max(multi, t)
		} else if e := a.ch.Ack(t, false); err == nil {
			err = e
		}
	}
	if multi > 0 {
		if e := a.ch.Ack(multi, true); err == nil {
			err = e
		}
	}
	a.held = a.held[:0]
	return ackErr(err)
}

func ackErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("settling delivery: channel closed, the message will be redelivered: %w", ErrUnavailable)
	}
	return fmt.Errorf("settling delivery: %w", err)
}

// headerStreamOffset is the header RabbitMQ adds to stream deliveries, and
// the consumer argument that chooses where a stream consumer starts.
const headerStreamOffset = "x-stream-offset"

// streamOffsetArg is o as the x-stream-offset consumer argument: a string
// for the named points, a long for an offset.
func streamOffsetArg(o StreamOffset) any {
	if o.kind == offsetAt {
		return o.n
	}
	return o.String()
}

func (c *amqpConsumer) subscribe(conn *amqp.Connection) (*amqpSubscription, error) {
	what := fmt.Sprintf("consuming queue %q", c.spec.Queue)
	var args amqp.Table
	if c.stream {
		off := c.spec.StreamOffset
		if c.delivered {
			off = OffsetAt(c.last + 1) // resume where the handler left off
		}
		if !off.IsZero() {
			args = amqp.Table{headerStreamOffset: streamOffsetArg(off)}
		}
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, c.b.opErr(conn, what, err)
	}
	if err := ch.Qos(c.spec.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, c.b.opErr(conn, what, err)
	}
	deliveries, err := ch.Consume(c.spec.Queue, c.tag, c.spec.AutoAck, c.spec.Exclusive, false, false, args)
	if err != nil {
		_ = ch.Close()
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.AccessRefused && !conn.IsClosed() {
			// RabbitMQ's answer to a consumer that exclusivity forbids.
			return nil, fmt.Errorf("%s: %w: %w", what, ErrInUse, err)
		}
		return nil, c.b.opErr(conn, what, err)
	}
	var delay time.Duration
	if !c.spec.AutoAck {
		delay = c.spec.AckDelay
	}
	return &amqpSubscription{ch: ch, deliveries: deliveries, acker: newAMQPAcker(ch, c.stream, delay, c.spec.Prefetch)}, nil
}

// run delivers until the consumer stops, subscribing again whenever its
// channel is lost or OnStart fails, then calls OnStop.
func (c *amqpConsumer) run(s *amqpSubscription) {
	// OnStop runs once the consumer's last channel is closed.
	defer c.spec.stopped(c.log)
	for failures := 0; ; {
		if c.stopping() {
			_ = s.ch.Close()
			return
		}
		if err := c.spec.start(); err != nil {
			_ = s.ch.Close() // RabbitMQ requeues what it sent meanwhile
			failures++
			delay := c.b.backoff(failures)
			c.log.Warn().Err(err).Int("attempt", failures).Dur("delay", delay).
				Msg("broker: consumer OnStart failed; subscribing again")
			if !c.sleep(delay) {
				return
			}
		} else {
			failures = 0
			stop := c.deliver(s)
			// The acks held back go before the channel closes, so that
			// RabbitMQ does not deliver again what was processed.
			_ = s.acker.flush()
			_ = s.ch.Close() // when not stopping: in case RabbitMQ cancelled the consumer (queue deleted)
			if stop {
				return
			}
		}
		if s = c.resubscribe(); s == nil {
			return
		}
	}
}

// deliver calls the handler for each delivery; it reports true when the
// consumer must stop and false when the subscription was lost. Once the
// consumer is stopping it starts no handler call: the delivery goes back to
// the queue when the channel closes.
func (c *amqpConsumer) deliver(s *amqpSubscription) bool {
	busy := false // a handler call happened since the last OnIdle
	defer func() {
		if busy {
			c.spec.OnIdle()
		}
	}()
	for {
		var d amqp.Delivery
		var ok bool
		if busy {
			select {
			case d, ok = <-s.deliveries:
			default:
				busy = false
				c.spec.OnIdle()
				continue
			}
		} else {
			select {
			case d, ok = <-s.deliveries:
			case <-c.ctx.Done():
				return true
			case <-c.b.ctx.Done():
				return true
			}
		}
		if !ok {
			return c.stopping()
		}
		if c.stopping() {
			return true
		}
		c.h(c.delivery(&d, s.acker))
		busy = c.spec.OnIdle != nil
	}
}

func (c *amqpConsumer) stopping() bool {
	return c.ctx.Err() != nil || c.b.ctx.Err() != nil
}

// sleep waits d; it reports false when the consumer must stop meanwhile.
func (c *amqpConsumer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	case <-c.b.ctx.Done():
		return false
	}
}

func (c *amqpConsumer) delivery(d *amqp.Delivery, a *amqpAcker) *Delivery {
	out := &Delivery{
		Message: Message{
			Key:        d.RoutingKey,
			Body:       d.Body,
			Persistent: d.DeliveryMode == amqp.Persistent,
			Type:       d.Type,
			Conn:       headerString(d.Headers, headerConn),
			Room:       headerString(d.Headers, headerRoom),
			Reply:      headerBytes(d.Headers, headerReply),
		},
		Exchange:    d.Exchange,
		Redelivered: d.Redelivered,
	}
	if c.stream {
		if off, ok := headerInt64(d.Headers, headerStreamOffset); ok {
			out.Offset = off
			c.delivered, c.last = true, off
		}
	}
	if !c.spec.AutoAck {
		out.ack = a
		out.tag = d.DeliveryTag
	}
	return out
}

// headerString reads a string header, also accepting the byte-array form
// other AMQP clients may send.
func headerString(h amqp.Table, key string) string {
	switch v := h[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// headerBytes reads a byte-array header, also accepting the string form
// other AMQP clients may send; nil when it is missing.
func headerBytes(h amqp.Table, key string) []byte {
	switch v := h[key].(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// headerInt64 reads an integer header. RabbitMQ sends x-stream-offset as a
// long, which amqp091 decodes as int64.
func headerInt64(h amqp.Table, key string) (int64, bool) {
	switch v := h[key].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int:
		return int64(v), true
	}
	return 0, false
}

// resubscribe waits for the consume connection and subscribes again,
// backing off between failures. It returns nil when the consumer must stop.
func (c *amqpConsumer) resubscribe() *amqpSubscription {
	for attempt := 1; ; attempt++ {
		c.b.sub.mu.Lock()
		up := c.b.sub.up
		c.b.sub.mu.Unlock()
		select {
		case <-up:
		case <-c.ctx.Done():
			return nil
		case <-c.b.ctx.Done():
			return nil
		}
		if conn := c.b.subConn(); conn != nil {
			s, err := c.subscribe(conn)
			if err == nil {
				c.log.Info().Msg("broker: consumer subscribed again")
				return s
			}
			c.log.Warn().Err(err).Int("attempt", attempt).Msg("broker: subscribing again failed")
		}
		if !c.sleep(c.b.backoff(attempt)) {
			return nil
		}
	}
}
