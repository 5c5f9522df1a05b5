package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// The edge reads client frames itself (ADR 0003). These tests speak the
// WebSocket wire byte by byte over a plain TCP socket, in both of the
// edge's read modes: one epoll set, or a goroutine per connection.

// rawWS is a hand-driven client connection.
type rawWS struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// handshake is an opening handshake for user, with extra bytes (early
// frames) appended.
func handshake(t *testing.T, user string, extra ...[]byte) []byte {
	req := "GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + protocol.Subprotocol + "\r\nAuthorization: Bearer " + token(t, user) + "\r\n\r\n"
	return append([]byte(req), bytes.Join(extra, nil)...)
}

// dialWire connects to the edge and sends request; it returns the client
// and the response's status line and headers.
func dialWire(t *testing.T, c *cluster, request []byte) (*rawWS, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", c.edges[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(request); err != nil {
		t.Fatal(err)
	}
	w := &rawWS{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, resp
}

// masked builds a masked client frame; fin false leaves a fragment open.
func masked(fin bool, op byte, payload []byte) []byte {
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	default:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	key := []byte{9, 8, 7, 6}
	b = append(b, key...)
	for i, x := range payload {
		b = append(b, x^key[i%4])
	}
	return b
}

// read returns the next server frame's opcode and payload.
func (w *rawWS) read() (byte, []byte) {
	w.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		w.t.Fatalf("reading a frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		w.t.Fatal("server frame is masked")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(w.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(w.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		w.t.Fatalf("reading a payload: %v", err)
	}
	return h[0] & 0x0F, p
}

// frame skips pings and returns the next binary frame, decoded.
func (w *rawWS) frame() protocol.Frame {
	w.t.Helper()
	for {
		op, p := w.read()
		if op == 0x9 {
			continue
		}
		if op != 0x2 {
			w.t.Fatalf("got opcode %#x, want a binary frame", op)
		}
		f, err := protocol.DecodeFrame(p)
		if err != nil {
			w.t.Fatal(err)
		}
		return f
	}
}

// closed reads until the close frame and then expects end of stream; it
// returns the close code.
func (w *rawWS) closed() uint16 {
	w.t.Helper()
	for {
		op, p := w.read()
		if op != 0x8 {
			continue
		}
		if len(p) < 2 {
			w.t.Fatalf("close frame without a code: %x", p)
		}
		if _, err := w.br.ReadByte(); err != io.EOF {
			w.t.Fatalf("after the close frame: %v, want end of stream", err)
		}
		return binary.BigEndian.Uint16(p)
	}
}

func forEachReadMode(t *testing.T, adjust func(*edge.Config), f func(t *testing.T, c *cluster)) {
	for _, goroutines := range []bool{false, true} {
		name := "epoll"
		if goroutines {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1, edgeCfg: func(cfg *edge.Config) {
				cfg.ReadGoroutines = goroutines
				if adjust != nil {
					adjust(cfg)
				}
			}})
			f(t, c)
			if wakeups := c.edges[0].Stats().ReadWakeups; (wakeups > 0) == goroutines {
				t.Fatalf("%d read wake-ups with ReadGoroutines %v", wakeups, goroutines)
			}
		})
	}
}

func noConnections(t *testing.T, c *cluster) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() bool { return c.edges[0].Stats().Connections == 0 }, "the edge to forget the connection")
}

// TestWireHandshake: the edge checks the opening handshake itself and
// refuses a bad one with an HTTP status.
func TestWireHandshake(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1})
	good := string(handshake(t, "alice"))
	cases := []struct {
		name, from, to string
		status         int
	}{
		{"accepted", "", "", http.StatusSwitchingProtocols},
		{"old version", "Version: 13", "Version: 8", http.StatusUpgradeRequired},
		{"no key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", http.StatusBadRequest},
		{"short key", "dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", http.StatusBadRequest},
		{"not an upgrade", "Upgrade: websocket", "Upgrade: h2c", http.StatusBadRequest},
		{"no connection upgrade", "Connection: keep-alive, Upgrade", "Connection: keep-alive", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			if tc.from != "" {
				req = strings.Replace(good, tc.from, tc.to, 1)
			}
			w, resp := dialWire(t, c, []byte(req))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			switch tc.status {
			case http.StatusSwitchingProtocols:
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Fatalf("Sec-WebSocket-Accept %q", got)
				}
				if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != protocol.Subprotocol {
					t.Fatalf("Sec-WebSocket-Protocol %q", got)
				}
				if f := w.frame(); f.Type != protocol.TypeWelcome {
					t.Fatalf("first frame %v, want welcome", f.Type)
				}
			case http.StatusUpgradeRequired:
				if resp.Header.Get("Sec-WebSocket-Version") != "13" {
					t.Fatal("426 without Sec-WebSocket-Version: 13")
				}
			}
		})
	}
}

// TestWireFrames: pings, fragments, early frames and closes, in both read
// modes.
func TestWireFrames(t *testing.T) {
	forEachReadMode(t, nil, func(t *testing.T, c *cluster) {
		join := func(id uint32, room string) []byte {
			b, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeJoin, ID: id, Room: room})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}

		t.Run("early frames, fragments and pings", func(t *testing.T) {
			// A ping sent with the handshake request, before the 101.
			w, resp := dialWire(t, c, handshake(t, "alice", masked(true, 0x9, []byte("early"))))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if f := w.frame(); f.Type != protocol.TypeWelcome {
				t.Fatalf("first frame %v, want welcome", f.Type)
			}
			if op, p := w.read(); op != 0xA || string(p) != "early" {
				t.Fatalf("got %#x %q, want pong \"early\"", op, p)
			}
			// A join in three fragments with a ping between them, written a
			// byte at a time.
			j := join(7, "lobby")
			msg := bytes.Join([][]byte{
				masked(false, 0x2, j[:2]), masked(true, 0x9, []byte("mid")),
				masked(false, 0x0, j[2:4]), masked(true, 0x0, j[4:]),
			}, nil)
			for i := range msg {
				if _, err := w.nc.Write(msg[i : i+1]); err != nil {
					t.Fatal(err)
				}
			}
			if op, p := w.read(); op != 0xA || string(p) != "mid" {
				t.Fatalf("got %#x %q, want pong \"mid\"", op, p)
			}
			for {
				f := w.frame()
				if f.Type == protocol.TypeJoined && f.ID == 7 {
					break
				}
			}
			// The client closes: the edge answers with the same code and
			// forgets the connection.
			_, _ = w.nc.Write(masked(true, 0x8, []byte{0x03, 0xE8, 'b', 'y', 'e'}))
			if code := w.closed(); code != protocol.CloseNormal {
				t.Fatalf("close code %d, want 1000", code)
			}
			noConnections(t, c)
		})

		t.Run("protocol errors", func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				frame []byte
				code  uint16
			}{
				{"unmasked", []byte{0x82, 0x01, 0x00}, protocol.CloseProtocolError},
				{"invalid UTF-8 text", masked(true, 0x1, []byte{0xff}), protocol.CloseInvalidData},
				{"lone continuation", masked(true, 0x0, []byte("x")), protocol.CloseProtocolError},
				{"bad close code", masked(true, 0x8, []byte{0x03, 0xED}), protocol.CloseProtocolError},
			} {
				w, _ := dialWire(t, c, handshake(t, "mallory"))
				w.frame() // welcome
				_, _ = w.nc.Write(tc.frame)
				if code := w.closed(); code != tc.code {
					t.Fatalf("%s: close code %d, want %d", tc.name, code, tc.code)
				}
			}
			noConnections(t, c)
		})

		t.Run("client vanishes", func(t *testing.T) {
			w, _ := dialWire(t, c, handshake(t, "bob"))
			w.frame()
			_, _ = w.nc.Write(masked(true, 0x2, join(1, "lobby")))
			_ = w.nc.Close()
			noConnections(t, c)
		})
	})
}

// TestWireHeartbeatClose: a client that never answers pings is closed by
// the edge with 4002, in both read modes, and forgotten.
func TestWireHeartbeatClose(t *testing.T) {
	forEachReadMode(t, func(cfg *edge.Config) {
		cfg.Heartbeat = 100 * time.Millisecond
		cfg.HeartbeatTimeout = 100 * time.Millisecond
	}, func(t *testing.T, c *cluster) {
		w, _ := dialWire(t, c, handshake(t, "sleepy"))
		w.frame()
		if code := w.closed(); code != protocol.CloseHeartbeat {
			t.Fatalf("close code %d, want %d", code, protocol.CloseHeartbeat)
		}
		noConnections(t, c)
	})
}
