package protocol

import "strconv"

// ErrorCode is the code of an error frame. The numbers follow HTTP's
// meaning where one fits, so they read familiar in logs.
type ErrorCode uint16

// Error codes. Retry says whether sending the same request again later can
// succeed; none of them closes the connection.
const (
	// CodeBadFrame: the message was not a MessagePack map of a frame. Retry: no.
	CodeBadFrame ErrorCode = 400
	// CodeForbidden: the user may not do this (for example join a private room). Retry: no.
	CodeForbidden ErrorCode = 403
	// CodeNotMember: publish, history or read for a room the connection has not joined. Retry: after joining.
	CodeNotMember ErrorCode = 404
	// CodeUnknownType: the frame type is not one a client may send. Retry: no.
	CodeUnknownType ErrorCode = 405
	// CodeTooLarge: the body exceeds the edge's limit. Retry: no.
	CodeTooLarge ErrorCode = 413
	// CodeMissingField: a field the frame type requires is absent. Retry: no.
	CodeMissingField ErrorCode = 420
	// CodeInvalidRoom: the room name breaks the identifier rules. Retry: no.
	CodeInvalidRoom ErrorCode = 422
	// CodeTooManyRooms: the connection has joined as many rooms as allowed. Retry: after leaving one.
	CodeTooManyRooms ErrorCode = 423
	// CodeRateLimited: the connection sends faster than allowed. Retry: yes, slower.
	CodeRateLimited ErrorCode = 429
	// CodeInternal: a server fault. Retry: yes.
	CodeInternal ErrorCode = 500
	// CodeUnavailable: the broker or the room's hub is unreachable or
	// overloaded; the request was not processed. Retry: yes, with backoff.
	CodeUnavailable ErrorCode = 503
)

// Retryable reports whether a client may repeat the failed request.
func (c ErrorCode) Retryable() bool {
	switch c {
	case CodeRateLimited, CodeInternal, CodeUnavailable, CodeNotMember, CodeTooManyRooms:
		return true
	}
	return false
}

// String returns the code's name as PROTOCOL.md spells it.
func (c ErrorCode) String() string {
	switch c {
	case CodeBadFrame:
		return "bad_frame"
	case CodeForbidden:
		return "forbidden"
	case CodeNotMember:
		return "not_member"
	case CodeUnknownType:
		return "unknown_type"
	case CodeTooLarge:
		return "too_large"
	case CodeMissingField:
		return "missing_field"
	case CodeInvalidRoom:
		return "invalid_room"
	case CodeTooManyRooms:
		return "too_many_rooms"
	case CodeRateLimited:
		return "rate_limited"
	case CodeInternal:
		return "internal"
	case CodeUnavailable:
		return "unavailable"
	}
	return "code_" + strconv.Itoa(int(c))
}

// WebSocket close codes an edge sends. Clients reconnect (with full-jitter
// backoff) after every code except the ones marked "do not reconnect".
const (
	// CloseNormal: the client asked to close. Do not reconnect.
	CloseNormal uint16 = 1000
	// CloseGoingAway: the edge is draining (SIGTERM) or the client's edge
	// became unhealthy. Reconnect; the reason carries a hint, see DrainReason.
	CloseGoingAway uint16 = 1001
	// CloseProtocolError: the client broke the WebSocket protocol (for
	// example sent a text frame). Do not reconnect without fixing the client.
	CloseProtocolError uint16 = 1002
	// CloseInvalidData: a text message or close reason that is not valid
	// UTF-8. Reconnect, but it is a client bug: send binary frames.
	CloseInvalidData uint16 = 1007
	// ClosePolicy: a policy violation such as repeated rate limiting. Reconnect after a delay.
	ClosePolicy uint16 = 1008
	// CloseTooBig: a message exceeded the edge's size limit. Do not resend it; reconnect.
	CloseTooBig uint16 = 1009
	// CloseInternal: a server fault. Reconnect.
	CloseInternal uint16 = 1011
	// CloseSlowConsumer: the client read too slowly and its send queue
	// overflowed; messages were dropped for it. Reconnect and resume.
	CloseSlowConsumer uint16 = 4001
	// CloseHeartbeat: no pong arrived within the heartbeat timeout. Reconnect.
	CloseHeartbeat uint16 = 4002
	// CloseTokenExpired: the connection's token expired. Reconnect with a new token.
	CloseTokenExpired uint16 = 4003
)

// CloseReconnects reports whether a client should reconnect after code.
func CloseReconnects(code uint16) bool {
	switch code {
	case CloseNormal, CloseProtocolError:
		return false
	}
	return true
}

// DrainReason is the close reason an edge sends with CloseGoingAway when it
// drains: the client should reconnect after a random delay in [0, ms].
func DrainReason(ms int) string { return "reconnect=" + strconv.Itoa(ms) }
