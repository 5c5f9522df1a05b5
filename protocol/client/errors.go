package client

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/hearth-gateway/hearth/protocol"
)

// Errors of the client. Handshake failures are *HandshakeError values that
// unwrap to ErrUnauthorized or ErrForbidden where one applies.
var (
	// ErrUnauthorized: the edge refused the token (HTTP 401).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden: the edge refused the connection, for example for its Origin (HTTP 403).
	ErrForbidden = errors.New("client: forbidden")
	// ErrDisconnected: the request could not be answered because the
	// client was not connected or the connection dropped. Retry it later.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrClosed: the client was closed or stopped; it will not reconnect.
	ErrClosed = errors.New("client: closed")
	// ErrTimeout: no reply arrived within Config.RequestTimeout.
	ErrTimeout = errors.New("client: request timed out")
	// ErrHeartbeatTimeout: nothing arrived from the edge (no ping, no
	// frame) for about two and a half heartbeat intervals; the client
	// dropped the connection and reconnects.
	ErrHeartbeatTimeout = errors.New("client: heartbeat timeout")
	// ErrNoWelcome: the connection closed before the edge's welcome frame.
	ErrNoWelcome = errors.New("client: connection closed before welcome")
	// ErrUnexpectedReply: the edge answered a request with a frame of the
	// wrong type or for another message id.
	ErrUnexpectedReply = errors.New("client: unexpected reply")
)

// HandshakeError is a WebSocket upgrade the edge answered with an HTTP
// status other than 101.
type HandshakeError struct {
	// URL is the endpoint without its query (which may hold a token).
	URL string
	// StatusCode is the HTTP status code, Status its text ("401 Unauthorized").
	StatusCode int
	Status     string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("client: handshake with %s: HTTP %s", e.URL, e.Status)
}

// Unwrap returns ErrUnauthorized for 401, ErrForbidden for 403, else nil.
func (e *HandshakeError) Unwrap() error {
	switch e.StatusCode {
	case 401:
		return ErrUnauthorized
	case 403:
		return ErrForbidden
	}
	return nil
}

// RequestError is an error frame the edge sent in reply to a request.
type RequestError struct {
	Code protocol.ErrorCode
	Text string
	// Room is the room the request named, when the edge echoed it.
	Room string
}

func (e *RequestError) Error() string {
	s := e.Code.String() + " (" + strconv.Itoa(int(e.Code)) + ")"
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// Retryable reports whether sending the same request again may succeed
// (see protocol.ErrorCode.Retryable).
func (e *RequestError) Retryable() bool { return e.Code.Retryable() }

// CloseError is the close frame the edge ended a connection with.
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: edge closed the connection with code %d", e.Code)
	}
	return fmt.Sprintf("client: edge closed the connection with code %d (%s)", e.Code, e.Reason)
}
