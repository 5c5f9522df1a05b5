// Package client is Hearth's Go client: it connects to an edge's /ws
// endpoint (directly or through the TLS tier), speaks the hearth.v1 frames
// of package protocol, matches requests to their replies, delivers room
// broadcasts on a channel, and reconnects on its own.
//
// # Lifecycle
//
// Dial connects and waits for the edge's welcome frame. From then on the
// client owns two kinds of goroutines: one supervisor, which watches the
// connection's heartbeat, reconnects with full-jitter exponential backoff,
// re-joins the rooms the client had joined (resuming each from the last seq
// delivered) and sends the history requests that wait for a timeout, a
// backoff or a full Messages to drain; and one reader per live connection,
// which alone puts frames on Messages. Close stops them all and waits for
// them. The client stops on
// its own (Done is closed, Err says why) when the edge closes the connection
// with a code after which protocol.CloseReconnects says not to reconnect, or
// when a reconnection is refused with HTTP 401 (and TokenFunc has no new
// token) or 403.
//
// # Requests
//
// Join, JoinSince, Leave, Publish, PublishCMID and History are safe for
// concurrent use. Each request carries a fresh request id and waits for the
// reply with that id, for its context, or for RequestTimeout, whichever ends
// first. A request made while the client is not connected, or still waiting
// when the connection drops, fails with ErrDisconnected; retry it once
// EventConnected arrives. Publishes can do that by themselves
// (Config.RetryPublish): the hub de-duplicates client message ids, so a
// publish retried under the same id is acknowledged once, with its original
// seq. An error frame becomes a *RequestError. Typing and MarkRead have no
// reply: they only fail when the frame cannot be sent.
//
// # Receiving
//
// Messages delivers, per joined room, every message after the join point
// exactly once and in seq order, then presence, typing and receipt frames as
// they come. The client keeps the last seq it put on Messages for each room:
//
//   - a message at or below it is a duplicate (a resume overlapping live
//     traffic, a re-broadcast after a hub takeover) and is dropped
//     (Stats.Duplicates);
//   - a message beyond the next one reveals a gap: it is held back (at most
//     Config.HoldLimit per room) while the client asks the room's history
//     for what is missing, then everything is delivered in order;
//   - after a reconnection, every room is re-joined with Since set to that
//     seq, and the joined reply's History — paged through with history
//     requests when more than one reply's worth was missed — is delivered
//     before any later live message;
//   - a fresh Join delivers the room's recent messages (seq ≤ the joined
//     reply's Seq) first, then everything after Seq.
//
// When the room no longer retains the messages that are missing (the
// server says Reset), or the server cannot provide them, the client emits
// EventReset with the room and the last seq it had delivered, and goes on
// with the oldest message still retained: the messages in between are lost
// to this client, and the application knows. There is no other way for the
// per-room seq of delivered messages to jump. Config.OnDeliver tells, per
// frame, whether it came live or was recovered through history; Stats
// counts both.
//
// Messages without seq (integrators' notices), and messages of rooms the
// client did not join through Join or JoinSince, pass through as they come.
//
// The reader never blocks on Messages. A room message that finds it full
// is set aside (Stats.Refetched) and fetched again from the room's history
// once the consumer has drained the buffer to half: a slow consumer gets
// every message late rather than losing some. Other frames are dropped and
// counted (Stats.Dropped). Either way the client logs a warning and emits
// one EventOverflow per run of frames that did not fit. Replies to requests
// do not go through Messages, so a slow consumer never delays them.
//
// Events delivers connection state changes on a small buffered channel with
// the same never-block rule (Stats.EventsDropped); Done and Err are the
// reliable way to learn that the client stopped. Both channels are closed
// when the client stops.
package client
