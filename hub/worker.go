// Package hub runs Hearth's chat logic for the ingress shards it owns: room
// membership and presence, per-room sequence numbers, history, idempotent
// publish, read receipts and typing, and the broadcasts and replies that go
// back to the edges.
//
// Hubs need no index or count: they announce themselves on the control
// exchange, compute the same balanced assignment of shards from the live
// set, and take shards through single-active-consumer queues, so RabbitMQ
// guarantees that one hub at a time processes a shard (docs/adr/0001). A shard's state
// lives in its stream, hearth.state.<n>, and is replayed by each new owner.
//
// Concurrency: each owned shard has one broker consumer, and its handler
// and hooks run on that consumer's goroutine; a shard's rooms are touched
// by that goroutine alone, so room state needs no lock. The handler
// collects the deliveries that arrive together and the consumer's OnIdle
// processes them as one batch (shard.go). Shards run in parallel. The
// ownership loop runs on Run's goroutine.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// Hooks let an operator add policy in Go. Nil fields allow everything.
type Hooks struct {
	// Join decides whether user may join room; an error refuses the join
	// with CodeForbidden and the error's text.
	Join func(user, room string) error
	// Publish decides whether user may publish body to room.
	Publish func(user, room string, body []byte) error
}

// Worker is one hub process.
type Worker struct {
	cfg   Config
	hooks Hooks
	log   zerolog.Logger
	b     broker.Broker
	stats stats
	state *stateLog
	hubs  *liveness
	edges *liveness
	owner *owner

	admin   http.Handler
	adminLn net.Listener
	ready   chan struct{}
	running atomic.Bool

	wg sync.WaitGroup
}

// New validates cfg and builds a worker on broker b. reg receives metrics;
// nil means a private registry served on the admin listener.
func New(cfg Config, hooks Hooks, b broker.Broker, log zerolog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:   cfg,
		hooks: hooks,
		log:   log.With().Str("hub_id", cfg.ID).Logger(),
		b:     b,
		state: &stateLog{log: log.With().Str("hub_id", cfg.ID).Logger(), b: b, maxBytes: cfg.StateBytes, segment: cfg.StateBytes / 8},
		hubs:  newLiveness(cfg.HubTimeout),
		edges: newLiveness(cfg.EdgeTimeout),
		ready: make(chan struct{}),
	}
	w.owner = newOwner(w)
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	if err := w.stats.register(reg, w); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", w.serveReady)
	if gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	w.admin = mux
	return w, nil
}

// ID returns the hub's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Ready is closed once the worker has declared its topology and joined the
// other hubs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// AdminAddr returns the admin listener's address, or nil when disabled.
func (w *Worker) AdminAddr() net.Addr {
	if w.adminLn == nil {
		return nil
	}
	return w.adminLn.Addr()
}

// Shards returns the shards this worker owns or is taking.
func (w *Worker) Shards() []int { return w.owner.shards() }

func (w *Worker) limits() limits {
	shards := w.cfg.Topology.NumShards()
	return limits{
		historyMessages:   w.cfg.HistoryMessages,
		historyBytes:      w.cfg.HistoryBytes,
		dedupWindow:       w.cfg.DedupWindow,
		shardHistoryBytes: max(1, w.cfg.HistoryTotalBytes/shards),
		shardDedup:        max(1, w.cfg.DedupTotal/shards),
	}
}

// Run declares the topology, joins the other hubs and keeps this hub's
// share of the shards until ctx is done. Then it announces it is leaving
// and releases its shards: the batches in progress finish, unacknowledged
// envelopes go back to their queues for the next owner.
func (w *Worker) Run(ctx context.Context) error {
	// Everything Run starts stops when it returns, on every path.
	ctx, cancelRun := context.WithCancel(ctx)
	defer w.wg.Wait()
	defer cancelRun()
	if err := w.setup(ctx); err != nil {
		return err
	}
	if w.cfg.ListenAdmin != "-" {
		if err := w.serveAdmin(ctx); err != nil {
			return err
		}
	}
	w.running.Store(true)
	w.heartbeat(false)
	close(w.ready)
	w.log.Info().Msg("hub running")

	reconcile := time.NewTicker(250 * time.Millisecond)
	defer reconcile.Stop()
	beat := time.NewTicker(w.cfg.HubHeartbeat)
	defer beat.Stop()
	tick := time.NewTicker(max(w.cfg.EdgeTimeout/3/tickSlices, time.Millisecond))
	defer tick.Stop()
	var tickSlot int
	for {
		select {
		case <-ctx.Done():
			w.running.Store(false)
			w.heartbeat(true)
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			w.owner.releaseAll(sctx)
			cancel()
			w.log.Info().Msg("hub stopped")
			return nil
		case <-reconcile.C:
			if !w.b.State().Connected {
				// Deaf to the control exchange: keep everyone's standing
				// until the control consumer is back (its OnStart).
				w.hubs.stopListening()
				w.edges.stopListening()
				continue
			}
			w.owner.reconcile()
		case <-beat.C:
			w.heartbeat(false)
		case <-tick.C:
			w.owner.tick(tickSlot)
			tickSlot = (tickSlot + 1) % tickSlices
		}
	}
}

func (w *Worker) setup(ctx context.Context) error {
	setupCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := topology.Declare(setupCtx, w.b, w.cfg.Topology); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	for n := 0; n < w.cfg.Topology.NumShards(); n++ {
		if err := w.state.declare(setupCtx, n); err != nil {
			return fmt.Errorf("hub: declaring state stream %d: %w", n, err)
		}
	}
	q := "hearth.hub." + w.cfg.ID + ".control"
	if err := w.b.DeclareQueue(setupCtx, broker.QueueSpec{Name: q, Exclusive: true, MaxLength: 10000, Overflow: broker.DropHead}); err != nil {
		return fmt.Errorf("hub: declaring control queue: %w", err)
	}
	for _, pattern := range []string{protocol.HubHeartbeatKey("*"), protocol.EdgeHeartbeatKey("*")} {
		if err := w.b.Bind(setupCtx, q, protocol.ExchangeControl, pattern); err != nil {
			return fmt.Errorf("hub: binding control queue: %w", err)
		}
	}
	err := w.b.Consume(ctx, broker.ConsumeSpec{Queue: q, AutoAck: true, Exclusive: true, OnStart: func() error {
		// Announcements sent while this hub was not listening (a broker
		// restart) are lost: silence from before now proves nothing.
		w.hubs.restart()
		w.edges.restart()
		return nil
	}}, w.onControl)
	if err != nil {
		return fmt.Errorf("hub: consuming control queue: %w", err)
	}
	return nil
}

// onControl records a hub's or an edge's liveness announcement.
func (w *Worker) onControl(d *broker.Delivery) {
	h, err := protocol.DecodeHeartbeat(d.Body)
	if err != nil {
		w.log.Debug().Err(err).Msg("bad heartbeat")
		return
	}
	switch {
	case d.Key == protocol.HubHeartbeatKey(h.ID):
		w.hubs.heard(h.ID, h.Incarnation, h.Leaving)
	case d.Key == protocol.EdgeHeartbeatKey(h.ID):
		w.edges.heard(h.ID, h.Incarnation, h.Leaving)
	}
}

// heartbeat announces this hub to the others.
func (w *Worker) heartbeat(leaving bool) {
	body, err := protocol.EncodeHeartbeat(&protocol.Heartbeat{ID: w.cfg.ID, Leaving: leaving})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.HubHeartbeat)
	defer cancel()
	if err := w.b.Publish(ctx, protocol.ExchangeControl, broker.Message{Key: protocol.HubHeartbeatKey(w.cfg.ID), Body: body}); err != nil {
		w.log.Debug().Err(err).Msg("heartbeat not published")
	}
}

func (w *Worker) serveAdmin(ctx context.Context) error {
	ln, err := net.Listen("tcp", w.cfg.ListenAdmin)
	if err != nil {
		return fmt.Errorf("hub: admin listen: %w", err)
	}
	w.adminLn = ln
	hs := &http.Server{Handler: w.admin, ReadHeaderTimeout: 10 * time.Second}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		_ = hs.Serve(ln)
	}()
	go func() {
		defer w.wg.Done()
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	return nil
}

func (w *Worker) serveReady(rw http.ResponseWriter, _ *http.Request) {
	st := w.b.State()
	if !w.running.Load() || !st.Connected {
		http.Error(rw, "not ready", http.StatusServiceUnavailable)
		return
	}
	_, _ = rw.Write([]byte("ready\n"))
}

// authorizeJoin applies the operator's join hook.
func (w *Worker) authorizeJoin(user, room string) error {
	if h := w.hooks.Join; h != nil {
		return h(user, room)
	}
	return nil
}

// publishBatch sends msgs to the egress exchange, in order, and waits for
// the broker to confirm them all.
func (w *Worker) publishBatch(msgs []broker.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.PublishTimeout)
	defer cancel()
	if err := w.b.PublishBatch(ctx, protocol.ExchangeEgress, msgs); err != nil {
		w.stats.publishFailures.Add(uint64(len(msgs)))
		return fmt.Errorf("publishing %d messages to %s: %w", len(msgs), protocol.ExchangeEgress, err)
	}
	w.stats.published.Add(uint64(len(msgs)))
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errEncode = errors.New("hub: encoding frame")
