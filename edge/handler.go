package edge

import (
	"context"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

const sessionKey = "c"

// handler receives gws events. Each method runs on the connection's read
// goroutine, so the frames of one connection are handled one at a time and
// in order; a blocking broker call here delays only this connection.
type handler struct{ s *Server }

func connOf(ws *gws.Conn) *conn {
	v, _ := ws.Session().Load(sessionKey)
	c, _ := v.(*conn)
	return c
}

func (h *handler) OnOpen(ws *gws.Conn) {
	c := connOf(ws)
	b, err := protocol.EncodeFrame(&protocol.Frame{
		Type: protocol.TypeWelcome,
		Conn: c.id,
		User: c.user,
		HB:   uint32(h.s.cfg.Heartbeat / time.Millisecond),
	})
	if err != nil {
		h.s.log.Error().Err(err).Msg("encoding welcome")
		return
	}
	c.send(b)
	h.s.log.Debug().Str("conn", c.id).Str("user", c.user).Str("remote", c.remote).Msg("connected")
}

func (h *handler) OnPing(ws *gws.Conn, payload []byte) {
	c := connOf(ws)
	c.lastSeen.Store(time.Now().UnixNano())
	c.enqueue(newWSFrame(opPong, payload, 1))
}

func (h *handler) OnPong(ws *gws.Conn, _ []byte) {
	connOf(ws).lastSeen.Store(time.Now().UnixNano())
}

func (h *handler) OnClose(ws *gws.Conn, err error) {
	c := connOf(ws)
	if c == nil {
		return
	}
	h.s.closed(c)
}

func (h *handler) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := connOf(ws)
	c.lastSeen.Store(time.Now().UnixNano())
	s := h.s
	s.stats.framesIn.Add(1)
	if msg.Opcode != gws.OpcodeBinary {
		c.sendError(0, "", protocol.CodeBadFrame, "frames are binary MessagePack messages")
		return
	}
	if !c.limiter.Allow() {
		c.sendError(0, "", protocol.CodeRateLimited, "too many frames; slow down")
		return
	}
	f, err := protocol.DecodeFrame(msg.Bytes())
	if err != nil {
		c.sendError(0, "", protocol.CodeBadFrame, err.Error())
		return
	}
	if fe := f.ValidateClient(protocol.Limits{MaxBody: s.cfg.MaxMessage}); fe != nil {
		room := f.Room
		if fe.Code == protocol.CodeInvalidRoom {
			room = ""
		}
		c.sendError(f.ID, room, fe.Code, fe.Text)
		return
	}
	switch f.Type {
	case protocol.TypeJoin:
		s.join(c, &f)
	case protocol.TypeLeave:
		s.leave(c, &f)
	case protocol.TypePublish, protocol.TypeHistory, protocol.TypeRead, protocol.TypeTyping:
		s.forMember(c, &f)
	}
}

// join binds the edge queue to the room (first local member) before the
// hub sees the join, so no broadcast after the hub's snapshot can miss
// this edge. The connection receives the room from the hub's joined reply on.
func (s *Server) join(c *conn, f *protocol.Frame) {
	if !protocol.MayJoin(c.user, c.grants, f.Room) {
		c.sendError(f.ID, f.Room, protocol.CodeForbidden, "this room is private")
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	_, known := c.rooms[f.Room]
	if !known {
		if len(c.rooms) >= s.cfg.MaxRoomsPerConn {
			c.mu.Unlock()
			c.sendError(f.ID, f.Room, protocol.CodeTooManyRooms, "joined too many rooms")
			return
		}
		c.rooms[f.Room] = roomPending
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if !known {
		if err := s.binder.acquire(ctx, protocol.RoomKey(f.Room)); err != nil {
			s.forgetPending(c, f.Room, false)
			s.log.Warn().Err(err).Str("room", f.Room).Msg("binding room")
			c.sendError(f.ID, f.Room, protocol.CodeUnavailable, "broker unavailable; retry")
			return
		}
	}
	if err := s.forward(c, protocol.KindClient, f); err != nil {
		if !known {
			s.forgetPending(c, f.Room, true)
		}
		c.sendError(f.ID, f.Room, protocol.CodeUnavailable, "broker unavailable; retry")
	}
}

// forgetPending drops a pending join of room, releasing its binding when
// bound is true.
func (s *Server) forgetPending(c *conn, room string, bound bool) {
	c.mu.Lock()
	st, ok := c.rooms[room]
	if ok && st == roomPending {
		delete(c.rooms, room)
	}
	c.mu.Unlock()
	if ok && st == roomPending && bound {
		s.releaseRoom(room)
	}
}

func (s *Server) releaseRoom(room string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.binder.release(ctx, protocol.RoomKey(room)); err != nil {
		s.log.Warn().Err(err).Str("room", room).Msg("unbinding room")
	}
}

// leave stops local delivery at once and tells the hub, which answers with
// a left frame. Leaving a room not joined is answered by the hub too, so a
// retried leave is harmless.
func (s *Server) leave(c *conn, f *protocol.Frame) {
	c.mu.Lock()
	st, ok := c.rooms[f.Room]
	if ok {
		delete(c.rooms, f.Room)
	}
	c.mu.Unlock()
	if ok {
		if st == roomJoined {
			s.index.removeRoom(f.Room, c)
		}
		s.releaseRoom(f.Room)
	}
	if err := s.forward(c, protocol.KindClient, f); err != nil {
		c.sendError(f.ID, f.Room, protocol.CodeUnavailable, "broker unavailable; retry")
	}
}

// forMember forwards a request that only a member of the room may make:
// publish, history, read and typing.
func (s *Server) forMember(c *conn, f *protocol.Frame) {
	c.mu.Lock()
	_, ok := c.rooms[f.Room]
	c.mu.Unlock()
	if !ok {
		if f.Type != protocol.TypeTyping {
			c.sendError(f.ID, f.Room, protocol.CodeNotMember, "join the room first")
		}
		return
	}
	if err := s.forward(c, protocol.KindClient, f); err != nil {
		c.sendError(f.ID, f.Room, protocol.CodeUnavailable, "broker unavailable; retry")
	}
}

// forward wraps f in an envelope and publishes it to the room's shard,
// returning once the broker confirmed it. It runs on c's read goroutine,
// so c has one envelope in flight at a time.
func (s *Server) forward(c *conn, kind protocol.EnvelopeKind, f *protocol.Frame) error {
	env := protocol.Envelope{
		V:     protocol.EnvelopeVersion,
		Kind:  kind,
		Edge:  s.cfg.ID,
		Conn:  c.id,
		User:  c.user,
		TS:    time.Now().UnixMilli(),
		Frame: *f,
	}
	body, err := protocol.EncodeEnvelope(&env)
	if err != nil {
		return err
	}
	if c.ingress.done == nil {
		c.ingress.done = make(chan error, 1)
	}
	c.ingress.key = protocol.ShardKey(protocol.ShardOf(f.Room, s.cfg.Topology.NumShards()))
	c.ingress.body = body
	err = s.ingress.publish(&c.ingress)
	c.ingress.body = nil
	if err != nil {
		s.stats.publishFailures.Add(1)
		s.log.Warn().Err(err).Str("conn", c.id).Str("room", f.Room).Msg("publishing to ingress")
		return err
	}
	s.stats.framesForwarded.Add(1)
	return nil
}

// closed cleans up after a connection: local indexes, bindings, and a
// disconnect envelope per room so the hubs update presence.
func (s *Server) closed(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.byID, c.id)
	s.mu.Unlock()
	c.stop()
	c.mu.Lock()
	c.closed = true
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	for room, st := range rooms {
		if st == roomJoined {
			s.index.removeRoom(room, c)
		}
		s.releaseRoom(room)
		f := protocol.Frame{Type: protocol.TypeLeave, Room: room}
		_ = s.forward(c, protocol.KindDisconnect, &f)
	}
	s.index.removeUser(c)
	<-c.userBound // the binding is released only after it was taken
	if !c.userBindFailed {
		s.releaseUser(c.user)
	}
	s.stats.connections.Add(-1)
	s.log.Debug().Str("conn", c.id).Msg("disconnected")
}

// sendError queues an error frame for this connection.
func (c *conn) sendError(id uint32, room string, code protocol.ErrorCode, text string) {
	c.srv.stats.errorsSent.Add(1)
	b, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeError, ID: id, Room: room, Code: code, Text: text})
	if err != nil {
		return
	}
	c.send(b)
}

// connSession is gws's session storage cut down to what the edge keeps in
// it: one value, the connection's *conn (gws's default is a map per
// connection). It is written once, before the read loop starts.
type connSession struct {
	mu  sync.Mutex
	key string
	val any
	set bool
}

func newConnSession() gws.SessionStorage { return &connSession{} }

func (s *connSession) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set {
		return 1
	}
	return 0
}

func (s *connSession) Load(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set && s.key == key {
		return s.val, true
	}
	return nil, false
}

func (s *connSession) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set && s.key == key {
		s.key, s.val, s.set = "", nil, false
	}
}

// Store keeps one value; storing under another key replaces it.
func (s *connSession) Store(key string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.val, s.set = key, value, true
}

func (s *connSession) Range(f func(key string, value any) bool) {
	s.mu.Lock()
	key, val, set := s.key, s.val, s.set
	s.mu.Unlock()
	if set {
		f(key, val)
	}
}
