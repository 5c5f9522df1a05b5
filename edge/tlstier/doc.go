// Package tlstier is Hearth's TLS tier: a separate process in front of the
// edges that terminates TLS with certmagic and proxies WebSocket upgrades to
// a pool of edge processes.
//
// It owns:
//   - certificates (certs.go, localca.go): a persisted local CA for
//     development, static files, or ACME (optionally on demand) through
//     certmagic, whose zap logs are bridged to zerolog (zapbridge.go);
//   - the edge pool (pool.go): least-connections selection over the healthy
//     edges, ties broken round-robin, and the per-edge connection counts;
//   - active health checks (health.go) against each edge's /readyz, which
//     is how a draining edge stops receiving new connections;
//   - the upgrade proxy (forward.go): one hijacked client connection spliced
//     to one edge connection, with X-Forwarded-* headers set, and the
//     tracker (tracker.go) that lets shutdown wait for and close them;
//   - metrics, registered on an injected prometheus.Registerer (metrics.go).
//
// Concurrency rules. New starts nothing. Run owns every goroutine the
// package starts (health checkers, the HTTP servers, the certmagic cache's
// maintenance, one copier per proxied connection) and returns only after all
// of them have exited, so a Proxy that has returned from Run holds no
// resources. The one exception is acme mode: certmagic obtains certificates
// on its own job queue, which stops with Run's context but cannot be
// awaited. Run may be called once. The pool's state (health, connection
// counts, round-robin cursor) is guarded by pool.mu, which is held only for
// O(edges) work and never across I/O. Proxied bytes never take a lock: each
// proxied connection is copied by two goroutines that touch only their own
// sockets.
package tlstier
