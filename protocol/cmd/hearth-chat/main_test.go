package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/protocol/client"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func parseToken(t *testing.T, tok string, secret []byte) *jwt.RegisteredClaims {
	t.Helper()
	var claims jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	return &claims
}

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("  s3cret-of-16-bytes+\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"token", "-secret-file", file, "-user", "alice", "-ttl", "2h"}, nil, &out, &errOut, noEnv)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	claims := parseToken(t, strings.TrimSpace(out.String()), []byte("s3cret-of-16-bytes+"))
	if claims.Subject != "alice" {
		t.Fatalf("sub %q", claims.Subject)
	}
	if d := time.Until(claims.ExpiresAt.Time); d < 2*time.Hour-time.Minute || d > 2*time.Hour {
		t.Fatalf("expires in %v", d)
	}
}

func TestSecretSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sf   secretFlags
		env  map[string]string
		want string // "" means an error
	}{
		{"flag", secretFlags{secret: "flag"}, map[string]string{envSecret: "env"}, "flag"},
		{"file flag", secretFlags{secretFile: file}, map[string]string{envSecret: "env"}, "from-file"},
		{"env", secretFlags{}, map[string]string{envSecret: "env", envSecretFile: file}, "env"},
		{"env file", secretFlags{}, map[string]string{envSecretFile: file}, "from-file"},
		{"both flags", secretFlags{secret: "a", secretFile: file}, nil, ""},
		{"none", secretFlags{}, nil, ""},
		{"missing file", secretFlags{secretFile: filepath.Join(dir, "nope")}, nil, ""},
	}
	for _, tt := range tests {
		got, err := tt.sf.load(envMap(tt.env))
		if (err != nil) != (tt.want == "") || string(got) != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"-h"}, 0},
		{[]string{"token", "-h"}, 0},
		{[]string{"token", "-secret", "s"}, 2},                   // no user
		{[]string{"token", "-bogus"}, 2},                         // unknown flag
		{[]string{"token", "-secret", "s", "-user", "a.b"}, 1},   // invalid user id
		{[]string{"token", "-user", "a"}, 1},                     // no secret
		{[]string{"token", "-user", "a", "-secret", "short"}, 1}, // secret too short
		{[]string{"chat", "-url", "ws://127.0.0.1:1/ws"}, 2},     // no token
		{[]string{"chat", "-url", "ws://127.0.0.1:1/ws", "-token", "t", "-user", "a"}, 2},
	}
	for _, tt := range tests {
		if code := run(t.Context(), tt.args, nil, io.Discard, io.Discard, noEnv); code != tt.code {
			t.Errorf("hearth-chat %q: exit %d, want %d", tt.args, code, tt.code)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    protocol.Frame
		want string
	}{
		{protocol.Frame{Type: protocol.TypeMessage, Room: "general", Seq: 12, From: "bob", Body: []byte("hi")}, "[general #12] bob: hi"},
		{protocol.Frame{Type: protocol.TypeMessage, Room: "g", Seq: 1, From: "eve", Body: []byte("\x1b[2Jgone\nline\xff")}, "[g #1] eve: \uFFFD[2Jgone↵line\uFFFD"},
		{protocol.Frame{Type: protocol.TypePresence, Room: "general", User: "bob", Event: protocol.EventJoin}, "[general] * bob joined"},
		{protocol.Frame{Type: protocol.TypePresence, Room: "general", User: "bob", Event: protocol.EventLeave}, "[general] * bob left"},
	}
	for _, tt := range tests {
		got := formatPresence(tt.f)
		if tt.f.Type == protocol.TypeMessage {
			got = formatMessage(tt.f)
		}
		if got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echoEdge is the least an edge does for a one-user chat: welcome, joined,
// and for a publish the broadcast back plus the ack.
type echoEdge struct{ gws.BuiltinEventHandler }

func (echoEdge) OnOpen(c *gws.Conn) {
	b, _ := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeWelcome, Conn: "c1", User: "alice", HB: 10000})
	_ = c.WriteMessage(gws.OpcodeBinary, b)
}

func (echoEdge) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	f, err := protocol.DecodeFrame(m.Bytes())
	if err != nil {
		return
	}
	var replies []protocol.Frame
	switch f.Type {
	case protocol.TypeJoin:
		replies = []protocol.Frame{{Type: protocol.TypeJoined, ID: f.ID, Room: f.Room, Members: []string{"alice"}}}
	case protocol.TypeLeave:
		replies = []protocol.Frame{{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room}}
	case protocol.TypePublish:
		replies = []protocol.Frame{
			{Type: protocol.TypeMessage, Room: f.Room, Seq: 1, From: "alice", CMID: f.CMID, Body: f.Body},
			{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: 1},
		}
	case protocol.TypeHistory:
		replies = []protocol.Frame{{Type: protocol.TypeHistoryReply, ID: f.ID, Room: f.Room, Seq: 1, History: []protocol.Frame{
			{Type: protocol.TypeMessage, Room: f.Room, Seq: 1, From: "bob", CMID: "b-1", Body: []byte("earlier")},
		}}}
	case protocol.TypeRead:
		replies = []protocol.Frame{{Type: protocol.TypeReceipt, Room: f.Room, User: "alice", Seq: f.Seq}}
	}
	for i := range replies {
		b, _ := protocol.EncodeFrame(&replies[i])
		_ = c.WriteMessage(gws.OpcodeBinary, b)
	}
}

func TestChatEndToEnd(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret-of-16-bytes+")
	up := gws.NewUpgrader(echoEdge{}, &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parseToken(t, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), secret)
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		wg.Go(c.ReadLoop)
	}))
	defer wg.Wait()
	defer srv.Close()

	stdin, typing := io.Pipe()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"chat", "-url", "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws",
			"-user", "alice", "-room", "general", "-v"}, stdin, &stdout, &stderr,
			envMap(map[string]string{envSecret: string(secret)}))
	}()
	waitFor := func(buf *syncBuffer, s string) {
		t.Helper()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for !strings.Contains(buf.String(), s) {
			select {
			case <-ctx.Done():
				t.Fatalf("no %q in output:\n%s\nstderr:\n%s", s, stdout.String(), stderr.String())
			case <-tick.C:
			}
		}
	}
	waitFor(&stderr, "* joined general")
	if _, err := io.WriteString(typing, "hello\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(&stdout, "[general #1] alice: hello")
	if _, err := io.WriteString(typing, "/history 5\n/history x\n/read\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(&stdout, "[general #1] bob: earlier")
	waitFor(&stderr, "! usage: /history [N]")
	waitFor(&stdout, "[general] * alice read up to #1")
	if _, err := io.WriteString(typing, "/leave\nlost\n/quit\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("chat did not quit")
	}
	for _, want := range []string{"* connected as alice (conn c1)", "[general] ack #1", "* last 1 messages of general (now at #1)",
		"* left general", "! no current room"} {
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("no %q in stderr:\n%s", want, stderr.String())
		}
	}
}

func TestPrintNoticesAndReset(t *testing.T) {
	t.Parallel()
	var out, info bytes.Buffer
	ch := &chat{out: &out, info: &info, shown: map[string]uint64{}}
	ch.printFrame(protocol.Frame{Type: protocol.TypeTypingEvent, Room: "general", User: "bob"})
	ch.printFrame(protocol.Frame{Type: protocol.TypeReceipt, Room: "general", User: "bob", Seq: 3}) // verbose only
	ch.printFrame(protocol.Frame{Type: protocol.TypeMessage, Room: "general", Seq: 9, From: "bob", Body: []byte("hi")})
	ch.printEvent(client.Event{Kind: client.EventReset, Room: "general", Seq: 4})
	if got, want := out.String(), "[general] * bob is typing\n[general #9] bob: hi\n"; got != want {
		t.Fatalf("out %q, want %q", got, want)
	}
	if !strings.Contains(info.String(), "! general: messages after #4 are lost to this client") {
		t.Fatalf("info %q", info.String())
	}
	if ch.shown["general"] != 9 {
		t.Fatalf("shown %v", ch.shown)
	}
}
