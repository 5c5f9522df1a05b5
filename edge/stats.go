package edge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the edge's counters: atomics on the hot path, read by
// Prometheus through CounterFunc and GaugeFunc.
type stats struct {
	connections        atomic.Int64
	framesIn           atomic.Uint64
	framesForwarded    atomic.Uint64
	ingressMessages    atomic.Uint64
	errorsSent         atomic.Uint64
	publishFailures    atomic.Uint64
	rejectedHandshakes atomic.Uint64
	roomMessages       atomic.Uint64
	userMessages       atomic.Uint64
	edgeMessages       atomic.Uint64
	unmatched          atomic.Uint64
	deliveries         atomic.Uint64
	slowConsumers      atomic.Uint64
	heartbeatTimeouts  atomic.Uint64
	bytesOut           atomic.Uint64
	readWakeups        atomic.Uint64
}

// Stats is a snapshot of an edge's counters.
type Stats struct {
	Connections     int64
	FramesIn        uint64
	FramesForwarded uint64
	// IngressMessages counts the AMQP messages that carried the forwarded
	// frames (several per message when they arrive together).
	IngressMessages    uint64
	ErrorsSent         uint64
	PublishFailures    uint64
	RejectedHandshakes uint64
	// RoomMessages counts broker messages received for room keys.
	RoomMessages uint64
	UserMessages uint64
	EdgeMessages uint64
	// Unmatched counts broker messages no local connection wanted.
	Unmatched uint64
	// Deliveries counts frames queued to connections by fan-out and replies.
	Deliveries        uint64
	SlowConsumers     uint64
	HeartbeatTimeouts uint64
	BytesOut          uint64
	// ReadWakeups counts the times the epoll set found a socket readable
	// and started a reader for it (zero when reading with a goroutine per
	// connection).
	ReadWakeups uint64
	BoundKeys   int
}

// Stats returns the edge's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Connections:        st.connections.Load(),
		FramesIn:           st.framesIn.Load(),
		FramesForwarded:    st.framesForwarded.Load(),
		IngressMessages:    st.ingressMessages.Load(),
		ErrorsSent:         st.errorsSent.Load(),
		PublishFailures:    st.publishFailures.Load(),
		RejectedHandshakes: st.rejectedHandshakes.Load(),
		RoomMessages:       st.roomMessages.Load(),
		UserMessages:       st.userMessages.Load(),
		EdgeMessages:       st.edgeMessages.Load(),
		Unmatched:          st.unmatched.Load(),
		Deliveries:         st.deliveries.Load(),
		SlowConsumers:      st.slowConsumers.Load(),
		HeartbeatTimeouts:  st.heartbeatTimeouts.Load(),
		BytesOut:           st.bytesOut.Load(),
		ReadWakeups:        st.readWakeups.Load(),
		BoundKeys:          s.binder.count(),
	}
}

func (st *stats) register(reg prometheus.Registerer, s *Server) error {
	labels := prometheus.Labels{"edge_id": s.cfg.ID}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hearth", Subsystem: "edge", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "edge", Name: "connections", Help: "Open client connections.", ConstLabels: labels,
		}, func() float64 { return float64(st.connections.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "edge", Name: "bound_keys", Help: "Egress routing keys the edge queue is bound to.", ConstLabels: labels,
		}, func() float64 { return float64(s.binder.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "edge", Name: "broker_connected", Help: "1 while the broker connection is up.", ConstLabels: labels,
		}, func() float64 {
			if s.b.State().Connected {
				return 1
			}
			return 0
		}),
		counter("frames_in_total", "Frames received from clients.", &st.framesIn),
		counter("frames_forwarded_total", "Client frames published to the ingress exchange.", &st.framesForwarded),
		counter("ingress_messages_total", "AMQP messages published to the ingress exchange; each carries one or more forwarded frames.", &st.ingressMessages),
		counter("errors_sent_total", "Error frames sent to clients.", &st.errorsSent),
		counter("publish_failures_total", "Ingress publishes the broker did not confirm.", &st.publishFailures),
		counter("rejected_handshakes_total", "WebSocket requests refused before the upgrade (401, 403, 400).", &st.rejectedHandshakes),
		counter("room_messages_total", "Broker messages received for room keys.", &st.roomMessages),
		counter("user_messages_total", "Broker messages received for user keys.", &st.userMessages),
		counter("edge_messages_total", "Broker messages addressed to this edge.", &st.edgeMessages),
		counter("unmatched_messages_total", "Broker messages no local connection wanted.", &st.unmatched),
		counter("deliveries_total", "Frames queued to client connections.", &st.deliveries),
		counter("slow_consumer_closes_total", "Connections closed because their send queue overflowed.", &st.slowConsumers),
		counter("heartbeat_timeouts_total", "Connections closed for missing heartbeats.", &st.heartbeatTimeouts),
		counter("bytes_out_total", "Bytes written to client sockets.", &st.bytesOut),
		counter("read_wakeups_total", "Readable sockets the epoll set handed to a reader.", &st.readWakeups),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
