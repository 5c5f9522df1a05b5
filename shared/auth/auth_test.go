package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef-test")

func TestVerify(t *testing.T) {
	t.Parallel()
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := Mint(secret, "alice", time.Hour)
	other, _ := Mint([]byte("another-secret-of-16+"), "alice", time.Hour)
	expired, _ := Mint(secret, "alice", -time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice"}).SignedString(secret)
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "room.#", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"valid", good, nil},
		{"empty", "", ErrNoToken},
		{"other secret", other, ErrBadToken},
		{"expired", expired, ErrExpired},
		{"alg none", noneTok, ErrBadToken},
		{"no exp", noExp, ErrBadToken},
		{"subject not an identifier", badSub, ErrBadSubject},
		{"other algorithm", hs512, ErrBadToken},
		{"garbage", "a.b.c", ErrBadToken},
	}
	for _, tc := range cases {
		id, err := v.Verify(tc.token)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if tc.want == nil && id.User != "alice" {
			t.Fatalf("%s: user %q", tc.name, id.User)
		}
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	if _, err := NewVerifier([]byte("short")); !errors.Is(err, ErrShortSecret) {
		t.Fatalf("short secret: %v", err)
	}
	if _, err := NewVerifier(nil); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("no secret: %v", err)
	}
	if _, err := Mint(secret, "a.b", time.Hour); err == nil {
		t.Fatal("minted a token for an invalid user id")
	}
	f := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(f, []byte("  from-file-secret-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSecret("from-env", f)
	if err != nil || string(got) != "from-file-secret-123" {
		t.Fatalf("file should win, trimmed: %q %v", got, err)
	}
	if got, _ := LoadSecret("from-env", ""); string(got) != "from-env" {
		t.Fatalf("value: %q", got)
	}
	if _, err := LoadSecret("", ""); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("none: %v", err)
	}
	if _, err := LoadSecret("", filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "secret file") {
		t.Fatalf("missing file: %v", err)
	}
}
