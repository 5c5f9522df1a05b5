package edge

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// wsFrame is one server-to-client WebSocket frame, built once and shared by
// every connection it is queued on. refs counts the queues still holding it;
// the last release returns the buffer to the pool.
type wsFrame struct {
	buf  []byte
	refs atomic.Int32
	// static frames (pings) are never pooled.
	static bool
}

var wsFramePool = sync.Pool{New: func() any { return &wsFrame{buf: make([]byte, 0, 512)} }}

// WebSocket opcodes the edge writes itself.
const (
	opBinary = 0x2
	opPing   = 0x9
	opPong   = 0xA
)

// newWSFrame builds an unmasked, final, uncompressed frame around payload
// with refs references.
func newWSFrame(op byte, payload []byte, refs int) *wsFrame {
	f := wsFramePool.Get().(*wsFrame)
	f.buf = appendWSFrame(f.buf[:0], op, payload)
	f.refs.Store(int32(refs))
	return f
}

func appendWSFrame(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, 0, 0)
		binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(n))
	default:
		dst = append(dst, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(dst[len(dst)-8:], uint64(n))
	}
	return append(dst, payload...)
}

// release drops one reference.
func (f *wsFrame) release() {
	if f.static {
		return
	}
	if f.refs.Add(-1) == 0 {
		if cap(f.buf) > 64<<10 {
			// Do not let one large message pin a large buffer in the pool.
			f.buf = make([]byte, 0, 512)
		}
		wsFramePool.Put(f)
	}
}

// pingFrame is the empty ping every heartbeat sends.
var pingFrame = &wsFrame{buf: appendWSFrame(nil, opPing, nil), static: true}
