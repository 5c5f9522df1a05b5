package hub

import (
	"fmt"
	"sort"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// shard is the state of one ingress shard. Only its consumer goroutine
// touches it.
type shard struct {
	w     *Worker
	n     int
	rooms map[string]*room
}

// room is one room's state.
type room struct {
	seq uint64
	// members maps a user to its connections in the room.
	members map[string]map[connKey]struct{}
}

type connKey struct{ edge, conn string }

func newShard(w *Worker, n int) *shard {
	return &shard{w: w, n: n, rooms: make(map[string]*room)}
}

func (sh *shard) room(name string) *room {
	r := sh.rooms[name]
	if r == nil {
		r = &room{members: make(map[string]map[connKey]struct{})}
		sh.rooms[name] = r
		sh.w.stats.rooms.Add(1)
	}
	return r
}

// handle processes one envelope. It acknowledges the delivery once every
// broadcast and reply it caused is confirmed by the broker; on a broker
// failure it returns the envelope to the queue.
func (sh *shard) handle(d *broker.Delivery) {
	w := sh.w
	env, err := protocol.DecodeEnvelope(d.Body, protocol.Limits{MaxBody: w.cfg.MaxBody})
	if err != nil {
		w.stats.badEnvelopes.Add(1)
		w.log.Warn().Err(err).Int("shard", sh.n).Msg("dropping bad envelope")
		_ = d.Ack()
		return
	}
	if want := protocol.ShardOf(env.Frame.Room, w.cfg.Topology.NumShards()); want != sh.n {
		w.stats.badEnvelopes.Add(1)
		w.log.Warn().Str("room", env.Frame.Room).Int("shard", sh.n).Int("want", want).Msg("dropping envelope routed to the wrong shard")
		_ = d.Ack()
		return
	}
	switch {
	case env.Kind == protocol.KindDisconnect:
		err = sh.leave(&env, false)
	case env.Frame.Type == protocol.TypeJoin:
		err = sh.join(&env)
	case env.Frame.Type == protocol.TypeLeave:
		err = sh.leave(&env, true)
	case env.Frame.Type == protocol.TypePublish:
		err = sh.publish(&env)
	}
	w.stats.processed.Add(1)
	if err != nil {
		w.log.Warn().Err(err).Str("room", env.Frame.Room).Msg("envelope not processed; requeued")
		_ = d.Nack(true)
		return
	}
	_ = d.Ack()
}

func (sh *shard) join(env *protocol.Envelope) error {
	f := &env.Frame
	if h := sh.w.hooks.Join; h != nil {
		if err := h(env.User, f.Room); err != nil {
			return sh.replyError(env, protocol.MsgJoinFailed, protocol.CodeForbidden, err.Error())
		}
	}
	r := sh.room(f.Room)
	key := connKey{env.Edge, env.Conn}
	conns := r.members[env.User]
	first := len(conns) == 0
	if conns == nil {
		conns = make(map[connKey]struct{})
		r.members[env.User] = conns
	}
	conns[key] = struct{}{}
	members := make([]string, 0, len(r.members))
	for u := range r.members {
		members = append(members, u)
	}
	sort.Strings(members)
	joined := protocol.Frame{Type: protocol.TypeJoined, ID: f.ID, Room: f.Room, Seq: r.seq, Members: members}
	if err := sh.reply(env, protocol.MsgJoined, &joined); err != nil {
		return err
	}
	if first {
		return sh.broadcast(f.Room, &protocol.Frame{Type: protocol.TypePresence, Room: f.Room, User: env.User, Event: protocol.EventJoin})
	}
	return nil
}

// leave removes a connection from a room. reply is false for disconnects,
// whose connection is gone.
func (sh *shard) leave(env *protocol.Envelope, reply bool) error {
	f := &env.Frame
	gone := false
	if r := sh.rooms[f.Room]; r != nil {
		if conns := r.members[env.User]; conns != nil {
			if _, ok := conns[connKey{env.Edge, env.Conn}]; ok {
				delete(conns, connKey{env.Edge, env.Conn})
				if len(conns) == 0 {
					delete(r.members, env.User)
					gone = true
				}
			}
		}
	}
	if reply {
		if err := sh.reply(env, protocol.MsgReply, &protocol.Frame{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room}); err != nil {
			return err
		}
	}
	if gone {
		return sh.broadcast(f.Room, &protocol.Frame{Type: protocol.TypePresence, Room: f.Room, User: env.User, Event: protocol.EventLeave})
	}
	return nil
}

func (sh *shard) publish(env *protocol.Envelope) error {
	f := &env.Frame
	integrator := env.Kind == protocol.KindIntegrator
	r := sh.rooms[f.Room]
	if !integrator {
		if r == nil || !isMember(r, env) {
			return sh.replyError(env, protocol.MsgReply, protocol.CodeNotMember, "join the room before publishing")
		}
		if h := sh.w.hooks.Publish; h != nil {
			if err := h(env.User, f.Room, f.Body); err != nil {
				return sh.replyError(env, protocol.MsgReply, protocol.CodeForbidden, err.Error())
			}
		}
	}
	if r == nil {
		r = sh.room(f.Room)
	}
	seq := r.seq + 1
	msg := protocol.Frame{
		Type: protocol.TypeMessage,
		Room: f.Room,
		Seq:  seq,
		From: env.User,
		CMID: f.CMID,
		TS:   time.Now().UnixMilli(),
		Body: f.Body,
	}
	if err := sh.broadcast(f.Room, &msg); err != nil {
		return err
	}
	r.seq = seq
	sh.w.stats.messages.Add(1)
	if integrator {
		return nil
	}
	ack := protocol.Frame{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: seq}
	if err := sh.reply(env, protocol.MsgReply, &ack); err != nil {
		// The message is sequenced and out; the sender misses only its ack.
		sh.w.log.Warn().Err(err).Str("room", f.Room).Uint64("seq", seq).Msg("ack not delivered")
	}
	return nil
}

func isMember(r *room, env *protocol.Envelope) bool {
	_, ok := r.members[env.User][connKey{env.Edge, env.Conn}]
	return ok
}

// broadcast encodes f once and publishes it to the room's key.
func (sh *shard) broadcast(roomName string, f *protocol.Frame) error {
	body, err := protocol.EncodeFrame(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	return sh.w.publish(protocol.RoomKey(roomName), broker.Message{Body: body})
}

// reply sends f to the connection that sent env, with the given AMQP type.
func (sh *shard) reply(env *protocol.Envelope, typ string, f *protocol.Frame) error {
	if env.Kind == protocol.KindIntegrator {
		return nil
	}
	body, err := protocol.EncodeFrame(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	return sh.w.publish(protocol.EdgeKey(env.Edge), broker.Message{Body: body, Type: typ, Conn: env.Conn, Room: env.Frame.Room})
}

func (sh *shard) replyError(env *protocol.Envelope, typ string, code protocol.ErrorCode, text string) error {
	sh.w.stats.refused.Add(1)
	return sh.reply(env, typ, &protocol.Frame{Type: protocol.TypeError, ID: env.Frame.ID, Room: env.Frame.Room, Code: code, Text: text})
}
