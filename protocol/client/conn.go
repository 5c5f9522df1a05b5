package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
)

// closeGrace bounds the write of the close frame when the client closes.
const closeGrace = time.Second

// session is one WebSocket connection and the gws handler of its events.
// gws calls the handler methods from the session's reader goroutine, one at
// a time; OnClose is the last call and closes done.
type session struct {
	c           *Client
	conn        *gws.Conn // set before the reader starts, then constant
	connectedAt time.Time // set by connect once welcomed

	// log is written by the reader once, before welcomed is closed.
	log zerolog.Logger

	wmu sync.Mutex // serialises write deadline + write

	lastRecv atomic.Int64 // Unix nanoseconds of the last frame, ping or pong
	cause    atomic.Pointer[error]

	// batch is the reader's scratch space for delivery decisions.
	batch batch

	// Reader goroutine only until welcomed is closed; read-only after.
	welcomeSeen bool
	welcome     Welcome
	welcomed    chan struct{}

	// Written by OnClose before done is closed; read-only after.
	code   uint16
	reason string
	err    error
	done   chan struct{}
}

var _ gws.Event = (*session)(nil)

// connect dials the edge, upgrades and waits for the welcome frame. It
// returns the token it sent, so that the caller can tell whether a 401 came
// with a token already refused. On success the session's reader runs,
// owned by c.wg.
func (c *Client) connect(ctx context.Context) (*session, string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout,
		fmt.Errorf("client: connecting to %s: %w", c.safeURL, context.DeadlineExceeded))
	defer cancel()

	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		var err error
		if token, err = c.cfg.TokenFunc(ctx); err != nil {
			return nil, "", fmt.Errorf("client: token: %w", err)
		}
	}
	hdr := http.Header{}
	hdr.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	if c.cfg.Origin != "" {
		hdr.Set("Origin", c.cfg.Origin)
	}

	nc, err := c.dialNet(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, token, context.Cause(ctx)
		}
		return nil, token, fmt.Errorf("client: dialing %s: %w", c.safeURL, err)
	}
	deadline, _ := ctx.Deadline()
	s := &session{
		c:        c,
		log:      c.log,
		welcomed: make(chan struct{}),
		done:     make(chan struct{}),
	}
	// gws's handshake takes no context: make cancellation fail its I/O.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	conn, resp, err := gws.NewClientFromConn(s, &gws.ClientOption{
		Addr:             c.cfg.URL,
		RequestHeader:    hdr,
		HandshakeTimeout: time.Until(deadline),
	}, nc)
	if !stop() {
		if err == nil {
			_ = nc.Close()
		}
		return nil, token, context.Cause(ctx)
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, token, &HandshakeError{URL: c.safeURL, StatusCode: resp.StatusCode, Status: resp.Status}
		}
		return nil, token, fmt.Errorf("client: handshake with %s: %w", c.safeURL, err)
	}
	s.conn = conn
	s.touch()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		conn.ReadLoop()
	}()

	select {
	case <-s.welcomed:
		s.connectedAt = time.Now()
		return s, token, nil
	case <-s.done:
		if s.err == nil {
			return nil, token, ErrNoWelcome
		}
		return nil, token, fmt.Errorf("%w: %w", ErrNoWelcome, s.err)
	case <-ctx.Done():
		s.kill(context.Cause(ctx))
		<-s.done
		return nil, token, context.Cause(ctx)
	}
}

// dialNet opens the TCP connection, with TLS for wss://.
func (c *Client) dialNet(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{}
	if c.tls == nil {
		return d.DialContext(ctx, "tcp", c.addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: c.tls}
	return td.DialContext(ctx, "tcp", c.addr)
}

// touch records that something arrived from the edge.
func (s *session) touch() { s.lastRecv.Store(time.Now().UnixNano()) }

func (s *session) idle() time.Duration {
	return time.Since(time.Unix(0, s.lastRecv.Load()))
}

// write sends one message with a write deadline of RequestTimeout.
func (s *session) write(op gws.Opcode, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.RequestTimeout)); err != nil {
		return err
	}
	return s.conn.WriteMessage(op, b)
}

// sendFrame encodes f and writes it; a failure is ErrDisconnected.
func (s *session) sendFrame(f *protocol.Frame) error {
	b, err := protocol.EncodeFrame(f)
	if err != nil {
		return err
	}
	if err := s.write(gws.OpcodeBinary, b); err != nil {
		return fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	return nil
}

// kill drops the connection without a close frame, recording cause as the
// reason. The reader then ends and OnClose runs.
func (s *session) kill(cause error) {
	s.cause.CompareAndSwap(nil, &cause)
	_ = s.conn.NetConn().Close()
}

// closeNormal sends a 1000 close frame and closes the connection.
func (s *session) closeNormal() {
	cause := ErrClosed
	s.cause.CompareAndSwap(nil, &cause)
	// Bound a write that may be stuck behind a blocked writer.
	_ = s.conn.NetConn().SetWriteDeadline(time.Now().Add(closeGrace))
	if err := s.conn.WriteClose(protocol.CloseNormal, nil); err != nil {
		_ = s.conn.NetConn().Close()
	}
}

// OnOpen implements gws.Event.
func (s *session) OnOpen(*gws.Conn) {}

// OnPing answers the edge's heartbeat.
func (s *session) OnPing(_ *gws.Conn, payload []byte) {
	s.touch()
	if err := s.write(gws.OpcodePong, payload); err != nil {
		s.log.Debug().Err(err).Msg("writing pong")
	}
}

// OnPong implements gws.Event.
func (s *session) OnPong(*gws.Conn, []byte) { s.touch() }

// OnMessage decodes one frame and routes it: replies to their request,
// room messages through the room's delivery state, notices to Messages.
func (s *session) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	s.touch()
	if m.Opcode != gws.OpcodeBinary {
		s.log.Warn().Uint8("opcode", uint8(m.Opcode)).Msg("ignoring non-binary message")
		return
	}
	f, err := protocol.DecodeFrame(m.Bytes()) // copies the body out of m
	if err != nil {
		s.log.Warn().Err(err).Msg("ignoring undecodable frame")
		return
	}
	switch f.Type {
	case protocol.TypeMessage:
		s.c.onMessage(s, f)
	case protocol.TypePresence, protocol.TypeTypingEvent, protocol.TypeReceipt:
		s.c.onNotice(s, f)
	case protocol.TypeJoined, protocol.TypeLeft, protocol.TypeAck, protocol.TypeError, protocol.TypeHistoryReply:
		s.c.reply(s, f)
	case protocol.TypeWelcome:
		if !s.welcomeSeen {
			s.welcomeSeen = true
			s.welcome = Welcome{Conn: f.Conn, User: f.User, Heartbeat: time.Duration(f.HB) * time.Millisecond}
			s.log = s.c.log.With().Str("conn_id", f.Conn).Logger()
			close(s.welcomed)
		}
	default:
		s.log.Debug().Uint8("type", uint8(f.Type)).Msg("ignoring frame of unknown type")
	}
}

// OnClose records why the connection ended, fails its pending requests and
// closes done.
func (s *session) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		s.code, s.reason = ce.Code, string(ce.Reason)
		s.err = &CloseError{Code: ce.Code, Reason: s.reason}
	} else {
		s.err = err
	}
	if p := s.cause.Load(); p != nil {
		s.err = *p
		if s.code == 0 && errors.Is(s.err, ErrClosed) {
			s.code = protocol.CloseNormal
		}
	}
	s.c.detach(s)
	close(s.done)
}
