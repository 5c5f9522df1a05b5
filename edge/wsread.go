package edge

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/hearth-gateway/hearth/protocol"
)

// WebSocket opcodes the edge reads (RFC 6455 §5.2); opBinary, opPing and
// opPong are in wsframe.go.
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
)

// wsError is a reason to fail the WebSocket connection: the close code and
// reason sent to the client before the socket is closed.
type wsError closeReason

func (e *wsError) Error() string { return e.reason }

var (
	errWSUnmasked     = &wsError{protocol.CloseProtocolError, "client frames must be masked"}
	errWSReserved     = &wsError{protocol.CloseProtocolError, "reserved bits set"}
	errWSOpcode       = &wsError{protocol.CloseProtocolError, "unknown opcode"}
	errWSControl      = &wsError{protocol.CloseProtocolError, "control frames must be final and at most 125 bytes"}
	errWSContinuation = &wsError{protocol.CloseProtocolError, "continuation frame without a message to continue"}
	errWSInterleaved  = &wsError{protocol.CloseProtocolError, "new message before the previous one ended"}
	errWSCloseCode    = &wsError{protocol.CloseProtocolError, "invalid close frame"}
	errWSTooBig       = &wsError{protocol.CloseTooBig, "message too big"}
	errWSUTF8         = &wsError{protocol.CloseInvalidData, "text is not valid UTF-8"}
)

// frameReader parses the frames a client sends (RFC 6455 §5): masked,
// possibly fragmented, with control frames between the fragments of a
// message. It is fed whatever the socket returned and calls back once per
// whole message and per control frame, so the edge needs no buffer of its
// own per connection while nothing is half received: idle connections hold
// no read buffer at all.
//
// A frameReader belongs to one connection and is used by one goroutine at a
// time (the one reading that connection).
type frameReader struct {
	// max bounds a message's payload (the sum of its fragments).
	max int
	// partial holds the bytes of a frame that has not fully arrived; nil
	// when the last feed ended on a frame boundary.
	partial []byte
	// msg collects the fragments of an unfinished message whose first
	// frame had opcode msgOp (0: no message in progress).
	msg   []byte
	msgOp byte
}

// frameHandler receives one whole message (opText or opBinary, fragments
// joined) or one control frame (opPing, opPong, opClose). The payload is
// valid only during the call. Returning false stops the feed.
type frameHandler func(op byte, payload []byte) bool

// feed parses data, calling h for each message and control frame it
// completes, in order. It returns a *wsError when the client broke the
// protocol (the connection must then be failed with that code) and stops
// early, with a nil error and ok false, when h returned false. feed may
// modify data (payloads are unmasked in place).
func (r *frameReader) feed(data []byte, h frameHandler) (ok bool, err error) {
	buf := data
	if len(r.partial) > 0 {
		r.partial = append(r.partial, data...)
		buf = r.partial
	}
	for {
		n, complete, err := r.next(buf, h, &ok)
		if err != nil {
			r.partial = nil
			return false, err
		}
		if !complete {
			break
		}
		buf = buf[n:]
		if !ok {
			r.partial = nil
			return false, nil
		}
	}
	switch {
	case len(buf) == 0:
		r.partial = nil
	case len(r.partial) > 0:
		// buf is a suffix of partial: move it to the front.
		r.partial = r.partial[:copy(r.partial, buf)]
	default:
		r.partial = append([]byte(nil), buf...)
	}
	return true, nil
}

// next handles the frame at the start of buf if it is complete and returns
// its length. An incomplete frame returns complete false, after checking
// whatever of its header has arrived, so that a frame over the limit is
// refused before the edge waits for (and buffers) its payload.
func (r *frameReader) next(buf []byte, h frameHandler, ok *bool) (n int, complete bool, err error) {
	if len(buf) < 2 {
		return 0, false, nil
	}
	b0, b1 := buf[0], buf[1]
	fin, op := b0&0x80 != 0, b0&0x0F
	if b0&0x70 != 0 {
		return 0, false, errWSReserved
	}
	if b1&0x80 == 0 {
		return 0, false, errWSUnmasked
	}
	control := op&0x8 != 0
	switch op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return 0, false, errWSOpcode
	}
	hlen, plen, known := frameSize(buf)
	if !known {
		return 0, false, nil
	}
	if control {
		if !fin || plen > 125 {
			return 0, false, errWSControl
		}
	} else {
		switch {
		case op == opContinuation && r.msgOp == 0:
			return 0, false, errWSContinuation
		case op != opContinuation && r.msgOp != 0:
			return 0, false, errWSInterleaved
		case plen > uint64(r.max-len(r.msg)):
			return 0, false, errWSTooBig
		}
	}
	if len(buf) < hlen || uint64(len(buf)-hlen) < plen {
		return 0, false, nil
	}
	payload := buf[hlen : hlen+int(plen)]
	unmask(payload, buf[hlen-4:hlen])
	n = hlen + int(plen)

	switch {
	case control:
		if op == opClose {
			if err := checkClosePayload(payload); err != nil {
				return 0, false, err
			}
		}
		*ok = h(op, payload)
	case fin && op != opContinuation:
		// A whole message in one frame, the usual case: no copy.
		if op == opText && !utf8.Valid(payload) {
			return 0, false, errWSUTF8
		}
		*ok = h(op, payload)
	case !fin:
		if op != opContinuation {
			r.msgOp = op
		}
		r.msg = append(r.msg, payload...)
		*ok = true
	default: // the final fragment
		r.msg = append(r.msg, payload...)
		mop, msg := r.msgOp, r.msg
		r.msg, r.msgOp = nil, 0
		if mop == opText && !utf8.Valid(msg) {
			return 0, false, errWSUTF8
		}
		*ok = h(mop, msg)
	}
	return n, true, nil
}

// frameSize returns the header length (with the masking key) and the
// payload length of the frame at the start of buf; ok is false until
// enough of the header has arrived to tell.
func frameSize(buf []byte) (hlen int, plen uint64, ok bool) {
	if len(buf) < 2 {
		return 0, 0, false
	}
	hlen, plen = 2+4, uint64(buf[1]&0x7F)
	switch plen {
	case 126:
		hlen += 2
		if len(buf) < 4 {
			return 0, 0, false
		}
		plen = uint64(binary.BigEndian.Uint16(buf[2:]))
	case 127:
		hlen += 8
		if len(buf) < 10 {
			return 0, 0, false
		}
		plen = binary.BigEndian.Uint64(buf[2:])
	}
	return hlen, plen, true
}

// space returns where the next read should go: buf, or, while a frame
// larger than buf is partly received, the rest of that frame's own buffer,
// so that a large message is read in a few large reads without copies.
// direct reports the second case; the caller then passes the count to
// feedDirect instead of feeding what it read.
func (r *frameReader) space(buf []byte) (dst []byte, direct bool) {
	hlen, plen, ok := frameSize(r.partial)
	if !ok {
		return buf, false
	}
	// The frame passed next's checks, so its size is within the limit.
	need := hlen + int(plen)
	if need-len(r.partial) <= len(buf) {
		return buf, false
	}
	if cap(r.partial) < need {
		p := make([]byte, len(r.partial), need)
		copy(p, r.partial)
		r.partial = p
	}
	return r.partial[len(r.partial):need], true
}

// feedDirect handles n bytes read into the slice space returned.
func (r *frameReader) feedDirect(n int, h frameHandler) (ok bool, err error) {
	r.partial = r.partial[:len(r.partial)+n]
	return r.feed(nil, h)
}

// checkClosePayload checks a close frame's body: empty, or a status code
// a peer may send followed by a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
func checkClosePayload(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return errWSCloseCode
	}
	code := binary.BigEndian.Uint16(p)
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
	default:
		return errWSCloseCode
	}
	if !utf8.Valid(p[2:]) {
		return errWSUTF8
	}
	return nil
}

// unmask XORs p with the 4-byte masking key, eight bytes at a time where
// it can.
func unmask(p, key []byte) {
	k := binary.LittleEndian.Uint32(key)
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}
