package edge

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// lockedConn serialises writes to the socket: close frames go through it,
// and the edge writes its queued frames under its lock (the socket
// writer's non-blocking writes, a flusher's blocking ones), so frames never
// interleave.
type lockedConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *lockedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(b)
}

// Membership states of a room on a connection.
const (
	roomPending uint8 = 1 // join sent to the hub, not answered yet
	roomJoined  uint8 = 2 // the edge delivers the room's broadcasts
)

// conn is one client connection. Its fields are written once before the
// connection is read, except where a comment names the lock.
type conn struct {
	id     string
	user   string
	grants []string // private rooms the token grants
	remote string
	nc     *lockedConn
	// rc reaches the socket's descriptor; nil for a connection that has
	// none (tests).
	rc  syscall.RawConn
	srv *Server

	// Used by the connection's reader only (read.go).
	limiter   *rate.Limiter
	ingress   ingressReq // forward's request
	rd        frameReader
	pollToken uint64 // the poller's name for the connection; also under poller.mu
	finished  bool

	// closing is set once the connection is ending: the edge sent (or
	// skipped) its close frame, or the reader saw the end.
	closing atomic.Bool

	// userBound is closed once the user's key binding was attempted;
	// userBindFailed, written before, says it failed.
	userBound      chan struct{}
	userBindFailed bool

	// lastSeen is the Unix nanosecond time of the last frame received.
	lastSeen atomic.Int64
	// lastSent is the Unix nanosecond time of the last write to the
	// socket (or the connection's start).
	lastSent atomic.Int64
	// lastPing is the Unix nanosecond time of the last heartbeat ping; 0
	// before the first.
	lastPing atomic.Int64
	// hbSlot is the heartbeat slice the connection is checked in
	// (Server.heartbeatLoop).
	hbSlot uint32

	// mu guards rooms and closed.
	mu     sync.Mutex
	rooms  map[string]uint8
	closed bool

	// qmu guards the send queue, a ring of frames whose head may be
	// partly written (qOff bytes), and the fields after it. It is taken
	// before nc.mu, never after.
	qmu     sync.Mutex
	q       []*wsFrame
	qHead   int
	qLen    int
	qOff    int
	qBytes  int
	qMax    int
	qMaxB   int
	qClosed bool
	// flushing is set while a flusher goroutine owns the socket's
	// writes; nobody else writes queued frames meanwhile.
	flushing bool
	// pending is set from the moment the egress consumer lists the
	// connection for the socket writer (Server.pending, then handed) until
	// the writer takes it.
	pending bool
	// now writes without waiting; nil when the socket does not allow it,
	// and then a flusher goroutine does every write.
	now nowWriter
}

// nowWriter writes what a socket takes at once, never waiting for it to
// drain; a full socket buffer is a short (possibly zero) count, not an
// error.
type nowWriter interface {
	writeNow(b []byte) (int, error)
}

func newConn(srv *Server, id, user, remote string, nc *lockedConn) *conn {
	c := &conn{
		id:        id,
		user:      user,
		remote:    remote,
		nc:        nc,
		srv:       srv,
		limiter:   rate.NewLimiter(rate.Limit(srv.cfg.RatePerSecond), srv.cfg.RateBurst),
		rooms:     make(map[string]uint8),
		q:         make([]*wsFrame, 2),
		qMax:      srv.cfg.SendQueueMessages,
		qMaxB:     srv.cfg.SendQueueBytes,
		userBound: make(chan struct{}),
		now:       nowWriterOf(nc.Conn),
		rd:        frameReader{max: srv.cfg.MaxMessage},
	}
	if sc, ok := nc.Conn.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	now := time.Now().UnixNano()
	c.lastSeen.Store(now)
	c.lastSent.Store(now)
	c.hbSlot = srv.hbNext.Add(1) % heartbeatSlices
	return c
}

// enqueue hands f to the connection and writes it at once if the socket
// takes it. It never blocks: when the queue is full the connection is
// closed as a slow consumer. The queue owns one reference of f from here
// on.
func (c *conn) enqueue(f *wsFrame) {
	c.qmu.Lock()
	if c.push(f) {
		c.flush(nil)
	}
	c.qmu.Unlock()
}

// queueFor queues f without writing it and, the first time since the
// socket writer last took c, appends c to *pending, the consumer's list
// of connections to hand over. Egress consumer goroutine only.
func (c *conn) queueFor(f *wsFrame, pending *[]*conn) {
	c.qmu.Lock()
	if c.push(f) && !c.pending {
		c.pending = true
		*pending = append(*pending, c)
	}
	c.qmu.Unlock()
}

// push queues f without writing it and reports whether the frame is
// queued; false means f was released (closed connection or overflow).
// qmu held on entry.
func (c *conn) push(f *wsFrame) bool {
	if c.qClosed {
		f.release()
		return false
	}
	if c.qLen >= c.qMax || (c.qLen > 0 && c.qBytes+len(f.buf) > c.qMaxB) {
		c.qClosed = true
		f.release()
		c.srv.stats.slowConsumers.Add(1)
		c.srv.goClose(c, closeSlow)
		return false
	}
	if c.qLen == len(c.q) {
		c.grow()
	}
	c.q[(c.qHead+c.qLen)%len(c.q)] = f
	c.qLen++
	c.qBytes += len(f.buf)
	return true
}

// grow doubles the ring, up to qMax. qmu held on entry.
func (c *conn) grow() {
	n := 2 * len(c.q)
	if n > c.qMax {
		n = c.qMax
	}
	q := make([]*wsFrame, n)
	for i := 0; i < c.qLen; i++ {
		q[i] = c.q[(c.qHead+i)%len(c.q)]
	}
	c.q, c.qHead = q, 0
}

// trim gives back a send queue that grew during a burst once it is empty
// again. The heartbeat loop calls it, so a busy connection keeps its ring
// and an idle one holds two slots.
func (c *conn) trim() {
	c.qmu.Lock()
	if c.qLen == 0 && len(c.q) > 2 {
		c.q, c.qHead = make([]*wsFrame, 2), 0
	}
	c.qmu.Unlock()
}

// flush writes what the socket takes now; whatever is left goes to a
// flusher goroutine, which waits for the socket. The common case — a
// socket with room — costs one system call and no goroutine. Several
// frames are copied into one write through scratch, the caller's own
// buffer, or a pooled one when scratch is nil. qmu held on entry.
func (c *conn) flush(scratch *[]byte) {
	if c.flushing || c.qClosed || c.qLen == 0 {
		return
	}
	if c.now != nil && c.nc.mu.TryLock() {
		err := c.writeQueued(scratch)
		c.nc.mu.Unlock()
		if err != nil {
			c.failed(err)
			return
		}
		if c.qLen == 0 {
			return
		}
	}
	c.flushing = true
	c.srv.wg.Add(1)
	go c.flushLoop()
}

// writeQueued writes queued frames without waiting, up to the first short
// write. qmu and nc.mu held on entry.
func (c *conn) writeQueued(scratch *[]byte) error {
	for c.qLen > 0 {
		var b []byte
		bp := scratch
		if c.qLen == 1 {
			b = c.q[c.qHead].buf[c.qOff:]
		} else {
			if bp == nil {
				bp = writeBufPool.Get().(*[]byte)
			}
			if cap(*bp) == 0 {
				*bp = make([]byte, 0, 32<<10)
			}
			b = c.gather((*bp)[:0])
		}
		n, err := c.now.writeNow(b)
		if bp != nil && bp != scratch {
			*bp = b[:0]
			writeBufPool.Put(bp)
		}
		c.consumed(n)
		if err != nil {
			return err
		}
		if n < len(b) {
			return nil
		}
	}
	return nil
}

// gather appends queued frames, from the unwritten part of the head on,
// to buf while they fit its capacity (at least one frame). qmu held on
// entry.
func (c *conn) gather(buf []byte) []byte {
	off := c.qOff
	for i := 0; i < c.qLen; i++ {
		f := c.q[(c.qHead+i)%len(c.q)]
		if len(buf) > 0 && len(buf)+len(f.buf)-off > cap(buf) {
			break
		}
		buf = append(buf, f.buf[off:]...)
		off = 0
	}
	return buf
}

// consumed drops n written bytes from the head of the queue, releasing
// the frames written whole. qmu held on entry.
func (c *conn) consumed(n int) {
	if n <= 0 {
		return
	}
	c.lastSent.Store(time.Now().UnixNano())
	c.srv.stats.bytesOut.Add(uint64(n))
	for n > 0 && c.qLen > 0 {
		f := c.q[c.qHead]
		left := len(f.buf) - c.qOff
		if n < left {
			c.qOff += n
			return
		}
		n -= left
		c.qOff = 0
		c.q[c.qHead] = nil
		c.qHead = (c.qHead + 1) % len(c.q)
		c.qLen--
		c.qBytes -= len(f.buf)
		f.release()
	}
}

// writeBufPool holds the scratch buffers frames are coalesced into for one
// write.
var writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// flushLoop is the connection's writer while the socket is full: it
// writes, waiting as long as WriteTimeout, until the queue is empty, then
// ends. At most one runs per connection (flushing).
func (c *conn) flushLoop() {
	defer c.srv.wg.Done()
	for {
		bp := writeBufPool.Get().(*[]byte)
		c.qmu.Lock()
		if c.qClosed || c.qLen == 0 {
			c.flushing = false
			c.qmu.Unlock()
			writeBufPool.Put(bp)
			return
		}
		buf := c.gather((*bp)[:0])
		c.qmu.Unlock()

		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		n, err := c.nc.Write(buf)
		if cap(buf) > 256<<10 {
			buf = make([]byte, 0, 32<<10)
		}
		*bp = buf[:0]
		writeBufPool.Put(bp)

		c.qmu.Lock()
		if !c.qClosed {
			c.consumed(n)
		}
		if err != nil {
			c.flushing = false
			c.failed(err)
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
	}
}

// failed ends the connection after a write error; its reader then sees
// the end and cleans up. qmu held on entry.
func (c *conn) failed(err error) {
	c.srv.log.Debug().Err(err).Str("conn", c.id).Msg("write failed")
	c.closeQueue()
	c.closing.Store(true)
	c.shutdownSocket()
}

// closeQueue refuses further frames and releases those still queued.
// qmu held on entry.
func (c *conn) closeQueue() {
	c.qClosed = true
	for c.qLen > 0 {
		c.q[c.qHead].release()
		c.q[c.qHead] = nil
		c.qHead = (c.qHead + 1) % len(c.q)
		c.qLen--
	}
	c.qOff, c.qBytes = 0, 0
}

// stop releases the send queue once the connection is closed. Idempotent.
func (c *conn) stop() {
	c.qmu.Lock()
	c.closeQueue()
	c.qmu.Unlock()
}

// closeReason is a close code with its reason text.
type closeReason struct {
	code   uint16
	reason string
}

// sendFrame queues one reply built for this connection alone.
func (c *conn) send(payload []byte) {
	c.enqueue(newWSFrame(opBinary, payload, 1))
}
