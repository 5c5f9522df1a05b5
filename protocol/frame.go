package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// FrameType identifies a frame. Types below 64 are sent by clients, types
// from 64 up by the server.
type FrameType uint8

// Client → server frame types.
const (
	// TypeJoin asks to join Room. Required: Room. Every request should carry
	// a non-zero ID, which its reply echoes; with none, the reply's ID is 0.
	TypeJoin FrameType = 1
	// TypeLeave asks to leave Room. Required: Room.
	TypeLeave FrameType = 2
	// TypePublish sends Body to Room. Required: Room, CMID.
	TypePublish FrameType = 3
	// TypeHistory asks for a room's retained messages: After > 0 gives those
	// with seq > After, Before > 0 those with seq < Before (the newest
	// Limit of them), neither the newest Limit. Required: Room. Answered by
	// TypeHistoryReply.
	TypeHistory FrameType = 4
	// TypeTyping says the user is typing in Room. Ephemeral: never
	// sequenced or stored, broadcast as TypeTypingEvent, no reply.
	TypeTyping FrameType = 5
	// TypeRead records that the user has read Room up to Seq; broadcast as
	// TypeReceipt. Required: Room, Seq.
	TypeRead FrameType = 6
)

// DefaultHistoryLimit and MaxHistoryLimit bound the messages in one
// history reply.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 500
)

// Server → client frame types.
const (
	// TypeWelcome is the first frame on every connection: Conn, User, HB.
	TypeWelcome FrameType = 64
	// TypeJoined answers a join: ID, Room, Seq (the room's current sequence
	// number; every message after the join has a larger one) and Members.
	TypeJoined FrameType = 65
	// TypeLeft answers a leave: ID, Room.
	TypeLeft FrameType = 66
	// TypeMessage is a room message: Room, Seq, From, CMID, TS, Body.
	TypeMessage FrameType = 67
	// TypePresence tells a room that User joined or left: Room, User, Event.
	TypePresence FrameType = 68
	// TypeAck confirms a publish: ID, Room, CMID and the Seq it was given.
	TypeAck FrameType = 69
	// TypeError reports a failed request: ID (zero when the request's id is
	// unknown), Code, Text, and Room when the request named one.
	TypeError FrameType = 70
	// TypeHistoryReply answers a history request: ID, Room, Seq (the room's
	// current seq), History (message frames in seq order) and Reset when
	// the request reached back beyond what the room retains.
	TypeHistoryReply FrameType = 71
	// TypeTypingEvent tells a room that User is typing: Room, User.
	TypeTypingEvent FrameType = 72
	// TypeReceipt tells a room that User has read up to Seq: Room, User, Seq.
	TypeReceipt FrameType = 73
)

// Presence events.
const (
	EventJoin  = "join"
	EventLeave = "leave"
)

// Frame is one message between a client and an edge: a MessagePack map with
// short keys. Which fields a frame carries depends on its Type; absent
// fields are omitted on the wire and ignored when unknown, so new optional
// fields do not need a new protocol version.
type Frame struct {
	Type    FrameType `msgpack:"t"`
	ID      uint32    `msgpack:"id,omitempty"`
	Room    string    `msgpack:"room,omitempty"`
	CMID    string    `msgpack:"cmid,omitempty"`
	Seq     uint64    `msgpack:"seq,omitempty"`
	From    string    `msgpack:"from,omitempty"`
	TS      int64     `msgpack:"ts,omitempty"`
	Body    []byte    `msgpack:"body,omitempty"`
	Conn    string    `msgpack:"conn,omitempty"`
	User    string    `msgpack:"user,omitempty"`
	HB      uint32    `msgpack:"hb,omitempty"`
	Members []string  `msgpack:"members,omitempty"`
	Event   string    `msgpack:"ev,omitempty"`
	Code    ErrorCode `msgpack:"code,omitempty"`
	Text    string    `msgpack:"text,omitempty"`
	// Since, on a join, is the last seq the client saw in the room: the
	// joined reply's History then holds every later message (a resume),
	// or Reset is set when they are no longer retained. Absent: a fresh
	// join, whose History is the room's recent messages.
	Since *uint64 `msgpack:"since,omitempty"`
	// History holds message frames (TypeMessage), in seq order.
	History []Frame `msgpack:"history,omitempty"`
	// Reset tells the client its view of the room cannot be completed: it
	// must drop what it has and start from this reply.
	Reset bool `msgpack:"reset,omitempty"`
	// Before, After and Limit select messages in a history request.
	Before uint64 `msgpack:"before,omitempty"`
	After  uint64 `msgpack:"after,omitempty"`
	Limit  uint32 `msgpack:"limit,omitempty"`
}

// Decoding errors.
var (
	ErrMalformed = errors.New("protocol: malformed MessagePack")
	ErrTrailing  = errors.New("protocol: trailing bytes after frame")
)

// EncodeFrame returns f's MessagePack encoding.
func EncodeFrame(f *Frame) ([]byte, error) {
	return msgpack.Marshal(f)
}

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(f); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// DecodeFrame decodes one frame. It fails on anything but exactly one
// MessagePack map; it does not check the frame's fields (see ValidateClient).
func DecodeFrame(b []byte) (Frame, error) {
	var f Frame
	return f, decodeExact(b, &f)
}

func decodeExact(b []byte, v any) error {
	if len(b) == 0 || !isMap(b[0]) {
		return fmt.Errorf("%w: not a map", ErrMalformed)
	}
	// The decoder trusts length headers and recurses once per nesting
	// level; checking the bytes first bounds both by the input.
	if err := checkWellFormed(b); err != nil {
		return err
	}
	r := bytes.NewReader(b)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Len() != 0 {
		return ErrTrailing
	}
	return nil
}

// isMap reports whether b is the first byte of a MessagePack map.
func isMap(b byte) bool { return b&0xf0 == 0x80 || b == 0xde || b == 0xdf }

// Limits holds the bounds a frame from a client is checked against.
type Limits struct {
	// MaxBody bounds a publish body in bytes.
	MaxBody int
}

// FrameError is a client frame's failure: the code and text of the error
// frame the edge answers with.
type FrameError struct {
	Code ErrorCode
	Text string
}

func (e *FrameError) Error() string { return e.Code.String() + ": " + e.Text }

// ValidateClient checks a frame a client sent: that its type is a client
// type, that the fields the type requires are present, and that identifiers
// follow the rules. The result is nil or a *FrameError.
func (f *Frame) ValidateClient(l Limits) *FrameError {
	switch f.Type {
	case TypeJoin, TypeLeave, TypePublish, TypeHistory, TypeTyping, TypeRead:
	default:
		return &FrameError{CodeUnknownType, fmt.Sprintf("frame type %d is not a client frame", f.Type)}
	}
	if f.Room == "" {
		return &FrameError{CodeMissingField, "room is required"}
	}
	if err := ValidateID(f.Room); err != nil {
		return &FrameError{CodeInvalidRoom, err.Error()}
	}
	if f.Type == TypeRead && f.Seq == 0 {
		return &FrameError{CodeMissingField, "seq is required"}
	}
	if f.Type == TypeHistory && f.Limit > MaxHistoryLimit {
		return &FrameError{CodeBadFrame, fmt.Sprintf("limit %d exceeds %d", f.Limit, MaxHistoryLimit)}
	}
	if f.Type == TypePublish {
		if f.CMID == "" {
			return &FrameError{CodeMissingField, "cmid is required"}
		}
		if len(f.CMID) > MaxIDLen || !utf8.ValidString(f.CMID) {
			return &FrameError{CodeBadFrame, "cmid must be valid UTF-8 of at most 128 bytes"}
		}
		if l.MaxBody > 0 && len(f.Body) > l.MaxBody {
			return &FrameError{CodeTooLarge, fmt.Sprintf("body of %d bytes exceeds %d", len(f.Body), l.MaxBody)}
		}
	}
	return nil
}

// DecodeMsgpack refuses type numbers outside 0..255 instead of letting them
// wrap around (257 would otherwise read as a join).
func (t *FrameType) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeInt64()
	if err != nil {
		return err
	}
	if n < 0 || n > 255 {
		return fmt.Errorf("frame type %d out of range", n)
	}
	*t = FrameType(n)
	return nil
}
