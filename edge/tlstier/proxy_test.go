package tlstier

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProxyForwardsUpgrade(t *testing.T) {
	t.Parallel()
	edge := newFakeEdge(t)
	p, _ := startProxy(t, testConfig(t, edge.URL()))

	h := http.Header{}
	h.Set("Origin", "https://app.hearth.test")
	h.Set("Sec-WebSocket-Protocol", "hearth.v1")
	h.Set("Authorization", "Bearer jwt-abc")
	h.Set("X-Forwarded-For", "203.0.113.7") // from a load balancer in front
	h.Set("X-Forwarded-Proto", "http")      // must be overwritten
	h.Set("Host", "chat.hearth.test")
	c := dial(t, p, dialOpts{path: "/ws/v1?token=abc&room=lobby", header: h})

	got := c.hello
	want := hello{
		Edge:     edge.URL(),
		XFF:      "203.0.113.7, 127.0.0.1",
		XFP:      "https",
		XFH:      "chat.hearth.test",
		Host:     "chat.hearth.test",
		Origin:   "https://app.hearth.test",
		Protocol: "hearth.v1",
		Auth:     "Bearer jwt-abc",
		Path:     "/ws/v1",
		Query:    "token=abc&room=lobby",
	}
	if got != want {
		t.Fatalf("edge saw\n%+v\nwant\n%+v", got, want)
	}
	if sp := c.conn.SubProtocol(); sp != "hearth.v1" {
		t.Fatalf("negotiated subprotocol %q, want hearth.v1", sp)
	}
	for i := range 3 {
		c.echo(t, "message "+strconv.Itoa(i))
	}
	// A large message crosses several copy buffers.
	c.echo(t, strings.Repeat("x", 5*copyBufSize+17))

	if n := metricValue(t, p.met.proxied.WithLabelValues(edge.URL())); n != 1 {
		t.Fatalf("proxied_connections_total = %v, want 1", n)
	}
	if n := metricValue(t, p.met.active.WithLabelValues(edge.URL())); n != 1 {
		t.Fatalf("edge_active_connections = %v, want 1", n)
	}
	c.close()
	waitFor(t, 5*time.Second, "the active count to drop", func() bool {
		return edgeStateOf(t, p, edge.URL()).Active == 0 &&
			metricValue(t, p.met.active.WithLabelValues(edge.URL())) == 0
	})
	waitFor(t, 5*time.Second, "the edge to see the close", func() bool { return edge.open() == 0 })
}

func TestForwardedHeader(t *testing.T) {
	t.Parallel()
	r, err := http.NewRequest(http.MethodGet, "https://chat.hearth.test/ws?token=abc", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "198.51.100.9:51234"
	r.Header.Set("Connection", "keep-alive, Upgrade, X-Hop-Secret")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("X-Hop-Secret", "for the next hop only")
	r.Header.Set("Keep-Alive", "timeout=5")
	r.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
	r.Header.Set("Origin", "https://app.hearth.test")
	r.Header.Add("X-Forwarded-For", "203.0.113.7")
	r.Header.Add("X-Forwarded-For", "10.0.0.1")
	r.Header.Set("X-Forwarded-Host", "spoofed.example")

	h := forwardedHeader(r)
	want := map[string]string{
		"Connection":               "Upgrade",
		"Upgrade":                  "websocket",
		"X-Hop-Secret":             "",
		"Keep-Alive":               "",
		"Proxy-Authorization":      "",
		"Sec-Websocket-Key":        "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-Websocket-Version":    "13",
		"Sec-Websocket-Extensions": "permessage-deflate",
		"Origin":                   "https://app.hearth.test",
		"X-Forwarded-For":          "203.0.113.7, 10.0.0.1, 198.51.100.9",
		"X-Forwarded-Proto":        "https",
		"X-Forwarded-Host":         "chat.hearth.test",
	}
	for k, v := range want {
		if got := strings.Join(h.Values(k), "|"); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if r.Header.Get("X-Hop-Secret") == "" {
		t.Error("forwardedHeader modified the client's request")
	}
}

func TestProxyRelaysRefusalAndRefusesPlainHTTP(t *testing.T) {
	t.Parallel()
	edge := newFakeEdge(t)
	p, _ := startProxy(t, testConfig(t, edge.URL()))

	resp := upgradeRequest(t, p, "/ws?token=deny", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "bad token") ||
		resp.Header.Get("X-Edge-Reason") != "bad token" {
		t.Fatalf("refused upgrade: %d %q %v; want the edge's 401", resp.StatusCode, body, resp.Header)
	}
	if s := edgeStateOf(t, p, edge.URL()); s.Active != 0 || !s.Healthy {
		t.Fatalf("after a refusal the edge is %+v, want healthy with no connections", s)
	}

	if resp := upgradeRequest(t, p, "/ws?token=abc", strings.NewReader("smuggled")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("upgrade with a body: %d, want 400", resp.StatusCode)
	}

	client := &http.Client{Transport: proxyTransport(t, p), Timeout: 5 * time.Second}
	for path, want := range map[string]int{"/": http.StatusUpgradeRequired, "/healthz": http.StatusOK} {
		resp, err := client.Get("https://" + p.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// edgeCounts returns how many of clients landed on each edge.
func edgeCounts(clients []*wsClient) map[string]int {
	n := map[string]int{}
	for _, c := range clients {
		n[c.hello.Edge]++
	}
	return n
}

func TestLeastConnections(t *testing.T) {
	t.Parallel()
	a, b := newFakeEdge(t), newFakeEdge(t)
	p, _ := startProxy(t, testConfig(t, a.URL(), b.URL()))

	var clients []*wsClient
	for range 10 {
		clients = append(clients, dial(t, p, dialOpts{}))
	}
	if n := edgeCounts(clients); n[a.URL()] != 5 || n[b.URL()] != 5 {
		t.Fatalf("10 sequential connections spread %v, want 5 and 5", n)
	}
	if a.open() != 5 || b.open() != 5 {
		t.Fatalf("edges hold %d and %d connections, want 5 and 5", a.open(), b.open())
	}

	// Close three of a's: the count drops when they end, and the next
	// three connections go to a.
	closed := 0
	for _, c := range clients {
		if c.hello.Edge == a.URL() && closed < 3 {
			c.close()
			closed++
		}
	}
	waitFor(t, 5*time.Second, "a's count to drop to 2", func() bool { return edgeStateOf(t, p, a.URL()).Active == 2 })
	var next []*wsClient
	for range 3 {
		next = append(next, dial(t, p, dialOpts{}))
	}
	if n := edgeCounts(next); n[a.URL()] != 3 {
		t.Fatalf("after a lost 3 connections, new ones went %v; want all 3 on a", n)
	}

	// Concurrent upgrades are counted from selection, so a burst spreads
	// evenly too.
	var mu sync.Mutex
	var burst []*wsClient
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c, err := tryDial(t, p, dialOpts{})
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			mu.Lock()
			burst = append(burst, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := edgeCounts(burst); n[a.URL()] != 4 || n[b.URL()] != 4 {
		t.Fatalf("burst of 8 spread %v, want 4 and 4", n)
	}
}

func TestDrainingEdgeGetsNoNewConnections(t *testing.T) {
	t.Parallel()
	a, b := newFakeEdge(t), newFakeEdge(t)
	p, _ := startProxy(t, testConfig(t, a.URL(), b.URL()))

	old := dial(t, p, dialOpts{})
	draining, other := a, b
	if old.hello.Edge == b.URL() {
		draining, other = b, a
	}
	draining.draining.Store(true)
	waitFor(t, 5*time.Second, "the health check to notice the drain", func() bool {
		return !edgeStateOf(t, p, draining.URL()).Healthy
	})
	if up := metricValue(t, p.met.up.WithLabelValues(draining.URL())); up != 0 {
		t.Fatalf("edge_up = %v for a draining edge, want 0", up)
	}

	// Even though the draining edge holds fewer connections, new ones go
	// to the other edge.
	for range 4 {
		if c := dial(t, p, dialOpts{}); c.hello.Edge != other.URL() {
			t.Fatalf("new connection went to the draining edge %s", c.hello.Edge)
		}
	}
	// The existing connection keeps flowing.
	old.echo(t, "still here")

	// Back in rotation after HealthyAfter successful checks; with the
	// fewest connections it gets the next one.
	draining.draining.Store(false)
	waitFor(t, 5*time.Second, "the edge to return", func() bool { return edgeStateOf(t, p, draining.URL()).Healthy })
	if c := dial(t, p, dialOpts{}); c.hello.Edge != draining.URL() {
		t.Fatalf("after the drain ended the next connection went to %s, want %s", c.hello.Edge, draining.URL())
	}
}

func TestAllEdgesDown(t *testing.T) {
	t.Parallel()
	a, b := newFakeEdge(t), newFakeEdge(t)
	a.draining.Store(true)
	b.draining.Store(true)
	cfg := testConfig(t, a.URL(), b.URL())
	cfg.MetricsListen = "127.0.0.1:0"
	p, _ := startProxy(t, cfg)

	resp := upgradeRequest(t, p, "/ws?token=abc", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d with every edge draining, want 503", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	if n := metricValue(t, p.met.errors.WithLabelValues(noEdgeLabel, errReasonNoEdge)); n != 1 {
		t.Fatalf("proxy_errors_total{reason=no_edge} = %v, want 1", n)
	}
	if code := getStatus(t, "http://"+p.MetricsAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("admin /readyz = %d with no edge ready, want 503", code)
	}
	resp, err := http.Get("http://" + p.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`hearth_tls_edge_up{edge="` + a.URL() + `"} 0`,
		`hearth_tls_proxy_errors_total{edge="none",reason="no_edge"} 1`,
		`hearth_tls_edge_active_connections{edge="` + b.URL() + `"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// When one comes back, upgrades flow again.
	b.draining.Store(false)
	waitFor(t, 5*time.Second, "b to return", func() bool { return edgeStateOf(t, p, b.URL()).Healthy })
	if c := dial(t, p, dialOpts{}); c.hello.Edge != b.URL() {
		t.Fatalf("connection went to %s, want %s", c.hello.Edge, b.URL())
	}
	if code := getStatus(t, "http://"+p.MetricsAddr()+"/readyz"); code != http.StatusOK {
		t.Fatalf("admin /readyz = %d, want 200", code)
	}
}

func TestUnreachableEdgeIsSkipped(t *testing.T) {
	t.Parallel()
	// A port with nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	live := newFakeEdge(t)
	cfg := testConfig(t, dead, live.URL())
	cfg.HealthInterval = time.Hour // only the startup check and dials decide
	p, _ := startProxy(t, cfg)

	if edgeStateOf(t, p, dead).Healthy {
		t.Fatal("an edge that refuses connections passed the startup check")
	}
	// Pretend the check passed just before the edge died: the dial fails
	// and the upgrade moves on to the live edge.
	p.pool.mu.Lock()
	p.pool.edges[0].healthy = true
	p.pool.next = 0 // the dead edge is first in line
	p.pool.mu.Unlock()

	for range 3 {
		if c := dial(t, p, dialOpts{}); c.hello.Edge != live.URL() {
			t.Fatalf("connection went to %s", c.hello.Edge)
		}
	}
	if s := edgeStateOf(t, p, dead); s.Healthy || s.Active != 0 {
		t.Fatalf("dead edge is %+v after a failed dial, want unhealthy with no connections", s)
	}
	if n := metricValue(t, p.met.errors.WithLabelValues(dead, errReasonDial)); n != 1 {
		t.Fatalf("proxy_errors_total{reason=dial} = %v, want 1 (then it is out of rotation)", n)
	}
}

func TestSilentEdgeTimesOut(t *testing.T) {
	t.Parallel()
	// An edge that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepted []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range accepted {
			c.Close()
		}
	})
	silent := "http://" + ln.Addr().String()
	live := newFakeEdge(t)
	cfg := testConfig(t, silent, live.URL())
	cfg.HealthInterval = time.Hour
	cfg.HealthTimeout = 50 * time.Millisecond
	cfg.UpgradeTimeout = 100 * time.Millisecond
	p, _ := startProxy(t, cfg)
	p.pool.mu.Lock()
	p.pool.edges[0].healthy = true // as if it had answered /readyz
	p.pool.next = 0
	p.pool.mu.Unlock()

	if c := dial(t, p, dialOpts{}); c.hello.Edge != live.URL() {
		t.Fatalf("connection went to %s", c.hello.Edge)
	}
	if n := metricValue(t, p.met.errors.WithLabelValues(silent, errReasonHandshake)); n != 1 {
		t.Fatalf("proxy_errors_total{reason=handshake} = %v, want 1", n)
	}
	if s := edgeStateOf(t, p, silent); s.Active != 0 {
		t.Fatalf("silent edge still counts %d connections", s.Active)
	}
}

func TestEdgeAnswering503IsSkipped(t *testing.T) {
	t.Parallel()
	a, b := newFakeEdge(t), newFakeEdge(t)
	a.refuse.Store(true) // draining, but its /readyz has not said so yet
	cfg := testConfig(t, a.URL(), b.URL())
	cfg.HealthInterval = time.Hour
	p, _ := startProxy(t, cfg)

	for range 4 {
		if c := dial(t, p, dialOpts{}); c.hello.Edge != b.URL() {
			t.Fatalf("connection went to %s, want %s", c.hello.Edge, b.URL())
		}
	}
	if n := metricValue(t, p.met.errors.WithLabelValues(a.URL(), errReasonRefused)); n < 1 {
		t.Fatal("no refused error counted for the edge answering 503")
	}
	if s := edgeStateOf(t, p, a.URL()); s.Active != 0 {
		t.Fatalf("refusing edge still counts %d connections", s.Active)
	}
}

func TestShutdownClosesProxiedConnectionsAfterDrainTimeout(t *testing.T) {
	t.Parallel()
	edge := newFakeEdge(t)
	cfg := testConfig(t, edge.URL())
	cfg.DrainTimeout = 200 * time.Millisecond
	p, err := New(cfg, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	c := dial(t, p, dialOpts{})
	c.echo(t, "before")

	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d < cfg.DrainTimeout {
		t.Fatalf("Run returned after %s, before the %s drain timeout with a connection open", d, cfg.DrainTimeout)
	}
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still open after shutdown")
	}
	if p.track.count() != 0 {
		t.Fatalf("%d connections tracked after Run returned", p.track.count())
	}
	if err := p.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Fatalf("second Run: %v, want ErrAlreadyRun", err)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
