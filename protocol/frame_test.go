package protocol_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

func TestValidateClient(t *testing.T) {
	t.Parallel()
	const maxBody = 16
	l := protocol.Limits{MaxBody: maxBody}
	long := strings.Repeat("c", protocol.MaxIDLen)
	tests := []struct {
		name string
		f    protocol.Frame
		lim  protocol.Limits
		want protocol.ErrorCode // 0: valid
	}{
		{"join", protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby"}, l, 0},
		{"leave", protocol.Frame{Type: protocol.TypeLeave, ID: 1, Room: "lobby"}, l, 0},
		{"publish", protocol.Frame{Type: protocol.TypePublish, ID: 1, Room: "lobby", CMID: "c", Body: []byte("x")}, l, 0},
		{"publish empty body", protocol.Frame{Type: protocol.TypePublish, ID: 1, Room: "lobby", CMID: "c"}, l, 0},
		{"publish body at limit", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c", Body: make([]byte, maxBody)}, l, 0},
		{"publish body over limit", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c", Body: make([]byte, maxBody+1)}, l, protocol.CodeTooLarge},
		{"no limit", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c", Body: make([]byte, 1<<20)}, protocol.Limits{}, 0},
		{"cmid 128 bytes", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: long}, l, 0},
		{"cmid 129 bytes", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: long + "c"}, l, protocol.CodeBadFrame},
		{"cmid invalid UTF-8", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "a\xffb"}, l, protocol.CodeBadFrame},
		{"cmid any characters", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "a.b *#"}, l, 0},
		{"join without id", protocol.Frame{Type: protocol.TypeJoin, Room: "lobby"}, l, 0}, // replies carry id 0
		{"join ignores body limit", protocol.Frame{Type: protocol.TypeJoin, Room: "lobby", Body: make([]byte, maxBody+1)}, l, 0},
		{"join ignores long cmid", protocol.Frame{Type: protocol.TypeJoin, Room: "lobby", CMID: long + "c"}, l, 0},
		{"type 0", protocol.Frame{Room: "lobby"}, l, protocol.CodeUnknownType},
		{"type 7", protocol.Frame{Type: 7, Room: "lobby"}, l, protocol.CodeUnknownType},
		{"read without seq", protocol.Frame{Type: protocol.TypeRead, Room: "lobby"}, l, protocol.CodeMissingField},
		{"history limit too high", protocol.Frame{Type: protocol.TypeHistory, Room: "lobby", Limit: protocol.MaxHistoryLimit + 1}, l, protocol.CodeBadFrame},
		{"type 63", protocol.Frame{Type: 63, Room: "lobby"}, l, protocol.CodeUnknownType},
		{"welcome", protocol.Frame{Type: protocol.TypeWelcome}, l, protocol.CodeUnknownType},
		{"message", protocol.Frame{Type: protocol.TypeMessage, Room: "lobby", CMID: "c"}, l, protocol.CodeUnknownType},
		{"error", protocol.Frame{Type: protocol.TypeError}, l, protocol.CodeUnknownType},
		{"type 255", protocol.Frame{Type: 255}, l, protocol.CodeUnknownType},
		{"unknown type beats bad room", protocol.Frame{Type: 9, Room: "a.b"}, l, protocol.CodeUnknownType},
		{"join no room", protocol.Frame{Type: protocol.TypeJoin, ID: 1}, l, protocol.CodeMissingField},
		{"leave no room", protocol.Frame{Type: protocol.TypeLeave, ID: 1}, l, protocol.CodeMissingField},
		{"publish no room", protocol.Frame{Type: protocol.TypePublish, CMID: "c"}, l, protocol.CodeMissingField},
		{"publish no cmid", protocol.Frame{Type: protocol.TypePublish, Room: "lobby"}, l, protocol.CodeMissingField},
		{"bad room beats missing cmid", protocol.Frame{Type: protocol.TypePublish, Room: "a.b"}, l, protocol.CodeInvalidRoom},
		{"missing cmid beats big body", protocol.Frame{Type: protocol.TypePublish, Room: "lobby", Body: make([]byte, maxBody+1)}, l, protocol.CodeMissingField},
		{"room dot", protocol.Frame{Type: protocol.TypeJoin, Room: "a.b"}, l, protocol.CodeInvalidRoom},
		{"room star", protocol.Frame{Type: protocol.TypeLeave, Room: "*"}, l, protocol.CodeInvalidRoom},
		{"room hash", protocol.Frame{Type: protocol.TypePublish, Room: "#", CMID: "c"}, l, protocol.CodeInvalidRoom},
		{"room 129 bytes", protocol.Frame{Type: protocol.TypeJoin, Room: long + "r"}, l, protocol.CodeInvalidRoom},
		{"room NUL", protocol.Frame{Type: protocol.TypeJoin, Room: "\x00"}, l, protocol.CodeInvalidRoom},
		{"room space", protocol.Frame{Type: protocol.TypeJoin, Room: " "}, l, protocol.CodeInvalidRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fe := tt.f.ValidateClient(tt.lim)
			switch {
			case tt.want == 0 && fe != nil:
				t.Fatalf("refused: %v", fe)
			case tt.want != 0 && fe == nil:
				t.Fatalf("accepted, want %d (%s)", tt.want, tt.want)
			case tt.want != 0 && fe.Code != tt.want:
				t.Fatalf("code %d (%v), want %d (%s)", fe.Code, fe, tt.want, tt.want)
			case fe != nil && fe.Text == "":
				t.Fatal("error without text")
			}
		})
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	t.Parallel()
	join, _ := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby"})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, protocol.ErrMalformed},
		{"empty", []byte{}, protocol.ErrMalformed},
		{"array", []byte{0x91, 0x01}, protocol.ErrMalformed},
		{"truncated", join[:len(join)-1], protocol.ErrMalformed},
		{"header only", join[:1], protocol.ErrMalformed},
		{"map32 header only", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, protocol.ErrMalformed},
		{"trailing", append(append([]byte{}, join...), 0x00), protocol.ErrTrailing},
		{"two frames", append(append([]byte{}, join...), join...), protocol.ErrTrailing},
		{"bin32 length past the end", []byte{0x81, 0xa4, 'b', 'o', 'd', 'y', 0xc6, 0x7f, 0xff, 0xff, 0xff}, protocol.ErrMalformed},
		{"members too long", []byte{0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}, protocol.ErrMalformed},
		{"members not strings", []byte{0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0x91, 0x01}, protocol.ErrMalformed},
		{"never-used code", []byte{0x81, 0xa1, 't', 0xc1}, protocol.ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := protocol.DecodeFrame(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: DecodeFrame(%x) = %v, want %v", tt.name, tt.in, err, tt.want)
		}
	}
}

// TestDecodeFrameLenient pins down what the decoder tolerates, so that
// PROTOCOL.md's statements about it stay true.
func TestDecodeFrameLenient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hex  string
		want protocol.Frame
	}{
		{"nil value is absent", "82a174cc01a4726f6f6dc0", protocol.Frame{Type: protocol.TypeJoin}},
		{"duplicate key: last wins", "83a17401a4726f6f6da161a4726f6f6da162", protocol.Frame{Type: protocol.TypeJoin, Room: "b"}},
		{"room as bin", "82a17401a4726f6f6dc4026162", protocol.Frame{Type: protocol.TypeJoin, Room: "ab"}},
		{"int16 id", "82a17401a26964d10102", protocol.Frame{Type: protocol.TypeJoin, ID: 258}},
		{"uint64 seq", "82a17443a3736571cf0000000100000000", protocol.Frame{Type: protocol.TypeMessage, Seq: 1 << 32}},
		{"negative ts", "82a17443a27473ff", protocol.Frame{Type: protocol.TypeMessage, TS: -1}},
		{"ext value under unknown key", "82a17401a178d40102", protocol.Frame{Type: protocol.TypeJoin}},
		{"empty members", "82a17441a76d656d6265727390", protocol.Frame{Type: protocol.TypeJoined}},
	}
	for _, tt := range tests {
		b, err := hex.DecodeString(tt.hex)
		if err != nil {
			t.Fatal(err)
		}
		f, err := protocol.DecodeFrame(b)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !framesEqual(&f, &tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, f, tt.want)
		}
	}
}

// TestDecodeFrameCopies checks that a decoded frame does not alias its
// input: the edge reuses read buffers.
func TestDecodeFrameCopies(t *testing.T) {
	t.Parallel()
	in, _ := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c-1", Body: []byte("hello")})
	f, err := protocol.DecodeFrame(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0
	}
	if f.Room != "lobby" || f.CMID != "c-1" || string(f.Body) != "hello" {
		t.Fatalf("frame changed with its input: %+v", f)
	}
}

func TestEncodeFrameOmitsEmpty(t *testing.T) {
	t.Parallel()
	b, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeJoined, Room: "r", Members: []string{}, Body: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	// {t: 65, room: "r"}: fixmap of 2, t as uint8.
	if want := "82a174cc41a4726f6f6da172"; hex.EncodeToString(b) != want {
		t.Fatalf("got %x, want %s", b, want)
	}
}

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	f := &protocol.Frame{Type: protocol.TypeAck, ID: 3, Room: "lobby", CMID: "c-1", Seq: 42}
	want, _ := protocol.EncodeFrame(f)
	got, err := protocol.AppendFrame(nil, f)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame(nil) = %x, %v; want %x", got, err, want)
	}
	buf := make([]byte, 3, 64)
	copy(buf, "abc")
	got, err = protocol.AppendFrame(buf, f)
	if err != nil || string(got[:3]) != "abc" || !bytes.Equal(got[3:], want) {
		t.Fatalf("AppendFrame(abc) = %x, %v", got, err)
	}
}

// TestConcurrentUse runs the codec from many goroutines; with -race it
// checks the package's "safe for concurrent use" promise, pooled encoders
// and decoders included.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	frames := []protocol.Frame{
		{Type: protocol.TypeJoin, ID: 1, Room: "lobby"},
		{Type: protocol.TypePublish, ID: 2, Room: "general", CMID: "c", Body: bytes.Repeat([]byte{7}, 300)},
		{Type: protocol.TypeJoined, ID: 3, Room: "x", Seq: 9, Members: []string{"a", "b"}},
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				want := frames[(g+i)%len(frames)]
				b, err := protocol.AppendFrame(nil, &want)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := protocol.DecodeFrame(b)
				if err != nil || !framesEqual(&got, &want) {
					t.Errorf("round trip: %+v, %v", got, err)
					return
				}
				env := protocol.Envelope{V: 1, Kind: protocol.KindClient, Edge: "e", Conn: "c", User: "u", Frame: frames[0]}
				eb, _ := protocol.EncodeEnvelope(&env)
				if _, err := protocol.DecodeEnvelope(eb, protocol.Limits{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
