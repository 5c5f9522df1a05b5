package hub

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// owner takes and releases shards so that this hub holds its share of the
// assignment computed from the live hubs. Mutual exclusion does not rest
// on the assignment, which hubs may briefly disagree on: shard queues are
// single-active-consumer queues, so RabbitMQ itself delivers a shard to one
// consumer at a time, and a new owner's consumer stays standby until the
// previous one is gone. A released shard's consumer stops after its
// batch in progress (the consumer's OnIdle processes what was collected),
// and closing its channel returns the unacknowledged rest to the queue, in
// order, for the next owner.
type owner struct {
	w *Worker

	mu    sync.Mutex // guards owned
	owned map[int]*ownedShard
}

type ownedShard struct {
	cancel    context.CancelFunc
	stopped   chan struct{}
	releasing bool
}

func newOwner(w *Worker) *owner { return &owner{w: w, owned: make(map[int]*ownedShard)} }

// shards returns the shards whose consumers this hub runs (held or being
// subscribed), sorted.
func (o *owner) shards() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]int, 0, len(o.owned))
	for k, s := range o.owned {
		if !s.releasing {
			out = append(out, k)
		}
	}
	sort.Ints(out)
	return out
}

// reconcile moves toward the assignment for the current live set.
func (o *owner) reconcile() {
	w := o.w
	live := w.hubs.liveWith(w.cfg.ID)
	want := map[int]bool{}
	for _, k := range assign(w.cfg.Topology.NumShards(), live)[w.cfg.ID] {
		want[k] = true
	}
	o.mu.Lock()
	var acquire []int
	for k, s := range o.owned {
		if !want[k] && !s.releasing {
			s.releasing = true
			s.cancel()
			w.log.Info().Int("shard", k).Msg("releasing shard")
		}
	}
	for k := range want {
		if _, ok := o.owned[k]; !ok {
			acquire = append(acquire, k)
		}
	}
	o.mu.Unlock()
	sort.Ints(acquire)
	for _, k := range acquire {
		o.acquire(k)
	}
}

// acquire subscribes to shard k. While another hub still holds the shard,
// the subscription waits as RabbitMQ's standby consumer.
func (o *owner) acquire(k int) {
	w := o.w
	ctx, cancel := context.WithCancel(context.Background())
	s := &ownedShard{cancel: cancel, stopped: make(chan struct{})}
	sh := newShard(w, k)
	o.mu.Lock()
	o.owned[k] = s
	o.mu.Unlock()
	err := w.b.Consume(ctx, broker.ConsumeSpec{
		Queue:    protocol.ShardQueue(k),
		Prefetch: w.cfg.Prefetch,
		// Acks travel together: a shard queue is a quorum queue, where
		// each ack RabbitMQ gets is a Raft command of its own.
		AckDelay: max(0, w.cfg.AckDelay),
		// A (re)subscription may be standby for a while: the shard queue
		// is single-active-consumer. Replay on its first delivery, which
		// comes only once RabbitMQ made this consumer the active one.
		OnStart: sh.invalidate,
		// The handler collects deliveries; a run of them that arrived
		// together is processed as one batch here.
		OnIdle: sh.flush,
		OnStop: func() {
			close(s.stopped)
			o.mu.Lock()
			if o.owned[k] == s {
				delete(o.owned, k)
			}
			o.mu.Unlock()
			w.log.Info().Int("shard", k).Msg("shard released")
		},
	}, sh.handle)
	if err != nil {
		cancel()
		o.mu.Lock()
		delete(o.owned, k)
		o.mu.Unlock()
		if errors.Is(err, broker.ErrUnavailable) {
			return // the broker is away; the next reconcile tries again
		}
		w.log.Warn().Err(err).Int("shard", k).Msg("taking shard")
	}
}

// releaseAll stops every consumer and waits, up to ctx, for them to stop.
func (o *owner) releaseAll(ctx context.Context) {
	o.mu.Lock()
	var waits []chan struct{}
	for _, s := range o.owned {
		s.releasing = true
		s.cancel()
		waits = append(waits, s.stopped)
	}
	o.mu.Unlock()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// tickSlices is how many parts the owned shards are ticked in: every
// EdgeTimeout/3 each shard gets one tick, a slice of them at a time, so
// the ticks of 32 shards do not reach RabbitMQ and the shards together.
const tickSlices = 16

// tick asks the owned shards of one slice (shard number mod tickSlices)
// to check their members' edges.
func (o *owner) tick(slot int) {
	w := o.w
	body, err := protocol.EncodeEnvelope(&protocol.Envelope{V: protocol.EnvelopeVersion, Kind: protocol.KindTick, User: w.cfg.ID})
	if err != nil {
		return
	}
	for _, k := range o.shards() {
		if k%tickSlices != slot {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.PublishTimeout)
		err := w.b.Publish(ctx, protocol.ExchangeIngress, broker.Message{Key: protocol.ShardKey(k), Body: body})
		cancel()
		if err != nil {
			w.log.Debug().Err(err).Int("shard", k).Msg("tick not published")
		}
	}
}

// liveWith returns the live hubs, always including self.
func (l *liveness) liveWith(self string) []string {
	live := l.live()
	for _, id := range live {
		if id == self {
			return live
		}
	}
	live = append(live, self)
	sort.Strings(live)
	return live
}
