package hub

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type stats struct {
	processed       atomic.Uint64
	badEnvelopes    atomic.Uint64
	refused         atomic.Uint64
	messages        atomic.Uint64
	published       atomic.Uint64
	publishFailures atomic.Uint64
	rooms           atomic.Int64
}

// Stats is a snapshot of a worker's counters.
type Stats struct {
	Processed, BadEnvelopes, Refused, Messages, Published, PublishFailures uint64
	Rooms                                                                  int64
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	s := &w.stats
	return Stats{
		Processed: s.processed.Load(), BadEnvelopes: s.badEnvelopes.Load(), Refused: s.refused.Load(),
		Messages: s.messages.Load(), Published: s.published.Load(), PublishFailures: s.publishFailures.Load(),
		Rooms: s.rooms.Load(),
	}
}

func (s *stats) register(reg prometheus.Registerer, id string) error {
	labels := prometheus.Labels{"hub_id": id}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hearth", Subsystem: "hub", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("envelopes_total", "Envelopes processed.", &s.processed),
		counter("bad_envelopes_total", "Envelopes dropped as malformed or misrouted.", &s.badEnvelopes),
		counter("refused_total", "Requests answered with an error frame.", &s.refused),
		counter("messages_total", "Room messages sequenced.", &s.messages),
		counter("published_total", "Messages published to the egress exchange.", &s.published),
		counter("publish_failures_total", "Egress publishes the broker did not confirm.", &s.publishFailures),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "hub", Name: "rooms", Help: "Rooms held in memory.", ConstLabels: labels,
		}, func() float64 { return float64(s.rooms.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
