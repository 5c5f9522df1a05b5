package edge

import (
	"context"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// maxPendingDeliveries bounds how many deliveries the consumer queues
// before it hands the connections to the writer even though more are
// waiting.
const maxPendingDeliveries = 64

// onDelivery handles one message from the edge's own queue. Bodies are
// final client frames: they are framed once and queued on every recipient,
// and the recipients are handed to the socket writer (writeLoop), which
// writes each one's frames with one system call. It runs on the consumer's
// goroutine, which owns pending and batched.
func (s *Server) onDelivery(d *broker.Delivery) {
	s.deliver(d)
	s.batched++
	if s.batched >= maxPendingDeliveries {
		s.handOver()
	}
}

// handOver passes the connections queued on since the last hand-over to
// the socket writer. It is the consumer's OnIdle. While the writer is busy
// with earlier connections, the consumer goes on queueing: a connection
// the writer has not reached yet takes the new frames in the same write,
// so under load each write carries more frames, and the consumer and the
// writer use a core each. Without a writer (tests) it writes itself.
func (s *Server) handOver() {
	s.batched = 0
	if len(s.pending) == 0 {
		return
	}
	if s.writerWake == nil {
		s.writePending(s.pending, &s.scratch)
		clear(s.pending)
		s.pending = s.pending[:0]
		return
	}
	s.handedMu.Lock()
	s.handed = append(s.handed, s.pending...)
	s.handedMu.Unlock()
	clear(s.pending)
	s.pending = s.pending[:0]
	select {
	case s.writerWake <- struct{}{}:
	default:
	}
}

// writePending writes the frames queued on each connection of cs.
func (s *Server) writePending(cs []*conn, scratch *[]byte) {
	for _, c := range cs {
		c.qmu.Lock()
		c.pending = false // frames queued from here on need another hand-over
		c.flush(scratch)
		c.qmu.Unlock()
	}
}

// writeLoop is the socket writer: it writes the connections the consumer
// hands over until ctx is done.
func (s *Server) writeLoop(ctx context.Context) {
	defer s.wg.Done()
	var work []*conn
	var scratch []byte
	for {
		select {
		case <-s.writerWake:
		case <-ctx.Done():
			return
		}
		for {
			s.handedMu.Lock()
			work, s.handed = s.handed, work[:0]
			s.handedMu.Unlock()
			if len(work) == 0 {
				break
			}
			s.writePending(work, &scratch)
			clear(work)
		}
	}
}

func (s *Server) deliver(d *broker.Delivery) {
	kind, id := protocol.ParseEgressKey(d.Key)
	switch kind {
	case protocol.KeyRoom:
		s.stats.roomMessages.Add(1)
		n := s.index.fanout(roomsOf, id, d.Body, &s.pending)
		if n == 0 && d.Reply == nil {
			s.stats.unmatched.Add(1)
		}
		s.stats.deliveries.Add(uint64(n))
		if d.Reply != nil {
			// The publisher's ack, riding with its message (PROTOCOL.md
			// §9.4): queued after the message, as a reply would be.
			s.replyTo(d.Conn, d.Reply)
		}
	case protocol.KeyUser:
		s.stats.userMessages.Add(1)
		s.stats.deliveries.Add(uint64(s.index.fanout(usersOf, id, d.Body, &s.pending)))
	case protocol.KeyEdge:
		s.stats.edgeMessages.Add(1)
		s.reply(d)
	default:
		s.stats.unmatched.Add(1)
		s.log.Warn().Str("key", d.Key).Msg("message with an unknown routing key dropped")
	}
}

// reply delivers a message addressed to one connection of this edge.
func (s *Server) reply(d *broker.Delivery) {
	c := s.connByID(d.Conn)
	if c == nil {
		s.stats.unmatched.Add(1)
		return
	}
	switch d.Type {
	case protocol.MsgJoined:
		// Start delivering the room before queueing the reply: broadcasts
		// after the hub's snapshot come after this message in the queue.
		c.mu.Lock()
		if !c.closed && c.rooms[d.Room] == roomPending {
			c.rooms[d.Room] = roomJoined
			s.index.addRoom(d.Room, c)
		}
		c.mu.Unlock()
	case protocol.MsgJoinFailed:
		c.mu.Lock()
		pending := !c.closed && c.rooms[d.Room] == roomPending
		if pending {
			delete(c.rooms, d.Room)
		}
		c.mu.Unlock()
		if pending {
			// Unbinding is a broker round trip; keep it off the consumer.
			s.wg.Add(1)
			go func(room string) {
				defer s.wg.Done()
				s.releaseRoom(room)
			}(d.Room)
		}
	}
	s.queueReply(c, d.Body)
}

// replyTo queues body for connection id of this edge. A broadcast carrying
// a reply reaches every edge with members of the room: on the others, and
// when the connection is gone, there is no such connection.
func (s *Server) replyTo(id string, body []byte) {
	if c := s.connByID(id); c != nil {
		s.queueReply(c, body)
	}
}

// connByID returns this edge's connection id, or nil.
func (s *Server) connByID(id string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// queueReply queues body, a frame for c alone, for the socket writer.
func (s *Server) queueReply(c *conn, body []byte) {
	s.stats.deliveries.Add(1)
	c.queueFor(newWSFrame(opBinary, body, 1), &s.pending)
}
