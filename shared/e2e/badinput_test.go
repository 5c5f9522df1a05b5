package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/auth"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// TestHandshakeRefusals: every refusal is an HTTP status before any
// WebSocket exists.
func TestHandshakeRefusals(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1})
	otherSecret := []byte("not-the-edge-secret-at-all")
	badSig, err := auth.Mint(otherSecret, "mallory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.Mint(testSecret, "mallory", -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts dialOpts
		want int
	}{
		{"no token", dialOpts{}, http.StatusUnauthorized},
		{"bad signature", dialOpts{token: badSig}, http.StatusUnauthorized},
		{"expired token", dialOpts{token: expired}, http.StatusUnauthorized},
		{"garbage token", dialOpts{token: "a.b.c"}, http.StatusUnauthorized},
		{"foreign origin", dialOpts{token: token(t, "mallory"), origin: "https://evil.example"}, http.StatusForbidden},
		{"no subprotocol", dialOpts{token: token(t, "mallory"), noProto: true}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, status, err := dialRaw(t, c.edgeURL(0), tc.opts)
			if err == nil || status != tc.want {
				t.Fatalf("got status %d (err %v), want %d", status, err, tc.want)
			}
		})
	}
	if got := c.edges[0].Stats().Connections; got != 0 {
		t.Fatalf("%d connections exist after refused handshakes", got)
	}
	// The allowed development origin passes.
	dial(t, c.edgeURL(0), dialOpts{token: token(t, "alice"), origin: "http://localhost:3000"})
}

func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadFrames sends every kind of bad frame: each gets an error frame with
// its code, nothing reaches the broker, the connection stays usable, and a
// bystander in the same room is untouched. An oversize message closes 1009.
func TestBadFrames(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 1, hubs: 1})
		bad := dial(t, c.edgeURL(0), dialOpts{token: token(t, "mallory")})
		bystander := dial(t, c.edgeURL(0), dialOpts{token: token(t, "bystander")})
		bad.join("lobby")
		bystander.join("lobby")
		e := c.edges[0]
		// The counter moves after the broker's confirm, which can come after
		// the hub's reply: wait for the two joins to be counted.
		testenv.WaitFor(t, 5*time.Second, func() bool { return e.Stats().FramesForwarded == 2 }, "two joins forwarded")
		forwarded := e.Stats().FramesForwarded

		long := strings.Repeat("x", protocol.MaxIDLen+1)
		cases := []struct {
			name string
			raw  []byte
			want protocol.ErrorCode
		}{
			{"never-used byte", []byte{0xc1}, protocol.CodeBadFrame},
			{"truncated map", mp(t, map[string]any{"t": 1, "room": "lobby"})[:5], protocol.CodeBadFrame},
			{"not a map", mp(t, 5), protocol.CodeBadFrame},
			{"array", mp(t, []any{1, "lobby"}), protocol.CodeBadFrame},
			{"trailing bytes", append(mp(t, map[string]any{"t": 1, "id": 1, "room": "lobby"}), 0x01), protocol.CodeBadFrame},
			{"wrong field type", mp(t, map[string]any{"t": "join", "room": "lobby"}), protocol.CodeBadFrame},
			{"unknown type", mp(t, map[string]any{"t": 99, "id": 7, "room": "lobby"}), protocol.CodeUnknownType},
			{"server type from client", mp(t, map[string]any{"t": int(protocol.TypeMessage), "id": 7, "room": "lobby"}), protocol.CodeUnknownType},
			{"join without room", mp(t, map[string]any{"t": 1, "id": 8}), protocol.CodeMissingField},
			{"publish without cmid", mp(t, map[string]any{"t": 3, "id": 9, "room": "lobby", "body": []byte("x")}), protocol.CodeMissingField},
			{"room a.b", mp(t, map[string]any{"t": 1, "id": 10, "room": "a.b"}), protocol.CodeInvalidRoom},
			{"room *", mp(t, map[string]any{"t": 1, "id": 11, "room": "*"}), protocol.CodeInvalidRoom},
			{"room #", mp(t, map[string]any{"t": 1, "id": 12, "room": "#"}), protocol.CodeInvalidRoom},
			{"empty room", mp(t, map[string]any{"t": 1, "id": 13, "room": ""}), protocol.CodeMissingField},
			{"over-long room", mp(t, map[string]any{"t": 1, "id": 14, "room": long}), protocol.CodeInvalidRoom},
			{"room with NUL", mp(t, map[string]any{"t": 1, "id": 15, "room": "a\x00b"}), protocol.CodeInvalidRoom},
			{"publish to a room not joined", mp(t, map[string]any{"t": 3, "id": 16, "room": "elsewhere", "cmid": "m", "body": []byte("x")}), protocol.CodeNotMember},
		}
		for _, tc := range cases {
			bad.sendRaw(tc.raw)
			f := bad.next(protocol.TypeError)
			if f.Code != tc.want {
				t.Fatalf("%s: error code %d (%s), want %d", tc.name, f.Code, f.Text, tc.want)
			}
			if f.Text == "" {
				t.Fatalf("%s: error frame without text", tc.name)
			}
		}
		// A text frame is refused the same way.
		if err := bad.ws.WriteMessage(gws.OpcodeText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if f := bad.next(protocol.TypeError); f.Code != protocol.CodeBadFrame {
			t.Fatalf("text frame: code %d", f.Code)
		}
		// A refused join by the hub's policy comes back as forbidden.
		id := bad.send(protocol.Frame{Type: protocol.TypeJoin, Room: "forbidden-vault"})
		if f := bad.next(protocol.TypeError); f.Code != protocol.CodeForbidden || f.ID != id {
			t.Fatalf("forbidden join answered %+v", f)
		}
		testenv.WaitFor(t, 5*time.Second, func() bool { return e.Stats().FramesForwarded > forwarded }, "forbidden join forwarded")
		if got := e.Stats().FramesForwarded - forwarded; got != 1 {
			t.Fatalf("%d frames reached the broker, want only the forbidden join", got)
		}

		// The connection still works, and the bystander saw nothing bad.
		bad.send(protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "ok-1", Body: []byte("still here")})
		collect(t, bad, "lobby", 1, 1)
		if m := collect(t, bystander, "lobby", 1, 0).messages[0]; !bytes.Equal(m.Body, []byte("still here")) || m.From != "mallory" {
			t.Fatalf("bystander got %+v", m)
		}

		// Oversize: close 1009, and only for the sender.
		bad.sendRaw(make([]byte, 70<<10))
		if code := bad.waitClosed(); code != protocol.CloseTooBig {
			t.Fatalf("oversize message closed with %d, want %d", code, protocol.CloseTooBig)
		}
		other := dial(t, c.edgeURL(0), dialOpts{token: token(t, "carol")})
		other.join("lobby")
		other.send(protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "after", Body: []byte("after")})
		collect(t, bystander, "lobby", 1, 0)
		if bystander.isClosed() {
			t.Fatal("bystander was disconnected")
		}
		if n := c.hubs[0].Stats().BadEnvelopes; n != 0 {
			t.Fatalf("hub dropped %d bad envelopes: the edge let bad input through", n)
		}
	})
}
