// Package hub runs Hearth's chat logic for a set of ingress shards: room
// membership and presence, per-room sequence numbers, and the broadcasts
// and replies that go back to the edges.
//
// Concurrency: each owned shard has one broker consumer, and its handler
// runs on that consumer's goroutine; a shard's rooms are touched by that
// goroutine alone, so room state needs no lock. Shards run in parallel.
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

// Worker is one hub process's shard consumers.
type Worker struct {
	cfg   Config
	hooks Hooks
	log   zerolog.Logger
	b     broker.Broker
	reg   prometheus.Registerer
	stats stats

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
		ready: make(chan struct{}),
	}
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	if err := w.stats.register(reg, cfg.ID); err != nil {
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

// Ready is closed once the worker consumes all its shards.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// AdminAddr returns the admin listener's address, or nil when disabled.
func (w *Worker) AdminAddr() net.Addr {
	if w.adminLn == nil {
		return nil
	}
	return w.adminLn.Addr()
}

// Shards returns the shards this worker owns.
func (w *Worker) Shards() []int {
	var out []int
	for k := 0; k < w.cfg.Topology.NumShards(); k++ {
		if k%w.cfg.Count == w.cfg.Index {
			out = append(out, k)
		}
	}
	return out
}

// Run declares the topology, consumes the owned shards and serves the admin
// endpoints until ctx is done. In-flight envelopes finish; unacknowledged
// ones go back to their queues for the next owner.
func (w *Worker) Run(ctx context.Context) error {
	// Everything Run starts stops when it returns, on every path.
	ctx, cancelRun := context.WithCancel(ctx)
	defer w.wg.Wait()
	defer cancelRun()
	setupCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := topology.Declare(setupCtx, w.b, w.cfg.Topology); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if w.cfg.ListenAdmin != "-" {
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
	}
	consumeCtx, stop := context.WithCancel(ctx)
	defer stop()
	for _, k := range w.Shards() {
		sh := newShard(w, k)
		err := w.b.Consume(consumeCtx, broker.ConsumeSpec{
			Queue:     protocol.ShardQueue(k),
			Exclusive: true,
			Prefetch:  w.cfg.Prefetch,
		}, sh.handle)
		if err != nil {
			return fmt.Errorf("hub: consuming shard %d: %w", k, err)
		}
	}
	w.running.Store(true)
	w.log.Info().Ints("shards", w.Shards()).Msg("hub consuming")
	close(w.ready)
	<-ctx.Done()
	w.running.Store(false)
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

// publish sends one message to the egress exchange and waits for the broker.
func (w *Worker) publish(key string, m broker.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.PublishTimeout)
	defer cancel()
	m.Key = key
	if err := w.b.Publish(ctx, protocol.ExchangeEgress, m); err != nil {
		w.stats.publishFailures.Add(1)
		return fmt.Errorf("publishing to %s: %w", key, err)
	}
	w.stats.published.Add(1)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errEncode = errors.New("hub: encoding frame")
