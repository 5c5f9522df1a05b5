package client

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

// roomVoid: requests naming this room get no reply.
const roomVoid = "void"

const testOrigin = "https://chat.example"

// fakeEdge is a small in-test edge and hub: JWT at the handshake, Origin
// check, welcome, pings every hb, joined/left/ack/error replies, broadcasts
// to room members (the sender included) and presence; history (joins with
// and without since, history requests, retention and Reset, a small page
// size), publishes de-duplicated by (user, cmid), typing and read receipts.
// Controls break delivery on purpose: hidden broadcasts (gaps),
// re-broadcasts (duplicates), a connection dropped instead of an ack. It
// handles each connection's frames concurrently (gws ParallelEnabled), so
// replies leave out of order, unless made serial.
type fakeEdge struct {
	t      *testing.T
	secret []byte
	hb     time.Duration
	srv    *httptest.Server
	up     *gws.Upgrader
	wg     sync.WaitGroup
	nextID atomic.Int64

	mu       sync.Mutex
	conns    map[*fconn]struct{}
	rooms    map[string]*froom
	accepted int             // successful upgrades
	joins    map[string]int  // join requests per room
	reject   int             // HTTP status for every handshake; 0 means normal
	forbid   map[string]bool // rooms whose joins fail with CodeForbidden
	flap     uint16          // when set, close each new connection with this code after the welcome

	page      int                  // most messages in one joined or history reply; 0 means MaxHistoryLimit
	retain    int                  // messages a room retains for history; 0 means all
	cmids     map[string]uint64    // user, room, cmid → seq
	dropAck   bool                 // the next publish drops its connection instead of acking
	histories int                  // history requests received
	publishes int                  // publish requests, retries included
	histFault []protocol.ErrorCode // the next history requests: 0 = no reply, else this error
	histGate  chan struct{}        // when set, history requests wait for it to close
}

// recentHistory is how many messages a fresh join's History holds.
const recentHistory = 50

type froom struct {
	seq     uint64
	members map[*fconn]struct{}
	log     []protocol.Frame // every message; log[i].Seq == i+1
	hide    int              // the next hide messages are not broadcast
}

type fconn struct {
	id     string
	user   string
	ws     *gws.Conn
	stop   chan struct{}
	silent atomic.Bool  // no pings, no replies: a dead edge
	pings  atomic.Int64 // pings sent
}

func newFakeEdge(t *testing.T, secret []byte, hb time.Duration) *fakeEdge {
	return newFakeEdgeMode(t, secret, hb, true)
}

// newSerialFakeEdge handles each connection's frames in order, as a real
// edge and hub do (a publish sent right after a join is processed after it).
func newSerialFakeEdge(t *testing.T, secret []byte, hb time.Duration) *fakeEdge {
	return newFakeEdgeMode(t, secret, hb, false)
}

func newFakeEdgeMode(t *testing.T, secret []byte, hb time.Duration, parallel bool) *fakeEdge {
	t.Helper()
	e := &fakeEdge{t: t, secret: secret, hb: hb,
		conns: map[*fconn]struct{}{}, rooms: map[string]*froom{}, joins: map[string]int{},
		forbid: map[string]bool{"forbidden": true}, cmids: map[string]uint64{}}
	e.up = gws.NewUpgrader(e, &gws.ServerOption{
		SubProtocols:    []string{protocol.Subprotocol},
		ParallelEnabled: parallel,
	})
	e.srv = httptest.NewServer(http.HandlerFunc(e.serveWS))
	t.Cleanup(e.close)
	return e
}

// newFakeEdgeTLS is newFakeEdge behind TLS; it returns the PEM of the
// certificate to trust.
func newFakeEdgeTLS(t *testing.T, secret []byte, hb time.Duration) *fakeEdge {
	t.Helper()
	e := &fakeEdge{t: t, secret: secret, hb: hb,
		conns: map[*fconn]struct{}{}, rooms: map[string]*froom{}, joins: map[string]int{},
		forbid: map[string]bool{"forbidden": true}, cmids: map[string]uint64{}}
	e.up = gws.NewUpgrader(e, &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}, ParallelEnabled: true})
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serveWS))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused certificates are expected
	e.srv.StartTLS()
	t.Cleanup(e.close)
	return e
}

func (e *fakeEdge) url() string {
	u := strings.Replace(e.srv.URL, "http", "ws", 1)
	return u + "/ws"
}

func (e *fakeEdge) close() {
	e.srv.Close()
	e.dropAll()
	e.wg.Wait()
}

func (e *fakeEdge) serveWS(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	reject := e.reject
	e.mu.Unlock()
	if reject != 0 {
		http.Error(w, http.StatusText(reject), reject)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != testOrigin {
		http.Error(w, "foreign origin", http.StatusForbidden)
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		raw = r.URL.Query().Get("token")
	}
	tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return e.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	user, _ := tok.Claims.GetSubject()
	ws, err := e.up.Upgrade(w, r)
	if err != nil {
		return
	}
	fc := &fconn{id: "c" + strconv.FormatInt(e.nextID.Add(1), 10), user: user, ws: ws, stop: make(chan struct{})}
	ws.Session().Store("fc", fc)
	e.mu.Lock()
	e.conns[fc] = struct{}{}
	e.accepted++
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ws.ReadLoop()
	}()
}

func fcOf(ws *gws.Conn) *fconn {
	v, _ := ws.Session().Load("fc")
	return v.(*fconn)
}

func (e *fakeEdge) send(fc *fconn, f *protocol.Frame) {
	b, err := protocol.EncodeFrame(f)
	if err != nil {
		e.t.Errorf("fake edge: encode: %v", err)
		return
	}
	_ = fc.ws.WriteMessage(gws.OpcodeBinary, b)
}

func (e *fakeEdge) OnOpen(ws *gws.Conn) {
	fc := fcOf(ws)
	e.send(fc, &protocol.Frame{Type: protocol.TypeWelcome, Conn: fc.id, User: fc.user, HB: uint32(e.hb / time.Millisecond)})
	e.mu.Lock()
	flap := e.flap
	e.mu.Unlock()
	if flap != 0 {
		_ = ws.WriteClose(flap, nil)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(e.hb)
		defer t.Stop()
		for {
			select {
			case <-fc.stop:
				return
			case <-t.C:
				if !fc.silent.Load() && ws.WritePing(nil) == nil {
					fc.pings.Add(1)
				}
			}
		}
	}()
}

func (e *fakeEdge) OnClose(ws *gws.Conn, _ error) {
	fc := fcOf(ws)
	close(fc.stop)
	e.mu.Lock()
	delete(e.conns, fc)
	for _, r := range e.rooms {
		delete(r.members, fc)
	}
	e.mu.Unlock()
}

func (e *fakeEdge) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }
func (e *fakeEdge) OnPong(*gws.Conn, []byte)      {}

func (e *fakeEdge) OnMessage(ws *gws.Conn, m *gws.Message) {
	defer m.Close()
	fc := fcOf(ws)
	if fc.silent.Load() {
		return
	}
	f, err := protocol.DecodeFrame(m.Bytes())
	if err != nil {
		e.send(fc, &protocol.Frame{Type: protocol.TypeError, Code: protocol.CodeBadFrame, Text: err.Error()})
		return
	}
	if fe := f.ValidateClient(protocol.Limits{MaxBody: 1 << 16}); fe != nil {
		e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: fe.Code, Text: fe.Text, Room: f.Room})
		return
	}
	if f.Room == roomVoid {
		return
	}
	if f.Type == protocol.TypeHistory {
		e.mu.Lock()
		e.histories++
		gate := e.histGate
		e.mu.Unlock()
		if gate != nil {
			<-gate
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock() // replies and broadcasts are written under mu: per-room order
	r := e.room(f.Room)
	_, member := r.members[fc]
	switch f.Type {
	case protocol.TypeJoin:
		e.joins[f.Room]++
		if e.forbid[f.Room] {
			e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: protocol.CodeForbidden, Text: "private room", Room: f.Room})
			return
		}
		r.members[fc] = struct{}{}
		var members []string
		for m := range r.members {
			members = append(members, m.user)
		}
		joined := &protocol.Frame{Type: protocol.TypeJoined, ID: f.ID, Room: f.Room, Seq: r.seq, Members: members}
		if f.Since == nil {
			ret := e.retained(r)
			joined.History = ret[len(ret)-min(len(ret), recentHistory, e.pageSize()):]
		} else {
			joined.History, joined.Reset = e.after(r, *f.Since, e.pageSize())
		}
		e.send(fc, joined)
		if member {
			return
		}
		for m := range r.members {
			if m != fc {
				e.send(m, &protocol.Frame{Type: protocol.TypePresence, Room: f.Room, User: fc.user, Event: protocol.EventJoin})
			}
		}
	case protocol.TypeLeave:
		if !member {
			e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: protocol.CodeNotMember, Text: "not a member", Room: f.Room})
			return
		}
		delete(r.members, fc)
		e.send(fc, &protocol.Frame{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room})
	case protocol.TypePublish:
		e.publishes++
		if !member {
			e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: protocol.CodeNotMember, Text: "join first", Room: f.Room})
			return
		}
		key := fc.user + "\x00" + f.Room + "\x00" + f.CMID
		seq, dup := e.cmids[key]
		if !dup {
			seq = e.sequence(r, &protocol.Frame{Type: protocol.TypeMessage, Room: f.Room, From: fc.user, CMID: f.CMID,
				TS: time.Now().UnixMilli(), Body: f.Body})
			e.cmids[key] = seq
		}
		if e.dropAck {
			e.dropAck = false
			_ = fc.ws.NetConn().Close()
			return
		}
		e.send(fc, &protocol.Frame{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: seq})
	case protocol.TypeHistory:
		if len(e.histFault) > 0 {
			code := e.histFault[0]
			e.histFault = e.histFault[1:]
			if code != 0 {
				e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: code, Text: "history fault", Room: f.Room})
			}
			return
		}
		limit := int(f.Limit)
		if limit == 0 {
			limit = protocol.DefaultHistoryLimit
		}
		limit = min(limit, e.pageSize())
		reply := &protocol.Frame{Type: protocol.TypeHistoryReply, ID: f.ID, Room: f.Room, Seq: r.seq}
		ret := e.retained(r)
		switch {
		case f.After > 0:
			reply.History, reply.Reset = e.after(r, f.After, limit)
		case f.Before > 0:
			i := sort.Search(len(ret), func(i int) bool { return ret[i].Seq >= f.Before })
			reply.History = ret[max(0, i-limit):i]
		default:
			reply.History = ret[len(ret)-min(len(ret), limit):]
		}
		e.send(fc, reply)
	case protocol.TypeTyping:
		for m := range r.members {
			if m != fc {
				e.send(m, &protocol.Frame{Type: protocol.TypeTypingEvent, Room: f.Room, User: fc.user})
			}
		}
	case protocol.TypeRead:
		for m := range r.members {
			e.send(m, &protocol.Frame{Type: protocol.TypeReceipt, Room: f.Room, User: fc.user, Seq: f.Seq})
		}
	}
}

// room returns the room, created on first use. mu held on entry.
func (e *fakeEdge) room(name string) *froom {
	r := e.rooms[name]
	if r == nil {
		r = &froom{members: map[*fconn]struct{}{}}
		e.rooms[name] = r
	}
	return r
}

// sequence gives msg the room's next seq, logs it and broadcasts it unless
// hidden. mu held on entry.
func (e *fakeEdge) sequence(r *froom, msg *protocol.Frame) uint64 {
	r.seq++
	msg.Seq = r.seq
	r.log = append(r.log, *msg)
	if r.hide > 0 {
		r.hide--
		return r.seq
	}
	for m := range r.members {
		e.send(m, msg)
	}
	return r.seq
}

func (e *fakeEdge) pageSize() int {
	if e.page == 0 {
		return protocol.MaxHistoryLimit
	}
	return e.page
}

// retained returns the messages r still retains. mu held on entry.
func (e *fakeEdge) retained(r *froom) []protocol.Frame {
	if e.retain > 0 && len(r.log) > e.retain {
		return r.log[len(r.log)-e.retain:]
	}
	return r.log
}

// after returns up to limit retained messages with seq > after, and
// whether some of those were no longer retained (then the oldest retained
// come first). mu held on entry.
func (e *fakeEdge) after(r *froom, after uint64, limit int) ([]protocol.Frame, bool) {
	ret := e.retained(r)
	if len(ret) == 0 {
		return nil, after < r.seq
	}
	first := ret[0].Seq
	reset := after+1 < first
	if reset {
		after = first - 1
	}
	i := min(int(after-(first-1)), len(ret))
	return ret[i:min(len(ret), i+limit)], reset
}

// Controls.

func (e *fakeEdge) snapshot() []*fconn {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*fconn, 0, len(e.conns))
	for fc := range e.conns {
		out = append(out, fc)
	}
	return out
}

// dropAll breaks every connection without a close frame.
func (e *fakeEdge) dropAll() {
	for _, fc := range e.snapshot() {
		_ = fc.ws.NetConn().Close()
	}
}

// closeAll closes every connection with code and reason.
func (e *fakeEdge) closeAll(code uint16, reason string) {
	for _, fc := range e.snapshot() {
		_ = fc.ws.WriteClose(code, []byte(reason))
	}
}

// silenceAll makes the current connections stop pinging and answering.
func (e *fakeEdge) silenceAll() {
	for _, fc := range e.snapshot() {
		fc.silent.Store(true)
	}
}

func (e *fakeEdge) setReject(status int) {
	e.mu.Lock()
	e.reject = status
	e.mu.Unlock()
}

func (e *fakeEdge) acceptedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepted
}

func (e *fakeEdge) joinCount(room string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.joins[room]
}

// memberConns returns the ids of the connections in room.
func (e *fakeEdge) memberConns(room string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	if r := e.rooms[room]; r != nil {
		for fc := range r.members {
			out = append(out, fc.id)
		}
	}
	return out
}

func (e *fakeEdge) setForbidden(room string) {
	e.mu.Lock()
	e.forbid[room] = true
	e.mu.Unlock()
}

// sendAll writes f to every connection.
func (e *fakeEdge) sendAll(f *protocol.Frame) {
	for _, fc := range e.snapshot() {
		e.send(fc, f)
	}
}

func (e *fakeEdge) setFlap(code uint16) {
	e.mu.Lock()
	e.flap = code
	e.mu.Unlock()
}

// Controls of history and delivery.

func (e *fakeEdge) setPage(n int) {
	e.mu.Lock()
	e.page = n
	e.mu.Unlock()
}

func (e *fakeEdge) setRetain(n int) {
	e.mu.Lock()
	e.retain = n
	e.mu.Unlock()
}

// hideNext makes the next n messages of room reach its history but not its
// members: the members see a gap.
func (e *fakeEdge) hideNext(room string, n int) {
	e.mu.Lock()
	e.room(room).hide = n
	e.mu.Unlock()
}

// rebroadcast sends the last message of room to its members again, as a
// hub does after a takeover.
func (e *fakeEdge) rebroadcast(room string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.room(room)
	if len(r.log) == 0 {
		e.t.Errorf("fake edge: nothing to re-broadcast in %s", room)
		return
	}
	for m := range r.members {
		e.send(m, &r.log[len(r.log)-1])
	}
}

// inject sequences a message from user in room as if published, without
// a connection of that user.
func (e *fakeEdge) inject(room, user string, body string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sequence(e.room(room), &protocol.Frame{Type: protocol.TypeMessage, Room: room, From: user,
		CMID: "inj-" + strconv.Itoa(len(e.room(room).log)+1), TS: time.Now().UnixMilli(), Body: []byte(body)})
}

// dropAckOnce makes the next publish drop its connection after sequencing
// and broadcasting the message, before the ack.
func (e *fakeEdge) dropAckOnce() {
	e.mu.Lock()
	e.dropAck = true
	e.mu.Unlock()
}

// dropUser breaks the connections of user without a close frame.
func (e *fakeEdge) dropUser(user string) {
	for _, fc := range e.snapshot() {
		if fc.user == user {
			_ = fc.ws.NetConn().Close()
		}
	}
}

func (e *fakeEdge) roomSeq(room string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.room(room).seq
}

func (e *fakeEdge) counts() (histories, publishes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.histories, e.publishes
}

// faultHistory makes the next history requests fail in turn: code 0 gets
// no reply, any other code an error frame.
func (e *fakeEdge) faultHistory(codes ...protocol.ErrorCode) {
	e.mu.Lock()
	e.histFault = append(e.histFault, codes...)
	e.mu.Unlock()
}

// restartRoom forgets room's messages and sequence, as a hub that lost its
// state would.
func (e *fakeEdge) restartRoom(room string) {
	e.mu.Lock()
	r := e.room(room)
	r.seq, r.log = 0, nil
	e.mu.Unlock()
}

// gateHistory holds history requests back until release is called.
func (e *fakeEdge) gateHistory() (release func()) {
	gate := make(chan struct{})
	e.mu.Lock()
	e.histGate = gate
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		e.histGate = nil
		e.mu.Unlock()
		close(gate)
	}
}
