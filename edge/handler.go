package edge

import (
	"context"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// welcome is the first frame a connection receives.
func (c *conn) welcome() {
	s := c.srv
	b, err := protocol.EncodeFrame(&protocol.Frame{
		Type: protocol.TypeWelcome,
		Conn: c.id,
		User: c.user,
		HB:   uint32(s.cfg.Heartbeat / time.Millisecond),
	})
	if err != nil {
		s.log.Error().Err(err).Msg("encoding welcome")
		return
	}
	c.send(b)
	s.log.Debug().Str("conn", c.id).Str("user", c.user).Str("remote", c.remote).Msg("connected")
}

// onMessage handles one client message. It runs on the connection's
// reader, so the messages of one connection are handled one at a time and
// in order; a blocking broker call here delays only this connection.
func (s *Server) onMessage(c *conn, op byte, payload []byte) {
	s.stats.framesIn.Add(1)
	if op != opBinary {
		c.sendError(0, "", protocol.CodeBadFrame, "frames are binary MessagePack messages")
		return
	}
	if !c.limiter.Allow() {
		c.sendError(0, "", protocol.CodeRateLimited, "too many frames; slow down")
		return
	}
	f, err := protocol.DecodeFrame(payload)
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
// returning once the broker confirmed it. It runs on c's reader,
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
	c.ingress.durable = envelopeDurable(kind, f)
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
