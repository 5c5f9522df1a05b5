package edge

import (
	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// maxPendingDeliveries bounds how many deliveries the consumer queues
// before it writes to the sockets even though more are waiting: a burst is
// written in slices, each costing one write per connection.
const maxPendingDeliveries = 64

// onDelivery handles one message from the edge's own queue. Bodies are
// final client frames: they are framed once and queued on every recipient;
// the writes happen in flushPending, once per connection for all the
// deliveries that arrived together. It runs on the consumer's goroutine,
// which owns pending and batched.
func (s *Server) onDelivery(d *broker.Delivery) {
	s.deliver(d)
	s.batched++
	if s.batched >= maxPendingDeliveries {
		s.flushPending()
	}
}

// flushPending writes what the deliveries since the last flush queued. It
// is the consumer's OnIdle.
func (s *Server) flushPending() {
	for i, c := range s.pending {
		c.qmu.Lock()
		c.pending = false
		c.flush(&s.scratch)
		c.qmu.Unlock()
		s.pending[i] = nil
	}
	s.pending = s.pending[:0]
	s.batched = 0
}

func (s *Server) deliver(d *broker.Delivery) {
	kind, id := protocol.ParseEgressKey(d.Key)
	switch kind {
	case protocol.KeyRoom:
		s.stats.roomMessages.Add(1)
		n := s.index.fanout(roomsOf, id, d.Body, &s.pending)
		if n == 0 {
			s.stats.unmatched.Add(1)
		}
		s.stats.deliveries.Add(uint64(n))
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
	s.mu.Lock()
	c := s.byID[d.Conn]
	s.mu.Unlock()
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
	s.stats.deliveries.Add(1)
	c.qmu.Lock()
	if c.push(newWSFrame(opBinary, d.Body, 1)) && !c.pending {
		c.pending = true
		s.pending = append(s.pending, c)
	}
	c.qmu.Unlock()
}
