package client

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
)

var testSecret = []byte("test-secret-of-32-bytes-or-so!!!")

// waitTimeout bounds every wait of these tests.
const waitTimeout = 5 * time.Second

func mint(t *testing.T, secret []byte, user string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testConfig(t *testing.T, e *fakeEdge) Config {
	return Config{
		URL:            e.url(),
		Token:          mint(t, testSecret, "alice", time.Hour),
		Logger:         zerolog.New(zerolog.NewTestWriter(t)),
		ReconnectMin:   5 * time.Millisecond,
		ReconnectMax:   50 * time.Millisecond,
		RequestTimeout: waitTimeout,
	}
}

func dial(t *testing.T, e *fakeEdge, mod func(*Config)) *Client {
	t.Helper()
	cfg := testConfig(t, e)
	if mod != nil {
		mod(&cfg)
	}
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// nextEvent returns the next event of kind, skipping others into seen.
func nextEvent(t *testing.T, c *Client, kind EventKind, seen *[]Event) Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", kind)
			}
			if ev.Kind == kind {
				return ev
			}
			if seen != nil {
				*seen = append(*seen, ev)
			}
		case <-timer.C:
			t.Fatalf("timed out waiting for event %s", kind)
		}
	}
}

func recvMessage(t *testing.T, c *Client) protocol.Frame {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case f, ok := <-c.Messages():
		if !ok {
			t.Fatal("messages closed")
		}
		return f
	case <-timer.C:
		t.Fatal("timed out waiting for a message")
	}
	return protocol.Frame{}
}

func mustJoin(t *testing.T, c *Client, rooms ...string) {
	t.Helper()
	for _, r := range rooms {
		if _, err := c.Join(t.Context(), r); err != nil {
			t.Fatalf("join %q: %v", r, err)
		}
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestDialWelcomeJoinPublish(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	if w := c.Welcome(); w.User != "alice" || w.Conn == "" || w.Heartbeat != time.Second {
		t.Fatalf("welcome = %+v", w)
	}
	if ev := nextEvent(t, c, EventConnected, nil); ev.Welcome != c.Welcome() {
		t.Fatalf("connected event %+v", ev)
	}
	j, err := c.Join(t.Context(), "general")
	if err != nil {
		t.Fatal(err)
	}
	if j.Type != protocol.TypeJoined || j.Room != "general" || !slices.Contains(j.Members, "alice") {
		t.Fatalf("joined = %+v", j)
	}
	seq, err := c.Publish(t.Context(), "general", []byte("hi"))
	if err != nil || seq != 1 {
		t.Fatalf("publish = %d, %v", seq, err)
	}
	m := recvMessage(t, c)
	if m.Type != protocol.TypeMessage || m.Seq != 1 || m.From != "alice" || string(m.Body) != "hi" || m.CMID == "" {
		t.Fatalf("message = %+v", m)
	}
	if seq, err := c.PublishCMID(t.Context(), "general", "my-id", nil); err != nil || seq != 2 {
		t.Fatalf("PublishCMID = %d, %v", seq, err)
	}
	if m := recvMessage(t, c); m.CMID != "my-id" {
		t.Fatalf("cmid = %q", m.CMID)
	}
	if err := c.Leave(t.Context(), "general"); err != nil {
		t.Fatal(err)
	}
	if len(c.Rooms()) != 0 {
		t.Fatalf("rooms after leave: %v", c.Rooms())
	}
}

// Replies leave the fake edge out of order; every ack must still reach the
// publisher of its message.
func TestConcurrentPublishersMatchReplies(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "general")

	const publishers, each = 8, 50
	var mu sync.Mutex
	acked := map[string]uint64{} // body → seq
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf("p%d-%d", p, i)
				seq, err := c.Publish(t.Context(), "general", []byte(body))
				if err != nil {
					t.Errorf("publish %s: %v", body, err)
					return
				}
				mu.Lock()
				acked[body] = seq
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for _, seq := range acked {
		if seq < 1 || seq > publishers*each || seen[seq] {
			t.Fatalf("bad or duplicate seq %d", seq)
		}
		seen[seq] = true
	}
	var last uint64
	for range publishers * each {
		m := recvMessage(t, c)
		if m.Seq <= last {
			t.Fatalf("seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		if acked[string(m.Body)] != m.Seq {
			t.Fatalf("message %q has seq %d, its publisher was acked %d", m.Body, m.Seq, acked[string(m.Body)])
		}
	}
}

func TestErrorFrameIsRequestError(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)

	_, err := c.Publish(t.Context(), "lobby", []byte("x"))
	var re *RequestError
	if !errors.As(err, &re) || re.Code != protocol.CodeNotMember || re.Text != "join first" || re.Room != "lobby" || !re.Retryable() {
		t.Fatalf("publish to a room not joined: %v (%#v)", err, re)
	}
	if !strings.Contains(err.Error(), "not_member") {
		t.Fatalf("error text %q", err)
	}

	_, err = c.Join(t.Context(), "forbidden")
	if !errors.As(err, &re) || re.Code != protocol.CodeForbidden || re.Retryable() {
		t.Fatalf("join forbidden: %v", err)
	}
	if len(c.Rooms()) != 0 {
		t.Fatalf("a refused room is remembered: %v", c.Rooms())
	}

	// Invalid requests fail locally, never reaching the edge.
	_, err = c.Join(t.Context(), "a.b")
	var fe *protocol.FrameError
	if !errors.As(err, &fe) || fe.Code != protocol.CodeInvalidRoom {
		t.Fatalf("invalid room: %v", err)
	}
	if e.joinCount("a.b") != 0 {
		t.Fatal("invalid join was sent")
	}
	if _, err = c.PublishCMID(t.Context(), "general", "", nil); !errors.As(err, &fe) || fe.Code != protocol.CodeMissingField {
		t.Fatalf("empty cmid: %v", err)
	}

	// An error frame answering no request becomes an event.
	e.sendAll(&protocol.Frame{Type: protocol.TypeError, Code: protocol.CodeInternal, Text: "oops"})
	ev := nextEvent(t, c, EventServerError, nil)
	if !errors.As(ev.Err, &re) || re.Code != protocol.CodeInternal {
		t.Fatalf("server error event %+v", ev)
	}
}

func TestHandshakeRefused(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	tests := []struct {
		name   string
		mod    func(*Config)
		want   error
		status int
	}{
		{"wrong secret", func(c *Config) { c.Token = mint(t, []byte("other"), "alice", time.Hour) }, ErrUnauthorized, 401},
		{"expired", func(c *Config) { c.Token = mint(t, testSecret, "alice", -time.Minute) }, ErrUnauthorized, 401},
		{"no token", func(c *Config) { c.Token = "" }, ErrUnauthorized, 401},
		{"token func", func(c *Config) {
			c.Token = ""
			c.TokenFunc = func(context.Context) (string, error) { return "garbage", nil }
		}, ErrUnauthorized, 401},
		{"foreign origin", func(c *Config) { c.Origin = "https://evil.example" }, ErrForbidden, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, e)
			tt.mod(&cfg)
			c, err := Dial(t.Context(), cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			var he *HandshakeError
			if !errors.Is(err, tt.want) || !errors.As(err, &he) || he.StatusCode != tt.status {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.status)) || strings.Contains(err.Error(), "token=") {
				t.Fatalf("error text %q", err)
			}
		})
	}
	// The allowed origin passes.
	dial(t, e, func(c *Config) { c.Origin = testOrigin })
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []Config{
		{},
		{URL: "http://localhost/ws"},
		{URL: "ws:///ws"},
		{URL: "ws://localhost/ws", Token: "t", TokenFunc: func(context.Context) (string, error) { return "", nil }},
		{URL: "wss://localhost/ws", CAFile: "/nonexistent/ca.pem"},
		{URL: "ws://localhost/ws", RecvBuffer: -1},
	}
	for _, cfg := range tests {
		if c, err := Dial(t.Context(), cfg); err == nil {
			_ = c.Close()
			t.Errorf("Dial(%+v) succeeded", cfg)
		}
	}
}

func TestTLSWithCAFile(t *testing.T) {
	t.Parallel()
	e := newFakeEdgeTLS(t, testSecret, time.Second)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.url(), "wss://") {
		t.Fatalf("url %s", e.url())
	}
	// Without the CA the certificate is not trusted.
	cfg := testConfig(t, e)
	if c, err := Dial(t.Context(), cfg); err == nil {
		_ = c.Close()
		t.Fatal("Dial trusted an unknown CA")
	}
	c := dial(t, e, func(c *Config) { c.CAFile = ca })
	mustJoin(t, c, "general")
}

func TestReconnectRejoinsRooms(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "a", "b")
	first := c.Welcome().Conn

	e.dropAll()
	if ev := nextEvent(t, c, EventDisconnected, nil); ev.Code != 0 || ev.Err == nil {
		t.Fatalf("disconnected event %+v", ev)
	}
	ev := nextEvent(t, c, EventConnected, nil)
	if ev.Welcome.Conn == first || c.Welcome().Conn != ev.Welcome.Conn {
		t.Fatalf("connected event %+v after %s", ev, first)
	}
	rejoined := []string{nextEvent(t, c, EventRejoined, nil).Room, nextEvent(t, c, EventRejoined, nil).Room}
	if !slices.Equal(rejoined, []string{"a", "b"}) {
		t.Fatalf("rejoined %v", rejoined)
	}
	for _, r := range []string{"a", "b"} {
		if m := e.memberConns(r); !slices.Equal(m, []string{ev.Welcome.Conn}) {
			t.Fatalf("members of %s: %v", r, m)
		}
	}
	if _, err := c.Publish(t.Context(), "a", []byte("back")); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Reconnects != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A left room is not re-joined; a room the edge now refuses is reported
// and forgotten.
func TestRejoinSkipsLeftAndReportsRefused(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "a", "b", "c")
	if err := c.Leave(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	e.setForbidden("b")
	e.dropAll()

	var seen []Event
	ev := nextEvent(t, c, EventRejoinFailed, &seen)
	var re *RequestError
	if ev.Room != "b" || !errors.As(ev.Err, &re) || re.Code != protocol.CodeForbidden {
		t.Fatalf("rejoin failed event %+v", ev)
	}
	// Re-joins are awaited in room order, so "a" would have come first.
	if ev := nextEvent(t, c, EventRejoined, &seen); ev.Room != "c" {
		t.Fatalf("rejoined %q", ev.Room)
	}
	for _, ev := range seen {
		if ev.Room == "a" {
			t.Fatalf("left room re-joined: %+v", ev)
		}
	}
	if e.joinCount("a") != 1 {
		t.Fatalf("joins of a: %d", e.joinCount("a"))
	}
	if r := c.Rooms(); !slices.Equal(r, []string{"c"}) {
		t.Fatalf("rooms %v", r)
	}
}

func TestPendingRequestsFailOnDisconnect(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "a")

	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(t.Context(), roomVoid, []byte("lost"))
		errc <- err
	}()
	waitFor(t, "the publish to be pending", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 1
	})
	e.setReject(503) // keep the client disconnected
	e.dropAll()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("pending publish: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("pending publish never failed")
	}
	nextEvent(t, c, EventDisconnected, nil)
	// While disconnected, requests fail at once; Leave forgets the room.
	if _, err := c.Publish(t.Context(), "a", nil); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("publish while disconnected: %v", err)
	}
	if err := c.Leave(t.Context(), "a"); err != nil {
		t.Fatalf("leave while disconnected: %v", err)
	}
	ev := nextEvent(t, c, EventReconnecting, nil)
	ev = nextEvent(t, c, EventReconnecting, nil)
	var he *HandshakeError
	if !errors.As(ev.Err, &he) || he.StatusCode != 503 {
		t.Fatalf("reconnecting after %v", ev.Err)
	}
	e.setReject(0)
	nextEvent(t, c, EventConnected, nil)
	if len(c.Rooms()) != 0 || e.joinCount("a") != 1 {
		t.Fatalf("rooms %v, joins %d", c.Rooms(), e.joinCount("a"))
	}
}

func TestRequestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
	if _, err := c.Publish(t.Context(), roomVoid, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("publish to the void: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Join(ctx, roomVoid); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled join: %v", err)
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d requests still pending", n)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "a")

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	// Close waited for every goroutine: nothing can dial any more.
	if !closed(c.Done()) || c.Err() != nil {
		t.Fatalf("done %v, err %v", closed(c.Done()), c.Err())
	}
	if _, err := c.Join(t.Context(), "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("join after close: %v", err)
	}
	var last Event
	for ev := range c.Events() {
		last = ev
	}
	if last.Kind != EventDisconnected || last.Code != protocol.CloseNormal || !errors.Is(last.Err, ErrClosed) {
		t.Fatalf("last event %+v", last)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("messages not closed")
	}
	waitFor(t, "the edge to see the close", func() bool { return len(e.snapshot()) == 0 })
	if n := e.acceptedCount(); n != 1 {
		t.Fatalf("%d connections", n)
	}
}

func TestServerCloseCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code      uint16
		reason    string
		reconnect bool
	}{
		{protocol.CloseNormal, "", false},
		{protocol.CloseProtocolError, "text frame", false},
		{protocol.CloseGoingAway, protocol.DrainReason(30), true},
		{protocol.CloseSlowConsumer, "", true},
		{protocol.CloseHeartbeat, "", true},
		{protocol.CloseInternal, "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			e := newFakeEdge(t, testSecret, time.Second)
			c := dial(t, e, nil)
			e.closeAll(tt.code, tt.reason)
			ev := nextEvent(t, c, EventDisconnected, nil)
			var ce *CloseError
			if ev.Code != tt.code || ev.Reason != tt.reason || !errors.As(ev.Err, &ce) || ce.Code != tt.code {
				t.Fatalf("disconnected event %+v", ev)
			}
			if tt.reconnect {
				ev := nextEvent(t, c, EventReconnecting, nil)
				if tt.code == protocol.CloseGoingAway && ev.Delay > 30*time.Millisecond {
					t.Fatalf("drain hint ignored: delay %v", ev.Delay)
				}
				nextEvent(t, c, EventConnected, nil)
				if e.acceptedCount() != 2 {
					t.Fatalf("%d connections", e.acceptedCount())
				}
				return
			}
			ev = nextEvent(t, c, EventStopped, nil)
			<-c.Done()
			if err := c.Err(); !errors.As(err, &ce) || ce.Code != tt.code || !errors.As(ev.Err, &ce) {
				t.Fatalf("Err() = %v", err)
			}
			if _, err := c.Join(t.Context(), "a"); !errors.Is(err, ErrClosed) {
				t.Fatalf("join after stop: %v", err)
			}
			if e.acceptedCount() != 1 {
				t.Fatalf("reconnected after code %d", tt.code)
			}
		})
	}
}

func TestUnauthorizedReconnectStops(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	e.setReject(401)
	e.dropAll()
	ev := nextEvent(t, c, EventStopped, nil)
	<-c.Done()
	if !errors.Is(ev.Err, ErrUnauthorized) || !errors.Is(c.Err(), ErrUnauthorized) {
		t.Fatalf("stopped with %v", ev.Err)
	}
}

func TestTokenFuncRefreshes(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	var calls atomic.Int32
	var fixed atomic.Bool
	stale := mint(t, testSecret, "alice", time.Hour)
	c := dial(t, e, func(cfg *Config) {
		cfg.Token = ""
		cfg.TokenFunc = func(context.Context) (string, error) {
			n := calls.Add(1)
			if fixed.Load() {
				return stale, nil
			}
			return mint(t, testSecret, fmt.Sprintf("alice%d", n), time.Hour), nil
		}
	})
	if ev := nextEvent(t, c, EventConnected, nil); ev.Welcome.User != "alice1" {
		t.Fatalf("connected as %q", ev.Welcome.User)
	}
	// Token expired: reconnect with a fresh token.
	e.closeAll(protocol.CloseTokenExpired, "token expired")
	if ev := nextEvent(t, c, EventConnected, nil); ev.Welcome.User != "alice2" {
		t.Fatalf("reconnected as %q", ev.Welcome.User)
	}
	// Refused, and TokenFunc keeps returning the refused token: stop.
	fixed.Store(true)
	e.setReject(401)
	e.dropAll()
	ev := nextEvent(t, c, EventStopped, nil)
	if !errors.Is(ev.Err, ErrUnauthorized) {
		t.Fatalf("stopped with %v", ev.Err)
	}
	if n := calls.Load(); n != 4 { // Dial, reconnection, two refused attempts
		t.Fatalf("TokenFunc called %d times", n)
	}
}

func TestDeadConnectionDetected(t *testing.T) {
	// Not parallel: Go runs it before the parallel tests start, so that
	// their load (the delivery chaos tests) cannot starve the heartbeat.
	// Generous enough that a loaded CI machine's scheduling delays (race
	// detector, parallel packages) stay well inside the client's timeout
	// of 2×hb + hb/2.
	const hb = 150 * time.Millisecond
	e := newFakeEdge(t, testSecret, hb)
	c := dial(t, e, nil)
	mustJoin(t, c, "a")

	// A pinging edge keeps the connection alive well past the timeout.
	fc := e.snapshot()[0]
	waitFor(t, "pings", func() bool { return fc.pings.Load() >= 5 })
	select {
	case ev := <-c.Events():
		if ev.Kind != EventConnected {
			t.Fatalf("unexpected event %+v while pinged", ev)
		}
	default:
	}

	start := time.Now()
	e.silenceAll()
	ev := nextEvent(t, c, EventDisconnected, nil)
	if !errors.Is(ev.Err, ErrHeartbeatTimeout) {
		t.Fatalf("disconnected with %v", ev.Err)
	}
	if d := time.Since(start); d < 2*hb {
		t.Fatalf("declared dead after %v, heartbeat %v", d, hb)
	}
	nextEvent(t, c, EventConnected, nil)
	if ev := nextEvent(t, c, EventRejoined, nil); ev.Room != "a" {
		t.Fatalf("rejoined %q", ev.Room)
	}
}

func TestBackoffAndDrainHint(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, time.Second
	for n := 1; n < 100; n++ {
		ceil := min(hi, lo<<min(n-1, 20))
		for range 20 {
			if d := backoff(n, lo, hi); d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, ceiling %v", n, d, ceil)
			}
		}
	}
	tests := []struct {
		reason string
		want   time.Duration
		ok     bool
	}{
		{protocol.DrainReason(2500), 2500 * time.Millisecond, true},
		{protocol.DrainReason(0), 0, true},
		{"reconnect=-1", 0, false},
		{"reconnect=soon", 0, false},
		{"bye", 0, false},
		{protocol.DrainReason(1 << 30), maxDrainHint, true},
	}
	for _, tt := range tests {
		if d, ok := parseDrain(tt.reason); d != tt.want || ok != tt.ok {
			t.Errorf("parseDrain(%q) = %v, %v", tt.reason, d, ok)
		}
	}
}

// An edge that accepts connections and drops them at once must not get a
// reconnection storm: the backoff keeps growing across those connections.
func TestBackoffGrowsWhileFlapping(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Millisecond, time.Second })
	e.setFlap(protocol.CloseInternal)
	e.dropAll()
	for want := 1; want <= 4; want++ {
		if ev := nextEvent(t, c, EventReconnecting, nil); ev.Attempt != want {
			t.Fatalf("attempt %d, want %d", ev.Attempt, want)
		}
	}
	e.setFlap(0)
	nextEvent(t, c, EventConnected, nil)
	waitFor(t, "a connection that stays", func() bool { return len(e.snapshot()) == 1 && c.Welcome().Conn == e.snapshot()[0].id })
}
