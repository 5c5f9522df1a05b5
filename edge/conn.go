package edge

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"golang.org/x/time/rate"
)

// lockedConn serialises writes to the socket: gws writes control frames
// (close, and the replies it makes itself) through it, and the connection's
// writer goroutine writes prebuilt frames through it, so frames never
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
// read loop starts, except where a comment names the lock.
type conn struct {
	id     string
	user   string
	grants []string // private rooms the token grants
	remote string
	ws     *gws.Conn
	nc     *lockedConn
	srv    *Server

	limiter *rate.Limiter // used by the read goroutine only

	// userBound is closed once the user's key binding was attempted;
	// userBindFailed, written before, says it failed.
	userBound      chan struct{}
	userBindFailed bool

	// lastSeen is the Unix nanosecond time of the last frame received.
	lastSeen atomic.Int64

	// mu guards rooms and closed.
	mu     sync.Mutex
	rooms  map[string]uint8
	closed bool

	// qmu guards the send queue: a ring of frames. It is a leaf lock.
	qmu      sync.Mutex
	q        []*wsFrame
	qHead    int
	qLen     int
	qBytes   int
	qMax     int
	qMaxB    int
	qClosed  bool
	wake     chan struct{}
	done     chan struct{}
	doneOnce sync.Once
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
		q:         make([]*wsFrame, 8),
		qMax:      srv.cfg.SendQueueMessages,
		qMaxB:     srv.cfg.SendQueueBytes,
		wake:      make(chan struct{}, 1),
		userBound: make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.lastSeen.Store(time.Now().UnixNano())
	return c
}

// enqueue hands f to the connection's writer. It never blocks: when the
// queue is full the connection is closed as a slow consumer. The queue owns
// one reference of f from here on.
func (c *conn) enqueue(f *wsFrame) {
	c.qmu.Lock()
	if c.qClosed {
		c.qmu.Unlock()
		f.release()
		return
	}
	if c.qLen >= c.qMax || (c.qLen > 0 && c.qBytes+len(f.buf) > c.qMaxB) {
		c.qClosed = true
		c.qmu.Unlock()
		f.release()
		c.srv.stats.slowConsumers.Add(1)
		c.srv.goClose(c, closeSlow)
		return
	}
	if c.qLen == len(c.q) {
		c.grow()
	}
	c.q[(c.qHead+c.qLen)%len(c.q)] = f
	c.qLen++
	c.qBytes += len(f.buf)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
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

// writeBufPool holds the scratch buffers writers coalesce frames into.
var writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// writeLoop is the connection's single writer. It drains the queue,
// coalescing frames into one socket write, until the connection is done.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	defer c.drainQueue()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		for {
			bp := writeBufPool.Get().(*[]byte)
			buf := (*bp)[:0]
			c.qmu.Lock()
			for c.qLen > 0 && (len(buf) == 0 || len(buf)+len(c.q[c.qHead].buf) <= cap(buf)) {
				f := c.q[c.qHead]
				c.q[c.qHead] = nil
				c.qHead = (c.qHead + 1) % len(c.q)
				c.qLen--
				c.qBytes -= len(f.buf)
				buf = append(buf, f.buf...)
				f.release()
			}
			c.qmu.Unlock()
			if len(buf) == 0 {
				*bp = buf
				writeBufPool.Put(bp)
				break
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
			_, err := c.nc.Write(buf)
			n := len(buf)
			if cap(buf) > 256<<10 {
				buf = make([]byte, 0, 32<<10)
			}
			*bp = buf
			writeBufPool.Put(bp)
			if err != nil {
				c.srv.log.Debug().Err(err).Str("conn", c.id).Msg("write failed")
				_ = c.nc.Close()
				return
			}
			c.srv.stats.bytesOut.Add(uint64(n))
		}
	}
}

// drainQueue releases frames still queued when the writer stops.
func (c *conn) drainQueue() {
	c.qmu.Lock()
	c.qClosed = true
	for c.qLen > 0 {
		c.q[c.qHead].release()
		c.q[c.qHead] = nil
		c.qHead = (c.qHead + 1) % len(c.q)
		c.qLen--
	}
	c.qBytes = 0
	c.qmu.Unlock()
}

// stop ends the writer. Idempotent.
func (c *conn) stop() { c.doneOnce.Do(func() { close(c.done) }) }

// closeReason is a close code with its reason text.
type closeReason struct {
	code   uint16
	reason string
}

// closeWith sends a close frame and closes the socket; the read loop then
// ends and OnClose cleans up.
func (c *conn) closeWith(r closeReason) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.ws.WriteClose(r.code, []byte(r.reason))
}

// sendFrame queues one reply built for this connection alone.
func (c *conn) send(payload []byte) {
	c.enqueue(newWSFrame(opBinary, payload, 1))
}
