package tlstier

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
)

func TestZapBridgeWritesToZerolog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	zl := newZapLogger(zerolog.New(&buf).Level(zerolog.InfoLevel).With().Str("component", "tls").Logger())

	zl.Debug("dropped: below the zerolog level")
	zl.Named("handshake").With(zap.String("server_name", "chat.example.com")).
		Warn("no certificate", zap.Int("attempt", 2), zap.Error(errors.New("boom")), zap.Strings("sans", []string{"a", "b"}))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "warn", "component": "tls", "logger": "handshake", "message": "no certificate",
		"server_name": "chat.example.com", "attempt": float64(2), "error": "boom",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, lines[0])
		}
	}
	if sans, _ := got["sans"].([]any); len(sans) != 2 {
		t.Errorf("sans = %v, want [a b]", got["sans"])
	}
}
