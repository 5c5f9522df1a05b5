package edge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// errIngressStopped is returned to a frame forwarded after the ingress
// publisher stopped (the edge is shutting down).
var errIngressStopped = errors.New("edge: ingress publisher stopped")

// ingressBatchBytes bounds the envelope bytes one batch collects before it
// is published whatever else is waiting.
const ingressBatchBytes = 256 << 10

// ingress publishes the edge's envelopes to the hubs, one AMQP message per
// shard carrying every envelope that waits for that shard (PROTOCOL.md
// §9.3, envelope batches). A shard with no publish in flight publishes a
// new envelope at once, alone; while one is in flight, the envelopes that
// arrive meanwhile wait for it to be confirmed, or for MaxDelay, or until
// the batch is full, and then go together. So an idle edge adds no delay,
// and a busy one sends fewer, larger messages — never holding an envelope
// back longer than MaxDelay.
//
// Concurrency: run owns shards and the timer; each batch is published on a
// goroutine of its own that answers every request in it and reports back
// on completed.
type ingress struct {
	b         broker.Broker
	exchange  string // protocol.ExchangeIngress
	maxDelay  time.Duration
	maxBatch  int
	timeout   time.Duration
	stats     *stats
	in        chan *ingressReq
	completed chan *ingressShard
	stopped   chan struct{}
	wg        sync.WaitGroup // run and the publishing goroutines

	// Owned by run.
	shards map[string]*ingressShard
	timer  *time.Timer
	armed  bool
}

// ingressReq is one envelope to publish. Each connection reuses its own:
// it has at most one envelope in flight.
type ingressReq struct {
	key  string
	body []byte
	// durable asks for a persistent message: the envelope must survive a
	// broker restart (envelopeDurable).
	durable bool
	done    chan error // capacity 1; receives the publish's outcome
}

// envelopeDurable reports whether an envelope of kind carrying f must be
// published persistent. A client's publish and typing need not: the
// publisher waits for its ack and retries with the same cmid, answered by
// de-duplication (PROTOCOL.md §6.5), and typing is ephemeral. Everything
// else is persistent, above all a disconnect, which nobody would retry: a
// lost one would leave a member behind. On quorum shard queues every
// message is durable anyway; on classic ones (the default, ADR 0004) a
// transient message costs RabbitMQ no disk write.
func envelopeDurable(kind protocol.EnvelopeKind, f *protocol.Frame) bool {
	return kind != protocol.KindClient || (f.Type != protocol.TypePublish && f.Type != protocol.TypeTyping)
}

// ingressShard is one routing key's waiting envelopes. Owned by run.
type ingressShard struct {
	key      string
	reqs     []*ingressReq
	bytes    int
	since    time.Time // arrival of the oldest waiting envelope
	inflight int       // batches published and not yet confirmed
}

func newIngress(b broker.Broker, cfg *Config, st *stats) *ingress {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &ingress{
		b:         b,
		exchange:  protocol.ExchangeIngress,
		maxDelay:  cfg.IngressMaxDelay,
		maxBatch:  cfg.IngressBatch, // at most protocol.MaxBatchEnvelopes (Config.normalize)
		timeout:   cfg.RequestTimeout,
		stats:     st,
		in:        make(chan *ingressReq), // unbuffered: nothing is accepted after run ends
		completed: make(chan *ingressShard, 64),
		stopped:   make(chan struct{}),
		shards:    make(map[string]*ingressShard),
		timer:     t,
	}
}

// start runs the publisher until ctx is done; stop waits for it and for
// every batch in flight.
func (in *ingress) start(ctx context.Context) {
	in.wg.Add(1)
	go in.run(ctx)
}

func (in *ingress) wait() { in.wg.Wait() }

// publish sends one envelope to the shard key and returns once the broker
// confirmed it (or the error). It blocks the caller only: each connection
// has one envelope in flight, so a connection's frames reach the hub in the
// order it sent them.
func (in *ingress) publish(r *ingressReq) error {
	select {
	case in.in <- r:
	case <-in.stopped:
		return errIngressStopped
	}
	return <-r.done
}

func (in *ingress) run(ctx context.Context) {
	defer in.wg.Done()
	defer close(in.stopped)
	for {
		select {
		case r := <-in.in:
			in.add(r)
		case sh := <-in.completed:
			sh.inflight--
			if len(sh.reqs) > 0 {
				in.flush(sh)
			}
		case <-in.timer.C:
			in.armed = false
			in.flushOverdue(time.Now())
		case <-ctx.Done():
			for _, sh := range in.shards {
				if len(sh.reqs) > 0 {
					in.flush(sh)
				}
			}
			return
		}
	}
}

func (in *ingress) add(r *ingressReq) {
	sh := in.shards[r.key]
	if sh == nil {
		sh = &ingressShard{key: r.key}
		in.shards[r.key] = sh
	}
	sh.reqs = append(sh.reqs, r)
	sh.bytes += len(r.body)
	switch {
	case sh.inflight == 0, in.maxDelay <= 0, len(sh.reqs) >= in.maxBatch, sh.bytes >= ingressBatchBytes:
		in.flush(sh)
	case len(sh.reqs) == 1:
		sh.since = time.Now()
		if !in.armed {
			in.armed = true
			in.timer.Reset(in.maxDelay)
		}
	}
}

// flushOverdue publishes the batches that waited MaxDelay and arms the
// timer for the oldest of the rest.
func (in *ingress) flushOverdue(now time.Time) {
	var next time.Duration
	for _, sh := range in.shards {
		if len(sh.reqs) == 0 {
			continue
		}
		wait := in.maxDelay - now.Sub(sh.since)
		if wait <= 0 {
			in.flush(sh)
		} else if next == 0 || wait < next {
			next = wait
		}
	}
	if next > 0 {
		in.armed = true
		in.timer.Reset(next)
	}
}

// flush publishes sh's waiting envelopes as one message, on a goroutine.
func (in *ingress) flush(sh *ingressShard) {
	reqs := sh.reqs
	sh.reqs, sh.bytes = nil, 0
	sh.inflight++
	in.wg.Add(1)
	go in.send(sh, reqs)
}

// send publishes reqs to sh's key and answers each of them.
func (in *ingress) send(sh *ingressShard, reqs []*ingressReq) {
	defer in.wg.Done()
	body := reqs[0].body
	durable := false
	for _, r := range reqs {
		durable = durable || r.durable
	}
	if len(reqs) > 1 {
		parts := make([][]byte, len(reqs))
		n := 16
		for i, r := range reqs {
			parts[i] = r.body
			n += len(r.body) + 5
		}
		body = protocol.AppendEnvelopeBatch(make([]byte, 0, n), parts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.timeout)
	err := in.b.Publish(ctx, in.exchange, broker.Message{Key: sh.key, Body: body, Persistent: durable})
	cancel()
	in.stats.ingressMessages.Add(1)
	for _, r := range reqs {
		r.done <- err
	}
	select {
	case in.completed <- sh:
	case <-in.stopped:
	}
}
