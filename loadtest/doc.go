// Package loadtest is Hearth's load generator: it opens many WebSocket
// connections to edges (directly or through the TLS tier), joins them to
// rooms, publishes at a paced rate, and measures what comes back with HDR
// histograms — end-to-end latency (the send time travels at the start of
// every message body), ack latency and connect latency — while it counts
// every message sent, acknowledged, delivered, lost and duplicated. It also
// samples the CPU time and RSS of the server processes it is told about
// (/proc, no root needed), and measures RabbitMQ's own publish→consume
// ceiling (the amqp-baseline scenario) for comparison.
//
// A run has one coordinator (Runner) and one or more workers. The
// coordinator re-executes its binary as worker processes (`hearth-load
// worker`), each with a share of the connections, because one process may
// hold at most 20,000 open files here; workers speak JSON lines over their
// stdin (commands) and stdout (progress once a second, then the result).
// The coordinator merges histograms and counters, decides when fan-out
// steps stop, prints a progress line a second, and writes a JSON result and
// a self-contained HTML report. Tests run the same workers in-process.
//
// Message accounting is exact and keyed by the hub's per-room sequence
// number, which each ack maps to the publish's unique cmid: a member that
// joined with snapshot S must receive every acknowledged message with
// seq > S exactly once (PROTOCOL.md §5.1). Each member keeps a compact
// tracker (next expected seq plus the gaps it saw); the coordinator checks
// the trackers of every worker against the acknowledged sequence numbers of
// every worker. Members that were disconnected are left out of the loss
// count and reported as disconnects. With Config.Check (-check) each
// connection also keeps a compact log of its publishes, acks, joined reply
// and deliveries, which its worker ships to the coordinator at the end; the
// coordinator replays every worker's logs into one shared/checker.Checker
// and fails the run when its verdict is not OK (check.go).
//
// Concurrency: a worker's connections each have their gws read goroutine,
// which owns the connection's tracker (under the connection's mutex, so the
// final snapshot can read it); one pacing goroutine per worker writes the
// publishes; counters are atomics and histograms are sharded behind
// mutexes. Every run is bounded: each phase has a deadline and the
// coordinator kills workers that outlive the hard deadline.
package loadtest
