package tlstier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

// waitFor polls cond until it holds or timeout passes (nats' checkFor).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Str("component", "tls").Logger()
}

// testConfig is a self-signed config on 127.0.0.1:0 with fast checks.
func testConfig(t *testing.T, edges ...string) Config {
	return Config{
		Listen:         "127.0.0.1:0",
		MetricsListen:  "-",
		Edges:          edges,
		CADir:          t.TempDir(),
		HealthInterval: 20 * time.Millisecond,
		HealthTimeout:  time.Second,
		DrainTimeout:   2 * time.Second,
	}
}

// startProxy builds and runs a Proxy until the test ends, and fails the
// test if Run does not return cleanly.
func startProxy(t *testing.T, cfg Config) (*Proxy, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := runProxy(t, p)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p, reg
}

// runProxy runs p until the returned stop is called; stop waits for Run.
func runProxy(t *testing.T, p *Proxy) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("proxy not listening after 10s")
	}
	var once sync.Once
	var runErr error
	return func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(15 * time.Second):
				runErr = errors.New("Run did not return within 15s of cancel")
			}
		})
		return runErr
	}
}

func caPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", path)
	}
	return pool
}

// hello is what a fake edge sends first on every connection: what it saw
// of the upgrade request.
type hello struct {
	Edge     string `json:"edge"`
	XFF      string `json:"xff"`
	XFP      string `json:"xfp"`
	XFH      string `json:"xfh"`
	Host     string `json:"host"`
	Origin   string `json:"origin"`
	Protocol string `json:"protocol"`
	Auth     string `json:"auth"`
	Path     string `json:"path"`
	Query    string `json:"query"`
}

// fakeEdge is an edge stand-in: /readyz answers 200 or 503, upgrades are
// served by gws, each connection gets a hello and then an echo.
type fakeEdge struct {
	t        *testing.T
	srv      *httptest.Server
	upgrader *gws.Upgrader
	draining atomic.Bool // /readyz answers 503
	refuse   atomic.Bool // upgrades answered 503 while /readyz says 200
	opened   atomic.Int64

	mu      sync.Mutex
	sockets map[*gws.Conn]struct{}
	wg      sync.WaitGroup // upgraded handlers
}

type echoHandler struct{ gws.BuiltinEventHandler }

func (echoHandler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = c.WriteMessage(m.Opcode, m.Bytes())
}

func newFakeEdge(t *testing.T) *fakeEdge {
	t.Helper()
	e := &fakeEdge{t: t, sockets: make(map[*gws.Conn]struct{})}
	e.upgrader = gws.NewUpgrader(echoHandler{}, &gws.ServerOption{SubProtocols: []string{"hearth.v1"}})
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.close)
	return e
}

func (e *fakeEdge) URL() string { return e.srv.URL }

func (e *fakeEdge) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		if e.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
		return
	}
	if e.refuse.Load() || e.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Query().Get("token") == "deny" {
		w.Header().Set("X-Edge-Reason", "bad token")
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	h, _ := json.Marshal(hello{
		Edge: e.srv.URL, XFF: r.Header.Get("X-Forwarded-For"), XFP: r.Header.Get("X-Forwarded-Proto"),
		XFH: r.Header.Get("X-Forwarded-Host"), Host: r.Host, Origin: r.Header.Get("Origin"),
		Protocol: r.Header.Get("Sec-WebSocket-Protocol"), Auth: r.Header.Get("Authorization"),
		Path: r.URL.Path, Query: r.URL.RawQuery,
	})
	e.wg.Add(1)
	defer e.wg.Done()
	c, err := e.upgrader.Upgrade(w, r)
	if err != nil {
		return
	}
	e.mu.Lock()
	e.sockets[c] = struct{}{}
	e.mu.Unlock()
	e.opened.Add(1)
	_ = c.WriteString(string(h))
	c.ReadLoop()
	e.mu.Lock()
	delete(e.sockets, c)
	e.mu.Unlock()
}

func (e *fakeEdge) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sockets)
}

func (e *fakeEdge) close() {
	e.srv.Close()
	e.mu.Lock()
	for c := range e.sockets {
		_ = c.NetConn().Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// wsClient is a test WebSocket client whose messages arrive on msgs.
type wsClient struct {
	conn   *gws.Conn
	resp   *http.Response
	msgs   chan string
	closed chan struct{}
	hello  hello
}

type clientEvents struct {
	gws.BuiltinEventHandler
	c *wsClient
}

func (h clientEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	h.c.msgs <- string(m.Bytes())
}

func (h clientEvents) OnClose(*gws.Conn, error) { close(h.c.closed) }

// dialOpts tweak a client's upgrade request.
type dialOpts struct {
	path   string // default "/ws?token=abc"
	header http.Header
}

// dial opens a WebSocket through p, trusting p's CA, and reads the edge's
// hello. The connection is closed when the test ends.
func dial(t *testing.T, p *Proxy, o dialOpts) *wsClient {
	t.Helper()
	c, err := tryDial(t, p, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func tryDial(t *testing.T, p *Proxy, o dialOpts) (*wsClient, error) {
	t.Helper()
	if o.path == "" {
		o.path = "/ws?token=abc"
	}
	if o.header == nil {
		o.header = http.Header{}
	}
	if o.header.Get("Sec-WebSocket-Protocol") == "" {
		o.header.Set("Sec-WebSocket-Protocol", "hearth.v1") // the fake edges insist
	}
	c := &wsClient{msgs: make(chan string, 16), closed: make(chan struct{})}
	conn, resp, err := gws.NewClient(clientEvents{c: c}, &gws.ClientOption{
		Addr:             "wss://" + p.Addr() + o.path,
		TlsConfig:        &tls.Config{RootCAs: caPool(t, p.CACertPath()), ServerName: "localhost", MinVersion: tls.VersionTLS12},
		RequestHeader:    o.header,
		HandshakeTimeout: 5 * time.Second,
	})
	c.resp = resp
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			err = fmt.Errorf("%w (%s: %q)", err, resp.Status, b)
		}
		return c, err
	}
	c.conn = conn
	go conn.ReadLoop()
	t.Cleanup(c.close)
	if err := json.Unmarshal([]byte(c.recv(t)), &c.hello); err != nil {
		t.Fatalf("hello: %v", err)
	}
	return c, nil
}

func (c *wsClient) recv(t *testing.T) string {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.closed:
		t.Fatal("connection closed while waiting for a message")
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return ""
}

// echo checks that the connection still carries messages both ways.
func (c *wsClient) echo(t *testing.T, msg string) {
	t.Helper()
	if err := c.conn.WriteString(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := c.recv(t); got != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// close closes the connection and waits for its read loop to end.
func (c *wsClient) close() {
	_ = c.conn.NetConn().Close()
	<-c.closed
}

// upgradeRequest sends a WebSocket upgrade with a plain HTTPS client, for
// answers that are not 101.
func upgradeRequest(t *testing.T, p *Proxy, path string, body io.Reader) *http.Response {
	t.Helper()
	client := &http.Client{Transport: proxyTransport(t, p), Timeout: 5 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "https://"+p.Addr()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("upgrade request: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// proxyTransport is an HTTPS transport trusting p's CA, closed when the
// test ends.
func proxyTransport(t *testing.T, p *Proxy) *http.Transport {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, p.CACertPath()), ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// edgeStateOf returns p's view of the edge with base URL name.
func edgeStateOf(t *testing.T, p *Proxy, name string) edgeState {
	t.Helper()
	for _, s := range p.pool.snapshot() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no edge %s", name)
	return edgeState{}
}

// metricValue reads a gauge or counter.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
