package client

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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

// fakeEdge is a small in-test edge: JWT at the handshake, Origin check,
// welcome, pings every hb, joined/left/ack/error replies, broadcasts to room
// members (the sender included) and presence. It handles each connection's
// frames concurrently (gws ParallelEnabled), so replies leave out of order.
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
}

type froom struct {
	seq     uint64
	members map[*fconn]struct{}
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
	t.Helper()
	e := &fakeEdge{t: t, secret: secret, hb: hb,
		conns: map[*fconn]struct{}{}, rooms: map[string]*froom{}, joins: map[string]int{},
		forbid: map[string]bool{"forbidden": true}}
	e.up = gws.NewUpgrader(e, &gws.ServerOption{
		SubProtocols:    []string{protocol.Subprotocol},
		ParallelEnabled: true,
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
		forbid: map[string]bool{"forbidden": true}}
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
	e.mu.Lock()
	defer e.mu.Unlock() // replies and broadcasts are written under mu: per-room order
	r := e.rooms[f.Room]
	if r == nil {
		r = &froom{members: map[*fconn]struct{}{}}
		e.rooms[f.Room] = r
	}
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
		e.send(fc, &protocol.Frame{Type: protocol.TypeJoined, ID: f.ID, Room: f.Room, Seq: r.seq, Members: members})
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
		if !member {
			e.send(fc, &protocol.Frame{Type: protocol.TypeError, ID: f.ID, Code: protocol.CodeNotMember, Text: "join first", Room: f.Room})
			return
		}
		r.seq++
		msg := &protocol.Frame{Type: protocol.TypeMessage, Room: f.Room, Seq: r.seq, From: fc.user, CMID: f.CMID,
			TS: time.Now().UnixMilli(), Body: f.Body}
		for m := range r.members {
			e.send(m, msg)
		}
		e.send(fc, &protocol.Frame{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: r.seq})
	}
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
