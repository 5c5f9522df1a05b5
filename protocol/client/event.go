package client

import (
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// EventKind says what an Event reports.
type EventKind uint8

// Kinds of events.
const (
	// EventConnected: a connection is up and welcomed; Welcome is set.
	// Emitted by Dial and after every successful reconnection, before the
	// rooms are re-joined.
	EventConnected EventKind = iota + 1
	// EventDisconnected: the connection ended. Code and Reason are the
	// edge's close frame (Code 0 when the connection broke without one);
	// Err says why.
	EventDisconnected
	// EventReconnecting: the client waits Delay before connection attempt
	// number Attempt, counted from 1 since the last connection that stayed
	// up for ReconnectMax. Err is the previous attempt's failure, if any.
	EventReconnecting
	// EventRejoined: Room was joined again after a reconnection; Frame is
	// the joined reply (its Seq is the room's sequence number now).
	EventRejoined
	// EventRejoinFailed: Room could not be joined again; Err says why. The
	// client forgot the room; Join it again to retry.
	EventRejoinFailed
	// EventStopped: the client will not reconnect; Err says why. Done is
	// closed right after. Not emitted by Close.
	EventStopped
	// EventOverflow: the Messages buffer was full and a broadcast was
	// dropped; Dropped is the total so far. Emitted once per run of drops.
	EventOverflow
	// EventServerError: an error frame that answers no pending request
	// (id 0, or a request that already timed out); Frame holds it.
	EventServerError
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnecting:
		return "reconnecting"
	case EventRejoined:
		return "rejoined"
	case EventRejoinFailed:
		return "rejoin_failed"
	case EventStopped:
		return "stopped"
	case EventOverflow:
		return "overflow"
	case EventServerError:
		return "server_error"
	}
	return "unknown"
}

// Event is a change of the client's connection state. Which fields are set
// depends on Kind.
type Event struct {
	Kind    EventKind
	Welcome Welcome
	Code    uint16
	Reason  string
	Attempt int
	Delay   time.Duration
	Room    string
	Frame   protocol.Frame
	Dropped uint64
	Err     error
}

// Welcome is what the edge said about a connection in its welcome frame.
type Welcome struct {
	// Conn is the connection's id on its edge.
	Conn string
	// User is the authenticated user the token named.
	User string
	// Heartbeat is the interval of the edge's pings; zero if it sends none.
	Heartbeat time.Duration
}

// Stats are the client's counters since Dial.
type Stats struct {
	// Dropped counts broadcasts dropped because Messages was full.
	Dropped uint64
	// EventsDropped counts events dropped because Events was full.
	EventsDropped uint64
	// Reconnects counts successful reconnections.
	Reconnects uint64
}
