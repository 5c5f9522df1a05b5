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
	// EventRejoined: Room was joined again after a reconnection, resuming
	// from the last seq delivered; Frame is the joined reply (its Seq is
	// the room's sequence number now; the messages missed meanwhile are
	// delivered through Messages, see EventReset for when they cannot be).
	EventRejoined
	// EventRejoinFailed: Room could not be joined again; Err says why. The
	// client forgot the room; Join it again to retry.
	EventRejoinFailed
	// EventStopped: the client will not reconnect; Err says why. Done is
	// closed right after. Not emitted by Close.
	EventStopped
	// EventOverflow: Messages was full: a frame was dropped, or a room
	// message set aside to be fetched again. Dropped is Stats.Dropped so
	// far. Emitted once per run of frames that did not fit.
	EventOverflow
	// EventServerError: an error frame that answers no pending request
	// (id 0, or a request that already timed out); Frame holds it.
	EventServerError
	// EventReset: the client cannot deliver every message of Room after
	// Seq, the last seq it had delivered there: the room no longer retains
	// them (the joined or history reply said Reset, or the room's sequence
	// restarted), or the server answered a gap with nothing, or refused to
	// fill it. The messages between Seq and the next one delivered for
	// Room are lost to this client. Delivery goes on from the oldest
	// message still retained. Frame is the reply that told (without its
	// History, which is delivered through Messages). Emitted before that
	// next message is put on Messages.
	EventReset
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
	case EventReset:
		return "reset"
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
	Seq     uint64
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
	// Dropped counts frames lost because Messages was full: presence,
	// typing, receipts, messages without seq or of rooms not joined
	// through this client, and the recent history of a fresh join. Room
	// messages are not lost this way: see Refetched.
	Dropped uint64
	// Refetched counts room messages that found Messages full and were set
	// aside; the client fetches them again from the room's history once
	// the consumer has caught up, so they are delivered late, not lost.
	Refetched uint64
	// Recovered counts room messages delivered through a joined reply's
	// History or a history request (OnDeliver's recovered).
	Recovered uint64
	// Duplicates counts room messages dropped because their seq had
	// already been delivered (a resume overlapping live traffic, a hub
	// re-broadcasting after a takeover).
	Duplicates uint64
	// Fetches counts the requests the client sent on its own to fill gaps
	// and to page through what it missed.
	Fetches uint64
	// Resets counts EventReset.
	Resets uint64
	// EventsDropped counts events dropped because Events was full.
	EventsDropped uint64
	// Reconnects counts successful reconnections.
	Reconnects uint64
}
