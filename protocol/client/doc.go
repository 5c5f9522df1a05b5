// Package client is Hearth's Go client: it connects to an edge's /ws
// endpoint (directly or through the TLS tier), speaks the hearth.v1 frames
// of package protocol, matches requests to their replies, delivers room
// broadcasts on a channel, and reconnects on its own.
//
// # Lifecycle
//
// Dial connects and waits for the edge's welcome frame. From then on the
// client owns two kinds of goroutines: one supervisor, which watches the
// connection's heartbeat, reconnects with full-jitter exponential backoff
// and re-joins the rooms the client had joined, and one reader per live
// connection. Close stops them all and waits for them. The client stops on
// its own (Done is closed, Err says why) when the edge closes the connection
// with a code after which protocol.CloseReconnects says not to reconnect, or
// when a reconnection is refused with HTTP 401 (and TokenFunc has no new
// token) or 403.
//
// # Requests
//
// Join, Leave, Publish and PublishCMID are safe for concurrent use. Each
// request carries a fresh request id and waits for the reply with that id,
// for its context, or for RequestTimeout, whichever ends first. A request
// made while the client is not connected, or still waiting when the
// connection drops, fails with ErrDisconnected; retry it once EventConnected
// arrives (use PublishCMID with the same id to retry a publish without
// risking a duplicate: the hub de-duplicates client message ids). An error
// frame becomes a *RequestError.
//
// # Receiving
//
// Messages delivers message and presence frames in the order the edge sent
// them. The reader never blocks on it: when its buffer (Config.RecvBuffer) is
// full, the frame is dropped and counted (Stats.Dropped), the client logs a
// warning and emits one EventOverflow per run of drops. A consumer detects
// what it missed from the per-room sequence numbers. Replies to requests do
// not go through Messages, so a slow consumer never delays them.
//
// Events delivers connection state changes on a small buffered channel with
// the same never-block rule (Stats.EventsDropped); Done and Err are the
// reliable way to learn that the client stopped. Both channels are closed
// when the client stops.
package client
