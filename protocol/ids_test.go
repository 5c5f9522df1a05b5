package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

func TestValidateID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		want error // nil, or the sentinel the error wraps
	}{
		{"one letter", "a", nil},
		{"one digit", "7", nil},
		{"lower", "abcdefghijklmnopqrstuvwxyz", nil},
		{"upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", nil},
		{"digits", "0123456789", nil},
		{"punctuation", "_-:@+=", nil},
		{"mixed", "Team_9-a:b@c+d=e", nil},
		{"email-like", "alice@example-com", nil},
		{"base64url-ish", "dGVzdA==", nil},
		{"127 bytes", strings.Repeat("x", 127), nil},
		{"128 bytes", strings.Repeat("x", protocol.MaxIDLen), nil},
		{"empty", "", protocol.ErrEmptyID},
		{"129 bytes", strings.Repeat("x", protocol.MaxIDLen+1), protocol.ErrLongID},
		{"129 forbidden bytes", strings.Repeat(".", protocol.MaxIDLen+1), protocol.ErrLongID},
		{"1000 bytes", strings.Repeat("x", 1000), protocol.ErrLongID},
		{"dot", "a.b", protocol.ErrInvalidID},
		{"star", "*", protocol.ErrInvalidID},
		{"hash", "#", protocol.ErrInvalidID},
		{"topic pattern", "room.#", protocol.ErrInvalidID},
		{"space", "a b", protocol.ErrInvalidID},
		{"tab", "a\tb", protocol.ErrInvalidID},
		{"newline", "a\n", protocol.ErrInvalidID},
		{"NUL", "a\x00", protocol.ErrInvalidID},
		{"DEL", "a\x7f", protocol.ErrInvalidID},
		{"slash", "a/b", protocol.ErrInvalidID},
		{"backslash", `a\b`, protocol.ErrInvalidID},
		{"quote", `a"b`, protocol.ErrInvalidID},
		{"percent", "a%2Eb", protocol.ErrInvalidID},
		{"comma", "a,b", protocol.ErrInvalidID},
		{"question", "a?b", protocol.ErrInvalidID},
		{"tilde", "a~b", protocol.ErrInvalidID},
		{"UTF-8 letter", "caf\u00e9", protocol.ErrInvalidID},
		{"UTF-8 fullwidth dot", "a\uff0eb", protocol.ErrInvalidID},
		{"invalid UTF-8", "a\xff", protocol.ErrInvalidID},
		{"128 bytes ending in a dot", strings.Repeat("x", 127) + ".", protocol.ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := protocol.ValidateID(tt.id)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ValidateID(%q) = %v, want %v", tt.id, err, tt.want)
			}
		})
	}
}

// TestValidateIDEveryByte checks the allowlist byte by byte: exactly
// [A-Za-z0-9_:@+=-] pass, alone and inside an identifier.
func TestValidateIDEveryByte(t *testing.T) {
	t.Parallel()
	allowed := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-:@+=", c) >= 0
	}
	n := 0
	for i := 0; i < 256; i++ {
		c := byte(i)
		for _, id := range []string{string([]byte{c}), "a" + string([]byte{c}) + "b"} {
			err := protocol.ValidateID(id)
			if allowed(c) {
				if err != nil {
					t.Errorf("byte %#02x refused: %v", c, err)
				}
			} else if !errors.Is(err, protocol.ErrInvalidID) {
				t.Errorf("byte %#02x in %q: got %v, want ErrInvalidID", c, id, err)
			}
		}
		if allowed(c) {
			n++
		}
	}
	if n != 26+26+10+6 {
		t.Fatalf("%d allowed bytes, want 68", n)
	}
}

// TestValidateIDErrorNamesByte checks that the error says which byte is wrong.
func TestValidateIDErrorNamesByte(t *testing.T) {
	t.Parallel()
	err := protocol.ValidateID("ab.c")
	if err == nil || !strings.Contains(err.Error(), `'.' at byte 2`) {
		t.Fatalf("got %v, want the byte and its offset", err)
	}
}

func TestValidateIDAllocs(t *testing.T) {
	id := strings.Repeat("room-1", 20)
	if n := testing.AllocsPerRun(100, func() { _ = protocol.ValidateID(id) }); n != 0 {
		t.Fatalf("ValidateID of a valid id allocates %v times", n)
	}
}
