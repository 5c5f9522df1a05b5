package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/edge/tlstier"
	"github.com/hearth-gateway/hearth/hub"
	"github.com/hearth-gateway/hearth/shared/auth"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// brokerKind selects the broker a cluster runs on.
type brokerKind string

const (
	kindLocal brokerKind = "local"
	kindAMQP  brokerKind = "amqp"
)

// forEachBroker runs f once per broker implementation, so the in-process
// broker and RabbitMQ are held to the same end-to-end behaviour.
func forEachBroker(t *testing.T, f func(t *testing.T, kind brokerKind)) {
	for _, k := range []brokerKind{kindLocal, kindAMQP} {
		t.Run(string(k), func(t *testing.T) { f(t, k) })
	}
}

const testShards = 8

var testSecret = []byte("e2e-secret-0123456789abcdef")

// cluster is a whole pipeline in one test process: each component on its
// own broker connection, as if it were its own process.
type cluster struct {
	t     *testing.T
	kind  brokerKind
	url   string
	local *broker.Local
	log   zerolog.Logger

	edges  []*edge.Server
	cuts   []*cutBroker // one per edge
	hubs   []*hub.Worker
	tls    *tlstier.Proxy
	caPool *x509.CertPool

	mu    sync.Mutex
	stops []func()
}

type clusterOpts struct {
	edges, hubs int
	tls         bool
	// edgeCfg adjusts every edge's config.
	edgeCfg func(*edge.Config)
}

func newCluster(t *testing.T, kind brokerKind, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, kind: kind, log: testLogger(t)}
	switch kind {
	case kindLocal:
		c.local = broker.NewLocal(broker.LocalConfig{})
		t.Cleanup(func() { _ = c.local.Close() })
	case kindAMQP:
		c.url = vhostURL(t)
	}
	t.Cleanup(c.stop)
	for i := 0; i < o.hubs; i++ {
		c.startHub(fmt.Sprintf("hub%d", i))
	}
	if o.hubs > 0 {
		c.waitBalanced()
	}
	for i := 0; i < o.edges; i++ {
		c.startEdge(fmt.Sprintf("e%d-%s", i+1, randHex(3)), o.edgeCfg)
	}
	if o.tls {
		c.startTLS()
	}
	return c
}

func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("HEARTH_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Str("test", t.Name()).Logger()
	}
	return zerolog.Nop()
}

// newBroker returns a broker connection for one component. For RabbitMQ
// each component gets its own connections; the local broker is shared, and
// closing a component must not close it.
func (c *cluster) newBroker(name string) broker.Broker {
	c.t.Helper()
	if c.kind == kindLocal {
		return sharedLocal{c.local}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := broker.NewAMQP(ctx, broker.AMQPConfig{URLs: []string{c.url}, Name: name, Logger: c.log.With().Str("broker", name).Logger()})
	if err != nil {
		c.t.Fatalf("connecting %s to RabbitMQ: %v", name, err)
	}
	return b
}

// sharedLocal keeps a component's Close from closing the shared broker.
type sharedLocal struct{ *broker.Local }

func (sharedLocal) Close() error { return nil }

// run starts a component's Run and registers its stop.
func (c *cluster) run(name string, run func(ctx context.Context) error, b broker.Broker) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					c.t.Errorf("%s stopped with %v", name, err)
				}
			case <-time.After(30 * time.Second):
				c.t.Errorf("%s did not stop within 30s", name)
			}
			_ = b.Close()
		})
	}
	c.mu.Lock()
	c.stops = append(c.stops, stop)
	c.mu.Unlock()
	return stop
}

func (c *cluster) stop() {
	c.mu.Lock()
	stops := c.stops
	c.stops = nil
	c.mu.Unlock()
	// Front to back: the TLS tier, then edges, then hubs.
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

func waitReady(t *testing.T, name string, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready within 60s", name)
	}
}

func (c *cluster) topology() topology.Config {
	return topology.Config{Shards: testShards, Quorum: c.kind == kindAMQP}
}

func (c *cluster) startHub(name string) *hub.Worker {
	c.t.Helper()
	b := c.newBroker(name)
	w, err := hub.New(hub.Config{
		ID: name, ListenAdmin: "127.0.0.1:0", Topology: c.topology(),
		HubHeartbeat: 200 * time.Millisecond, HubTimeout: time.Second,
		EdgeTimeout: 2 * time.Second, SnapshotEvery: 200,
	}, hub.Hooks{Join: denyForbidden}, b, c.log.With().Str("hub", name).Logger(), prometheus.NewRegistry())
	if err != nil {
		c.t.Fatal(err)
	}
	c.run(name, w.Run, b)
	waitReady(c.t, name, w.Ready())
	c.hubs = append(c.hubs, w)
	return w
}

// waitBalanced waits until the running hubs own every shard between them,
// evenly (counts within one of each other) and each shard once.
func (c *cluster) waitBalanced() {
	c.t.Helper()
	testenv.WaitFor(c.t, 20*time.Second, func() bool { return c.balanced() }, "shards balanced over %d hubs", len(c.hubs))
}

func (c *cluster) balanced() bool {
	seen := map[int]bool{}
	lo, hi := testShards, 0
	for _, h := range c.hubs {
		if h == nil {
			continue
		}
		st := h.Stats()
		lo, hi = min(lo, st.Shards), max(hi, st.Shards)
		for _, k := range h.Shards() {
			if seen[k] {
				return false
			}
			seen[k] = true
		}
	}
	return len(seen) == testShards && hi-lo <= 1
}

// denyForbidden is the test hubs' join policy: rooms named "forbidden-*"
// refuse everyone, so tests can exercise a refused join.
func denyForbidden(_, room string) error {
	if strings.HasPrefix(room, "forbidden-") {
		return fmt.Errorf("room %s is closed", room)
	}
	return nil
}

func (c *cluster) startEdge(id string, adjust func(*edge.Config)) *edge.Server {
	c.t.Helper()
	b := &cutBroker{Broker: c.newBroker(id)}
	c.cuts = append(c.cuts, b)
	cfg := edge.Config{
		ID:        id,
		Listen:    "127.0.0.1:0",
		JWTSecret: string(testSecret),
		Topology:  c.topology(),
		// Well inside the hubs' 2s edge timeout (startHub).
		Announce: 400 * time.Millisecond,
	}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := edge.New(cfg, b, c.log.With().Str("edge", id).Logger(), prometheus.NewRegistry())
	if err != nil {
		c.t.Fatal(err)
	}
	c.run(id, s.Run, b)
	waitReady(c.t, id, s.Ready())
	c.edges = append(c.edges, s)
	return s
}

func (c *cluster) startTLS() {
	c.t.Helper()
	var urls []string
	for _, e := range c.edges {
		urls = append(urls, "http://"+e.Addr().String())
	}
	cfg := tlstier.Config{
		Listen:         "127.0.0.1:0",
		Edges:          urls,
		CADir:          c.t.TempDir(),
		HealthInterval: 100 * time.Millisecond,
	}
	p, err := tlstier.New(cfg, c.log.With().Str("tier", "tls").Logger(), prometheus.NewRegistry())
	if err != nil {
		c.t.Fatal(err)
	}
	c.run("tls", p.Run, nopBroker{})
	waitReady(c.t, "tls", p.Ready())
	pem, err := os.ReadFile(p.CACertPath())
	if err != nil {
		c.t.Fatal(err)
	}
	c.caPool = x509.NewCertPool()
	if !c.caPool.AppendCertsFromPEM(pem) {
		c.t.Fatal("ca.pem holds no certificate")
	}
	c.tls = p
}

// cutBroker lets a test cut an edge off the broker as if the edge had died:
// nothing it publishes arrives and nothing reaches it, so the hubs stop
// hearing its announcements and never get its goodbyes.
type cutBroker struct {
	broker.Broker
	cut atomic.Bool
}

// crashEdge cuts edge i off the broker.
func (c *cluster) crashEdge(i int) { c.cuts[i].cut.Store(true) }

func (b *cutBroker) PublishBatch(ctx context.Context, exchange string, ms []broker.Message) error {
	if b.cut.Load() {
		return broker.ErrUnavailable
	}
	return b.Broker.PublishBatch(ctx, exchange, ms)
}

func (b *cutBroker) Publish(ctx context.Context, exchange string, m broker.Message) error {
	if b.cut.Load() {
		return broker.ErrUnavailable
	}
	return b.Broker.Publish(ctx, exchange, m)
}

func (b *cutBroker) Bind(ctx context.Context, q, ex, key string) error {
	if b.cut.Load() {
		return broker.ErrUnavailable
	}
	return b.Broker.Bind(ctx, q, ex, key)
}

func (b *cutBroker) Consume(ctx context.Context, spec broker.ConsumeSpec, h broker.Handler) error {
	return b.Broker.Consume(ctx, spec, func(d *broker.Delivery) {
		if !b.cut.Load() {
			h(d)
		}
	})
}

func (b *cutBroker) State() broker.State {
	if b.cut.Load() {
		return broker.State{}
	}
	return b.Broker.State()
}

// nopBroker lets the TLS tier, which has no broker, use cluster.run.
type nopBroker struct{ broker.Broker }

func (nopBroker) Close() error { return nil }

// edgeURL is the ws:// URL of edge i.
func (c *cluster) edgeURL(i int) string { return "ws://" + c.edges[i].Addr().String() + "/ws" }

// tlsURL is the wss:// URL of the TLS tier.
func (c *cluster) tlsURL() string { return "wss://" + c.tls.Addr() + "/ws" }

func (c *cluster) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: c.caPool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// token mints a token for user valid for an hour.
func token(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.Mint(testSecret, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// vhostURL creates a RabbitMQ virtual host for one test, so tests never see
// each other's exchanges and queues, and deletes it afterwards.
func vhostURL(t *testing.T) string {
	t.Helper()
	base := testenv.AMQPURL(t)
	node := os.Getenv("HEARTH_TEST_RABBITMQ_NODE")
	if node == "" {
		// An external broker: no control over vhosts; share its default one.
		return base
	}
	vhost := "hearth-e2e-" + randHex(4)
	ctl := func(args ...string) {
		t.Helper()
		out, err := exec.Command("rabbitmqctl", append([]string{"-n", node, "-q"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	ctl("add_vhost", vhost)
	ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "-n", node, "-q", "delete_vhost", vhost).Run()
	})
	return strings.TrimSuffix(base, "/") + "/" + vhost
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
