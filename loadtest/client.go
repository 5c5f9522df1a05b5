package loadtest

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

// Connection states.
const (
	stateNew int32 = iota
	stateOpen
	stateJoined
	stateJoinFailed
	stateClosed
)

// joinID is the request id of a connection's join; publishes count from
// firstPublishID up.
const (
	joinID         = 1
	firstPublishID = 2
)

// lconn is one simulated client, kept small: a gws connection, its room,
// and a sequence tracker. It is its own gws event handler, so no session
// map is needed; every event runs on the connection's read goroutine.
type lconn struct {
	w    *worker
	g    int // global connection index
	room int
	pub  bool
	ws   *gws.Conn

	state        atomic.Int32
	closing      atomic.Bool // the tool closed it
	disconnected atomic.Bool // the server or the network closed it first
	welcome      chan struct{}
	done         chan struct{}

	joinSent atomic.Int64 // Unix ns

	// mu guards trk and ck: written by the read goroutine (ck also by the
	// pacing goroutine), read by the final report.
	mu  sync.Mutex
	trk seqTracker
	ck  eventLog // with Config.Check only

	// Written by the worker's pacing goroutine only.
	reqID   uint32
	counter uint64
}

func (c *lconn) OnOpen(*gws.Conn)         {}
func (c *lconn) OnPong(*gws.Conn, []byte) {}

// OnPing answers the edge's heartbeat. Every write sets its own deadline:
// one left over from an earlier write would fail this one.
func (c *lconn) OnPing(ws *gws.Conn, p []byte) {
	_ = ws.NetConn().SetWriteDeadline(time.Now().Add(writeTimeout))
	_ = ws.WritePong(p)
}

func (c *lconn) OnClose(_ *gws.Conn, err error) {
	prev := c.state.Swap(stateClosed)
	c.w.open.Add(-1)
	if prev == stateJoined {
		c.w.joinedNow.Add(-1)
	}
	if !c.closing.Load() {
		if c.w.ck != nil {
			c.mu.Lock()
			c.record(evLeft, c.ck.maxSeq)
			c.mu.Unlock()
		}
		c.disconnected.Store(true)
		c.w.ctr.disconnects.Add(1)
		code := 1006
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			code = int(ce.Code)
		}
		c.w.countClose(code)
	}
	close(c.done)
}

func (c *lconn) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	w := c.w
	f, err := protocol.DecodeFrame(m.Bytes())
	if err != nil {
		w.ctr.badFrames.Add(1)
		return
	}
	switch f.Type {
	case protocol.TypeMessage:
		c.onMessage(&f)
	case protocol.TypeAck:
		c.onAck(&f)
	case protocol.TypePresence:
		w.ctr.presence.Add(1)
	case protocol.TypeWelcome:
		if c.state.CompareAndSwap(stateNew, stateOpen) {
			close(c.welcome)
		}
	case protocol.TypeJoined:
		if f.ID != joinID {
			return
		}
		c.mu.Lock()
		c.trk.start(f.Seq)
		if w.ck != nil {
			c.record(evJoined, f.Seq)
			for i := range f.History {
				if h := &f.History[i]; h.Type == protocol.TypeMessage {
					c.recordDelivery(evRecovered, h.Seq, h.CMID)
				}
			}
		}
		c.mu.Unlock()
		if c.state.CompareAndSwap(stateOpen, stateJoined) {
			w.ctr.joined.Add(1)
			w.joinedNow.Add(1)
			w.join.record(c.g, (time.Now().UnixNano()-c.joinSent.Load())/1000)
		}
	case protocol.TypeError:
		c.onError(&f)
	}
}

func (c *lconn) onMessage(f *protocol.Frame) {
	w := c.w
	now := time.Now().UnixNano()
	w.ctr.delivered.Add(1)
	phase := 0
	if h, ok := parseBody(f.Body); ok {
		phase = int(h.phase)
		if hc, ok := parseCMID(f.CMID); !ok || hc != h || phase >= maxPhases {
			w.ctr.corrupt.Add(1)
			phase = 0
		}
		w.e2e[phase].record(c.g, (now-h.sent)/1000)
	} else {
		w.ctr.corrupt.Add(1)
	}
	if f.Room != w.rooms[c.room] {
		w.ctr.corrupt.Add(1)
		return
	}
	c.mu.Lock()
	r := c.trk.observe(f.Seq)
	if w.ck != nil {
		c.recordDelivery(evLive, f.Seq, f.CMID)
	}
	c.mu.Unlock()
	switch r {
	case seqNew:
		w.phaseDelivered[phase].Add(1)
	case seqDuplicate:
		w.ctr.duplicated.Add(1)
	case seqStale:
		w.ctr.stale.Add(1)
	}
}

func (c *lconn) onAck(f *protocol.Frame) {
	w := c.w
	now := time.Now().UnixNano()
	h, ok := parseCMID(f.CMID)
	if !ok || h.phase >= maxPhases || f.Room != w.rooms[c.room] {
		w.ctr.corrupt.Add(1)
		return
	}
	w.ctr.acked.Add(1)
	w.phaseAcked[h.phase].Add(1)
	w.ack[h.phase].record(c.g, (now-h.sent)/1000)
	if w.ck != nil {
		c.mu.Lock()
		c.record(evAcked, f.Seq, uint64(h.pub), h.counter)
		c.mu.Unlock()
	}
	w.ackMu.Lock()
	s := w.acked[c.room]
	if s == nil {
		s = &rangeSet{}
		w.acked[c.room] = s
	}
	if !s.add(f.Seq) {
		w.dupAcks++
	}
	w.ackMu.Unlock()
}

func (c *lconn) onError(f *protocol.Frame) {
	w := c.w
	w.ctr.errorFrames.Add(1)
	w.countError(uint16(f.Code))
	switch {
	case f.ID == joinID:
		if c.state.CompareAndSwap(stateOpen, stateJoinFailed) {
			w.ctr.joinErrors.Add(1)
		}
	case f.ID >= firstPublishID:
		w.ctr.failed.Add(1)
	}
}

// msgHeader is what the tool puts at the start of every body, and again
// in the cmid: who published it, its number, when and in which phase.
type msgHeader struct {
	sent    int64 // Unix ns, taken just before the write
	phase   uint16
	pub     uint32 // global connection index of the publisher
	counter uint64 // the publisher's message number, from 1
}

// putBody writes h into the first bodyHeader bytes of b and fills the rest.
func (h msgHeader) putBody(b []byte) {
	binary.BigEndian.PutUint64(b[0:8], uint64(h.sent))
	binary.BigEndian.PutUint16(b[8:10], h.phase)
	binary.BigEndian.PutUint32(b[10:14], h.pub)
	binary.BigEndian.PutUint64(b[14:22], h.counter)
	for i := bodyHeader; i < len(b); i++ {
		b[i] = 'x'
	}
}

func parseBody(b []byte) (msgHeader, bool) {
	if len(b) < bodyHeader {
		return msgHeader{}, false
	}
	return msgHeader{
		sent:    int64(binary.BigEndian.Uint64(b[0:8])),
		phase:   binary.BigEndian.Uint16(b[8:10]),
		pub:     binary.BigEndian.Uint32(b[10:14]),
		counter: binary.BigEndian.Uint64(b[14:22]),
	}, true
}

// cmid is unique per message: publisher, counter, send time and phase in
// base 36, e.g. "1z-4f-1hq7x2k3b4c-0". The ack echoes it, so the ack
// latency needs no per-message state.
func (h msgHeader) cmid() string {
	b := make([]byte, 0, 40)
	b = strconv.AppendUint(b, uint64(h.pub), 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, h.counter, 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(h.sent), 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(h.phase), 36)
	return string(b)
}

func parseCMID(s string) (msgHeader, bool) {
	var parts [4]uint64
	for i := range parts {
		var p string
		if i < 3 {
			var ok bool
			p, s, ok = strings.Cut(s, "-")
			if !ok {
				return msgHeader{}, false
			}
		} else {
			p = s
		}
		v, err := strconv.ParseUint(p, 36, 64)
		if err != nil {
			return msgHeader{}, false
		}
		parts[i] = v
	}
	if parts[0] > 1<<32-1 || parts[3] > 1<<16-1 {
		return msgHeader{}, false
	}
	return msgHeader{pub: uint32(parts[0]), counter: parts[1], sent: int64(parts[2]), phase: uint16(parts[3])}, true
}
