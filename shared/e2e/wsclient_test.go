package e2e

import (
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

// wsClient is a deliberately raw test client: it sends whatever bytes a test
// asks for and records every frame and the close code, so tests can check
// the edge's answers to bad input exactly.
type wsClient struct {
	t      testing.TB
	ws     *gws.Conn
	frames chan protocol.Frame

	mu        sync.Mutex
	closeCode uint16
	closed    chan struct{}
	welcome   protocol.Frame
	nextID    uint32
}

type wsHandler struct {
	gws.BuiltinEventHandler
	c *wsClient
	// mute makes the client ignore pings, like a ghost connection.
	mute bool
}

func (h *wsHandler) OnPing(ws *gws.Conn, payload []byte) {
	if !h.mute {
		_ = ws.WritePong(payload)
	}
}

func (h *wsHandler) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	f, err := protocol.DecodeFrame(m.Bytes())
	if err != nil {
		h.c.t.Errorf("server sent an undecodable frame: %v", err)
		return
	}
	select {
	case h.c.frames <- f:
	default:
		h.c.t.Errorf("test client buffer full; frame %+v lost", f)
	}
}

func (h *wsHandler) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	h.c.mu.Lock()
	if errors.As(err, &ce) {
		h.c.closeCode = ce.Code
	}
	h.c.mu.Unlock()
	close(h.c.closed)
}

// dialOpts are the handshake details a test may vary.
type dialOpts struct {
	token   string
	origin  string
	noProto bool
	tls     *tls.Config
	// mute: never answer pings. noRead: never read after the handshake.
	mute, noRead bool
}

// dialRaw performs the handshake and returns the HTTP status on failure.
func dialRaw(t testing.TB, url string, o dialOpts) (*wsClient, int, error) {
	t.Helper()
	h := http.Header{}
	if o.token != "" {
		h.Set("Authorization", "Bearer "+o.token)
	}
	if o.origin != "" {
		h.Set("Origin", o.origin)
	}
	if !o.noProto {
		h.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	}
	c := &wsClient{t: t, frames: make(chan protocol.Frame, 4096), closed: make(chan struct{})}
	ws, resp, err := gws.NewClient(&wsHandler{c: c, mute: o.mute}, &gws.ClientOption{
		Addr:             url,
		RequestHeader:    h,
		TlsConfig:        o.tls,
		HandshakeTimeout: 5 * time.Second,
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, status, err
	}
	c.ws = ws
	t.Cleanup(func() { _ = ws.WriteClose(1000, nil); _ = ws.NetConn().Close() })
	if o.noRead {
		return c, 101, nil
	}
	go ws.ReadLoop()
	c.welcome = c.next(protocol.TypeWelcome)
	return c, 101, nil
}

// dial connects or fails the test.
func dial(t testing.TB, url string, o dialOpts) *wsClient {
	t.Helper()
	c, status, err := dialRaw(t, url, o)
	if err != nil {
		t.Fatalf("dial %s: status %d: %v", url, status, err)
	}
	return c
}

// sendRaw writes one binary message.
func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(gws.OpcodeBinary, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send encodes and writes f, giving it a request id; it returns the id.
func (c *wsClient) send(f protocol.Frame) uint32 {
	c.t.Helper()
	c.mu.Lock()
	c.nextID++
	if f.ID == 0 {
		f.ID = c.nextID
	}
	c.mu.Unlock()
	b, err := protocol.EncodeFrame(&f)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
	return f.ID
}

// next returns the next frame of type typ, failing after a deadline. Frames
// of other types before it are failures unless they are broadcasts
// (messages, presence, typing, receipts), which a test may skip this way.
func (c *wsClient) next(typ protocol.FrameType) protocol.Frame {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.frames:
			if f.Type == typ {
				return f
			}
			switch f.Type {
			case protocol.TypePresence, protocol.TypeMessage, protocol.TypeTypingEvent, protocol.TypeReceipt:
			default:
				c.t.Fatalf("waiting for frame type %d, got %+v", typ, f)
			}
		case <-c.closed:
			c.t.Fatalf("connection closed (code %d) while waiting for frame type %d", c.code(), typ)
		case <-deadline:
			c.t.Fatalf("no frame of type %d within 10s", typ)
		}
	}
}

// join joins room and returns the joined frame.
func (c *wsClient) join(room string) protocol.Frame {
	c.t.Helper()
	id := c.send(protocol.Frame{Type: protocol.TypeJoin, Room: room})
	f := c.next(protocol.TypeJoined)
	if f.ID != id || f.Room != room {
		c.t.Fatalf("joined %+v does not answer join %d of %s", f, id, room)
	}
	return f
}

func (c *wsClient) code() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// waitClosed waits for the server to close the connection and returns the code.
func (c *wsClient) waitClosed() uint16 {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.code()
	case <-time.After(10 * time.Second):
		c.t.Fatal("connection not closed within 10s")
		return 0
	}
}

func (c *wsClient) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}
