package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

func TestDecodeEnvelope(t *testing.T) {
	t.Parallel()
	l := protocol.Limits{MaxBody: 16}
	join := protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby"}
	leave := protocol.Frame{Type: protocol.TypeLeave, Room: "lobby"}
	pub := protocol.Frame{Type: protocol.TypePublish, ID: 2, Room: "lobby", CMID: "c-1", Body: []byte("hi")}
	client := func(mut func(*protocol.Envelope)) protocol.Envelope {
		e := protocol.Envelope{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1-1", User: "alice", TS: 1, Frame: join}
		if mut != nil {
			mut(&e)
		}
		return e
	}
	integrator := func(mut func(*protocol.Envelope)) protocol.Envelope {
		e := protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: pub}
		if mut != nil {
			mut(&e)
		}
		return e
	}
	tests := []struct {
		name  string
		env   protocol.Envelope
		valid bool
		// errText is a fragment of the error, for rejections.
		errText string
	}{
		{"client join", client(nil), true, ""},
		{"client leave", client(func(e *protocol.Envelope) { e.Frame = leave }), true, ""},
		{"client publish", client(func(e *protocol.Envelope) { e.Frame = pub }), true, ""},
		{"disconnect", client(func(e *protocol.Envelope) { e.Kind = protocol.KindDisconnect; e.Frame = leave }), true, ""},
		{"integrator", integrator(nil), true, ""},
		{"integrator without ts", integrator(func(e *protocol.Envelope) { e.TS = 0 }), true, ""},
		{"integrator with edge and conn", integrator(func(e *protocol.Envelope) { e.Edge, e.Conn = "x.y", "#" }), true, ""}, // ignored
		{"version 0", client(func(e *protocol.Envelope) { e.V = 0 }), false, "version 0"},
		{"version 2", client(func(e *protocol.Envelope) { e.V = 2 }), false, "version 2"},
		{"kind 0", client(func(e *protocol.Envelope) { e.Kind = 0 }), false, "kind 0"},
		{"kind 9", client(func(e *protocol.Envelope) { e.Kind = 9 }), false, "kind 9"},
		{"kind 255", integrator(func(e *protocol.Envelope) { e.Kind = 255 }), false, "kind 255"},
		{"empty user", client(func(e *protocol.Envelope) { e.User = "" }), false, "user"},
		{"bad user", client(func(e *protocol.Envelope) { e.User = "a.b" }), false, "user"},
		{"long user", integrator(func(e *protocol.Envelope) { e.User = strings.Repeat("u", 129) }), false, "user"},
		{"client empty edge", client(func(e *protocol.Envelope) { e.Edge = "" }), false, "edge"},
		{"client bad edge", client(func(e *protocol.Envelope) { e.Edge = "edge.1" }), false, "edge"},
		{"client empty conn", client(func(e *protocol.Envelope) { e.Conn = "" }), false, "conn"},
		{"client bad conn", client(func(e *protocol.Envelope) { e.Conn = "c*" }), false, "conn"},
		{"disconnect bad edge", client(func(e *protocol.Envelope) { e.Kind = protocol.KindDisconnect; e.Edge = "#" }), false, "edge"},
		{"disconnect empty conn", client(func(e *protocol.Envelope) { e.Kind = protocol.KindDisconnect; e.Conn = "" }), false, "conn"},
		{"integrator join", integrator(func(e *protocol.Envelope) { e.Frame = join }), false, "want publish"},
		{"integrator leave", integrator(func(e *protocol.Envelope) { e.Frame = leave }), false, "want publish"},
		{"integrator message frame", integrator(func(e *protocol.Envelope) { e.Frame.Type = protocol.TypeMessage }), false, "want publish"},
		{"integrator body over limit", integrator(func(e *protocol.Envelope) { e.Frame.Body = make([]byte, 17) }), false, "too_large"},
		{"client body over limit", client(func(e *protocol.Envelope) { e.Frame = pub; e.Frame.Body = make([]byte, 17) }), false, "too_large"},
		{"integrator no cmid", integrator(func(e *protocol.Envelope) { e.Frame.CMID = "" }), false, "missing_field"},
		{"integrator bad room", integrator(func(e *protocol.Envelope) { e.Frame.Room = "a.b" }), false, "invalid_room"},
		{"client unknown frame type", client(func(e *protocol.Envelope) { e.Frame.Type = protocol.TypeWelcome }), false, "unknown_type"},
		{"client no room", client(func(e *protocol.Envelope) { e.Frame.Room = "" }), false, "missing_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := protocol.EncodeEnvelope(&tt.env)
			if err != nil {
				t.Fatal(err)
			}
			got, err := protocol.DecodeEnvelope(b, l)
			if tt.valid {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !envelopesEqual(&got, &tt.env) {
					t.Fatalf("decoded %+v, want %+v", got, tt.env)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("error %q does not mention %q", err, tt.errText)
			}
		})
	}
}

func TestDecodeEnvelopeFrameError(t *testing.T) {
	t.Parallel()
	e := protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "*", CMID: "c"}}
	b, _ := protocol.EncodeEnvelope(&e)
	_, err := protocol.DecodeEnvelope(b, protocol.Limits{})
	var fe *protocol.FrameError
	if !errors.As(err, &fe) || fe.Code != protocol.CodeInvalidRoom {
		t.Fatalf("got %v, want a wrapped *FrameError with code 422", err)
	}
}

func TestDecodeEnvelopeMalformed(t *testing.T) {
	t.Parallel()
	good, _ := protocol.EncodeEnvelope(&protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "svc",
		Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c"}})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, protocol.ErrMalformed},
		{"array", []byte{0x92, 0x01, 0x03}, protocol.ErrMalformed},
		{"truncated", good[:len(good)-1], protocol.ErrMalformed},
		{"trailing", append(append([]byte{}, good...), 0xc0), protocol.ErrTrailing},
		{"frame not a map", []byte{0x83, 0xa1, 'v', 0x01, 0xa1, 'k', 0x03, 0xa1, 'f', 0xa1, 'x'}, protocol.ErrMalformed},
		{"version as string", []byte{0x81, 0xa1, 'v', 0xa1, '1'}, protocol.ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := protocol.DecodeEnvelope(tt.in, protocol.Limits{}); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestEnvelopeUserAlwaysEncoded(t *testing.T) {
	t.Parallel()
	// "user" has no omitempty: an envelope always carries the key.
	b, _ := protocol.EncodeEnvelope(&protocol.Envelope{V: 1, Kind: protocol.KindIntegrator})
	if !strings.Contains(string(b), "\xa4user\xa0") {
		t.Fatalf("%x lacks an empty user", b)
	}
}
