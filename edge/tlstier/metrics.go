package tlstier

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons recorded in hearth_tls_proxy_errors_total.
const (
	errReasonDial      = "dial"      // the edge could not be connected to
	errReasonHandshake = "handshake" // the edge did not answer the upgrade
	errReasonRefused   = "refused"   // the edge answered 503 (draining)
	errReasonNoEdge    = "no_edge"   // no healthy edge was left to try
)

// noEdgeLabel is the edge label of errors not tied to one edge.
const noEdgeLabel = "none"

// metrics are the tier's Prometheus collectors. Their methods are safe for
// concurrent use (client_golang's collectors are).
type metrics struct {
	active  *prometheus.GaugeVec   // edge
	up      *prometheus.GaugeVec   // edge
	proxied *prometheus.CounterVec // edge
	errors  *prometheus.CounterVec // edge, reason
}

func newMetrics(reg prometheus.Registerer, edges []string) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "tls", Name: "edge_active_connections",
			Help: "WebSocket connections currently proxied to each edge (including upgrades in progress).",
		}, []string{"edge"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "hearth", Subsystem: "tls", Name: "edge_up",
			Help: "1 if the edge receives new connections (its readiness checks pass), else 0.",
		}, []string{"edge"}),
		proxied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hearth", Subsystem: "tls", Name: "proxied_connections_total",
			Help: "WebSocket upgrades completed through each edge.",
		}, []string{"edge"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hearth", Subsystem: "tls", Name: "proxy_errors_total",
			Help: "Failed attempts to proxy an upgrade, by edge and reason (dial, handshake, refused, no_edge).",
		}, []string{"edge", "reason"}),
	}
	// Create the per-edge series up front so dashboards see zeros, not gaps.
	for _, e := range edges {
		m.active.WithLabelValues(e)
		m.up.WithLabelValues(e)
		m.proxied.WithLabelValues(e)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.active, m.up, m.proxied, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tlstier: registering metrics: %w", err)
			}
		}
	}
	return m, nil
}
