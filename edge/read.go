package edge

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// The read side of a connection. One goroutine at a time reads a
// connection: with the poller, a goroutine started when its socket became
// readable (readReady), which handles what arrived and ends; without it, a
// goroutine for the life of the connection (readLoop). Either way the
// reader owns the end of the connection: whoever else closes it (heartbeat,
// slow consumer, drain) sends the close frame and shuts the socket down,
// and the reader then sees end of file and cleans up (finish) exactly once.

// errNoRawConn: the connection has no file descriptor to poll.
var errNoRawConn = errors.New("edge: connection has no file descriptor")

// sockReader is what one reader goroutine needs to read a socket: its
// buffer, and the read(2) callback for syscall.RawConn, made once and kept
// with the buffer in a pool so that a read allocates nothing (as
// rawNowWriter does for writes). A connection holds one only while it is
// being read.
type sockReader struct {
	buf []byte
	// The read in progress: where it goes and what read(2) returned.
	dst []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var sockReaderPool sync.Pool

func getSockReader(size int) *sockReader {
	if r, ok := sockReaderPool.Get().(*sockReader); ok && len(r.buf) == size {
		return r
	}
	r := &sockReader{buf: make([]byte, size)}
	r.fn = r.read
	return r
}

func (r *sockReader) read(fd uintptr) bool {
	r.n, r.err = syscall.Read(int(fd), r.dst)
	return true // never wait for the runtime's poller: the epoll set does
}

// readNow is one read(2) of rc's non-blocking socket into dst: EAGAIN when
// it holds nothing, a zero count with errEOF at end of file.
func (r *sockReader) readNow(rc syscall.RawConn, dst []byte) (int, error) {
	r.dst = dst
	cerr := rc.Read(r.fn)
	n, err := r.n, r.err
	r.dst, r.n, r.err = nil, 0, nil
	if cerr != nil {
		return 0, cerr
	}
	if n < 0 {
		n = 0
	}
	if n == 0 && err == nil {
		err = errEOF
	}
	return n, err
}

var errEOF = errors.New("edge: end of stream")

// startReading hands a new connection to the poller, or to a goroutine of
// its own when the edge has no poller or the socket cannot be polled.
func (s *Server) startReading(c *conn) {
	if s.poller != nil {
		if err := s.poller.add(c); err == nil {
			return
		}
	}
	s.wg.Add(1)
	go c.readLoop()
}

// readable is the poller's callback: c's socket has bytes (or an end).
func (s *Server) readable(c *conn) {
	s.stats.readWakeups.Add(1)
	s.wg.Add(1)
	go c.readReady()
}

// readReady reads what c's socket holds, handles it, and re-arms the
// socket; or finishes the connection at its end.
func (c *conn) readReady() {
	defer c.srv.wg.Done()
	defer c.recoverRead()
	r := getSockReader(c.srv.cfg.ReadBuffer)
	defer sockReaderPool.Put(r)
	for {
		dst, direct := c.rd.space(r.buf)
		n, err := r.readNow(c.rc, dst)
		if n > 0 {
			if !c.consume(dst[:n], direct) {
				c.finish()
				return
			}
			if n == len(dst) {
				continue // there may be more
			}
			err = syscall.EAGAIN
		}
		if errors.Is(err, syscall.EAGAIN) {
			if c.srv.poller.rearm(c) != nil {
				c.finish()
			}
			return
		}
		c.finish()
		return
	}
}

// readLoop reads c until it ends, blocking in the runtime's poller
// between frames.
func (c *conn) readLoop() {
	defer c.srv.wg.Done()
	defer c.recoverRead()
	buf := make([]byte, c.srv.cfg.ReadBuffer)
	for {
		dst, direct := c.rd.space(buf)
		n, err := c.nc.Read(dst)
		if n > 0 && !c.consume(dst[:n], direct) {
			break
		}
		if err != nil {
			break
		}
	}
	c.finish()
}

// recoverRead turns a panic while handling a client's frames into a 1011
// close of that connection alone.
func (c *conn) recoverRead() {
	if v := recover(); v != nil {
		c.srv.log.Error().Str("conn", c.id).Interface("panic", v).Bytes("stack", debug.Stack()).Msg("recovered from a panic handling a client frame")
		c.closeWith(closeReason{protocol.CloseInternal, "internal error"})
		c.finish()
	}
}

// consume handles bytes read from the socket, frame by frame: b, or, when
// direct, the bytes read into the slice c.rd.space returned. It returns
// false once the connection is ending: closed by the client or by the
// edge, or failed for breaking the protocol.
func (c *conn) consume(b []byte, direct bool) bool {
	if c.closing.Load() {
		return false
	}
	var ok bool
	var err error
	if direct {
		ok, err = c.rd.feedDirect(len(b), c.onFrame)
	} else {
		ok, err = c.rd.feed(b, c.onFrame)
	}
	if err != nil {
		var we *wsError
		if errors.As(err, &we) {
			c.closeWith(closeReason(*we))
		}
		return false
	}
	return ok && !c.closing.Load()
}

// onFrame handles one message or control frame from the client.
func (c *conn) onFrame(op byte, p []byte) bool {
	c.lastSeen.Store(time.Now().UnixNano())
	switch op {
	case opPing:
		c.enqueue(newWSFrame(opPong, p, 1))
	case opPong:
	case opClose:
		// Answer with the client's code (RFC 6455 §5.5.1) and end.
		code := protocol.CloseNormal
		if len(p) >= 2 {
			code = binary.BigEndian.Uint16(p)
		}
		c.closeWith(closeReason{code: code})
		return false
	default:
		c.srv.onMessage(c, op, p)
	}
	return !c.closing.Load()
}

// finish ends the connection once its reader saw the end: the socket is
// closed and the edge forgets the connection (Server.closed). Only the
// reader calls it.
func (c *conn) finish() {
	if c.finished {
		return
	}
	c.finished = true
	c.closing.Store(true)
	if c.srv.poller != nil {
		c.srv.poller.remove(c)
	}
	_ = c.nc.Close()
	c.srv.closed(c)
}

// shutdownSocket ends both directions of the socket without closing the
// descriptor, which wakes the connection's reader with end of file; the
// reader then closes it.
func (c *conn) shutdownSocket() {
	if c.rc != nil {
		var serr error
		err := c.rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		if err == nil && serr == nil {
			return
		}
	}
	_ = c.nc.Close()
}

// closeWith sends a close frame with r and shuts the socket down; the
// reader then cleans up. Only the first call does anything. The close
// frame is left out when the socket is in the middle of a frame (a slow
// consumer's), where it could not be framed.
func (c *conn) closeWith(r closeReason) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.qmu.Lock()
	midFrame := c.qOff > 0
	c.closeQueue()
	c.qmu.Unlock()
	if !midFrame {
		payload := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(r.reason)), r.code)
		if len(r.reason) <= 123 {
			payload = append(payload, r.reason...)
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(appendWSFrame(nil, opClose, payload))
	}
	c.shutdownSocket()
}
