package hub

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type stats struct {
	processed       atomic.Uint64
	batches         atomic.Uint64
	badEnvelopes    atomic.Uint64
	refused         atomic.Uint64
	messages        atomic.Uint64
	published       atomic.Uint64
	publishFailures atomic.Uint64
	takeovers       atomic.Uint64
	snapshots       atomic.Uint64
	duplicates      atomic.Uint64
}

// Stats is a snapshot of a worker's counters.
type Stats struct {
	Processed, BadEnvelopes, Refused, Messages, Published, PublishFailures uint64
	// Batches counts the batches of envelopes a shard processed and
	// acknowledged together.
	Batches uint64
	// Takeovers counts shard state replays.
	Takeovers uint64
	Snapshots uint64
	// Duplicates counts retried publishes answered from the de-duplication window.
	Duplicates uint64
	// Shards is the number of shards owned.
	Shards int
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	s := &w.stats
	return Stats{
		Processed: s.processed.Load(), Batches: s.batches.Load(), BadEnvelopes: s.badEnvelopes.Load(), Refused: s.refused.Load(),
		Messages: s.messages.Load(), Published: s.published.Load(), PublishFailures: s.publishFailures.Load(),
		Takeovers: s.takeovers.Load(), Snapshots: s.snapshots.Load(),
		Duplicates: s.duplicates.Load(), Shards: len(w.owner.shards()),
	}
}

func (s *stats) register(reg prometheus.Registerer, w *Worker) error {
	labels := prometheus.Labels{"hub_id": w.cfg.ID}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hearth", Subsystem: "hub", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("envelopes_total", "Envelopes processed.", &s.processed),
		counter("batches_total", "Batches of envelopes processed and acknowledged together.", &s.batches),
		counter("bad_envelopes_total", "Envelopes dropped as malformed or misrouted.", &s.badEnvelopes),
		counter("refused_total", "Requests answered with an error frame.", &s.refused),
		counter("messages_total", "Room messages sequenced.", &s.messages),
		counter("published_total", "Messages published to the egress exchange.", &s.published),
		counter("publish_failures_total", "Messages to the egress exchange in batches the broker did not confirm.", &s.publishFailures),
		counter("takeovers_total", "Shard states replayed on taking a shard.", &s.takeovers),
		counter("snapshots_total", "Shard state snapshots written.", &s.snapshots),
		counter("duplicate_publishes_total", "Retried publishes answered from the de-duplication window.", &s.duplicates),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "hub", Name: "shards", Help: "Shards this hub owns.", ConstLabels: labels,
		}, func() float64 { return float64(len(w.owner.shards())) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
