package hub

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// shard is one ingress shard this hub owns. Its state and counters are
// touched only by the shard's consumer goroutine (handle and start).
type shard struct {
	w  *Worker
	n  int
	st *state
	// appended counts records written since the last snapshot.
	appended int
	// stale is set by each (re)subscription: the state must be replayed
	// before the next envelope, because another hub may have owned the
	// shard meanwhile.
	stale atomic.Bool
}

// invalidate marks the state stale; it runs as the consumer's OnStart.
func (sh *shard) invalidate() error {
	sh.stale.Store(true)
	return nil
}

func newShard(w *Worker, n int) *shard {
	return &shard{w: w, n: n, st: newState(w.limits())}
}

// replay rebuilds the shard from its log. It runs before the first
// envelope of each subscription, when this consumer is the active one and
// the previous owner has stopped, so the log holds all it wrote.
func (sh *shard) replay() error {
	w := sh.w
	begin := time.Now()
	st := newState(w.limits())
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ReplayTimeout)
	defer cancel()
	n, err := w.state.replay(ctx, sh.n, func(rec *record) { st.apply(rec) })
	if err != nil {
		w.log.Error().Err(err).Int("shard", sh.n).Msg("replaying shard state; will retry")
		return err
	}
	sh.st = st
	sh.appended = n
	w.stats.takeovers.Add(1)
	w.log.Info().Int("shard", sh.n).Int("records", n).Int("rooms", len(st.rooms)).
		Dur("took", time.Since(begin)).Msg("shard state replayed; processing")
	return nil
}

// handle processes one envelope. It acknowledges the delivery once every
// record, broadcast and reply it caused is confirmed by the broker; on a
// broker failure it returns the envelope to the queue.
func (sh *shard) handle(d *broker.Delivery) {
	w := sh.w
	if sh.stale.Load() {
		if err := sh.replay(); err != nil {
			_ = d.Nack(true)
			time.Sleep(200 * time.Millisecond) // back off before the redelivery retries the replay
			return
		}
		sh.stale.Store(false)
	}
	env, err := protocol.DecodeEnvelope(d.Body, protocol.Limits{MaxBody: w.cfg.MaxBody})
	if err != nil {
		w.stats.badEnvelopes.Add(1)
		w.log.Warn().Err(err).Int("shard", sh.n).Msg("dropping bad envelope")
		_ = d.Ack()
		return
	}
	if env.Kind == protocol.KindTick {
		err = sh.tick()
	} else if want := protocol.ShardOf(env.Frame.Room, w.cfg.Topology.NumShards()); want != sh.n {
		w.stats.badEnvelopes.Add(1)
		w.log.Warn().Str("room", env.Frame.Room).Int("shard", sh.n).Int("want", want).Msg("dropping envelope routed to the wrong shard")
		_ = d.Ack()
		return
	} else {
		err = sh.dispatch(&env, d.Redelivered)
	}
	w.stats.processed.Add(1)
	if err == nil {
		err = sh.maybeSnapshot()
	}
	if err != nil {
		w.log.Warn().Err(err).Str("room", env.Frame.Room).Msg("envelope not processed; requeued")
		_ = d.Nack(true)
		return
	}
	_ = d.Ack()
}

func (sh *shard) dispatch(env *protocol.Envelope, redelivered bool) error {
	if env.Kind == protocol.KindDisconnect {
		return sh.leave(env, false)
	}
	switch env.Frame.Type {
	case protocol.TypeJoin:
		return sh.join(env)
	case protocol.TypeLeave:
		return sh.leave(env, true)
	case protocol.TypePublish:
		return sh.publish(env, redelivered)
	case protocol.TypeHistory:
		return sh.history(env)
	case protocol.TypeTyping:
		return sh.typing(env)
	case protocol.TypeRead:
		return sh.read(env)
	}
	return nil
}

// commit makes rec durable, then applies it, and broadcasts the presence
// changes it caused.
func (sh *shard) commit(rec *record) error {
	ctx, cancel := context.WithTimeout(context.Background(), sh.w.cfg.PublishTimeout)
	defer cancel()
	if err := sh.w.state.append(ctx, sh.n, rec); err != nil {
		return err
	}
	sh.appended++
	for _, c := range sh.st.apply(rec) {
		if err := sh.broadcast(c.room, &protocol.Frame{Type: protocol.TypePresence, Room: c.room, User: c.user, Event: c.event}); err != nil {
			return err
		}
	}
	return nil
}

// maybeSnapshot writes the whole state every SnapshotEvery records, so a
// replay never needs more of the stream than retention keeps.
func (sh *shard) maybeSnapshot() error {
	if sh.appended < sh.w.cfg.SnapshotEvery {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.w.cfg.PublishTimeout)
	defer cancel()
	if err := sh.w.state.append(ctx, sh.n, &record{K: recSnapshot, Snap: sh.st.snapshot()}); err != nil {
		return err
	}
	sh.appended = 0
	sh.w.stats.snapshots.Add(1)
	return nil
}

func (sh *shard) join(env *protocol.Envelope) error {
	f := &env.Frame
	if err := sh.w.authorizeJoin(env.User, f.Room); err != nil {
		return sh.replyError(env, protocol.MsgJoinFailed, protocol.CodeForbidden, err.Error())
	}
	r := sh.st.room(f.Room)
	if _, ok := r.members[env.User][connKey{env.Edge, env.Conn}]; !ok {
		if err := sh.commit(&record{K: recJoin, Room: f.Room, User: env.User, Edge: env.Edge, Conn: env.Conn}); err != nil {
			return err
		}
	}
	members := make([]string, 0, len(r.members))
	for u := range r.members {
		members = append(members, u)
	}
	sort.Strings(members)
	joined := protocol.Frame{Type: protocol.TypeJoined, ID: f.ID, Room: f.Room, Seq: r.seq, Members: members}
	if f.Since != nil {
		joined.History, joined.Reset = r.historyAfter(*f.Since, protocol.MaxHistoryLimit)
	} else {
		joined.History = r.historyBefore(0, sh.w.cfg.JoinHistory)
	}
	return sh.reply(env, protocol.MsgJoined, &joined)
}

// leave removes a connection from a room. reply is false for disconnects,
// whose connection is gone.
func (sh *shard) leave(env *protocol.Envelope, reply bool) error {
	f := &env.Frame
	if r := sh.st.rooms[f.Room]; r != nil {
		if _, ok := r.members[env.User][connKey{env.Edge, env.Conn}]; ok {
			if err := sh.commit(&record{K: recLeave, Room: f.Room, User: env.User, Edge: env.Edge, Conn: env.Conn}); err != nil {
				return err
			}
		}
	}
	if !reply {
		return nil
	}
	return sh.reply(env, protocol.MsgReply, &protocol.Frame{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room})
}

func (sh *shard) isMember(env *protocol.Envelope) bool {
	r := sh.st.rooms[env.Frame.Room]
	if r == nil {
		return false
	}
	_, ok := r.members[env.User][connKey{env.Edge, env.Conn}]
	return ok
}

func (sh *shard) publish(env *protocol.Envelope, redelivered bool) error {
	f := &env.Frame
	integrator := env.Kind == protocol.KindIntegrator
	if !integrator {
		if !sh.isMember(env) {
			return sh.replyError(env, protocol.MsgReply, protocol.CodeNotMember, "join the room before publishing")
		}
		if h := sh.w.hooks.Publish; h != nil {
			if err := h(env.User, f.Room, f.Body); err != nil {
				return sh.replyError(env, protocol.MsgReply, protocol.CodeForbidden, err.Error())
			}
		}
	}
	r := sh.st.room(f.Room)
	if seq, ok := r.dedup[msgKey{env.User, f.CMID}]; ok {
		// A retry. It is never sequenced twice; the retry's ack carries the
		// original seq. A redelivered envelope may be one whose processing
		// stopped between the log and the broadcast: broadcast it again
		// (clients drop seqs they have).
		sh.w.stats.duplicates.Add(1)
		if redelivered {
			if err := sh.rebroadcast(f.Room, r, seq); err != nil {
				return err
			}
		}
		return sh.ack(env, seq)
	}
	rec := &record{K: recMessage, Room: f.Room, Seq: r.seq + 1, User: env.User, CMID: f.CMID, TS: time.Now().UnixMilli(), Body: f.Body}
	if err := sh.commit(rec); err != nil {
		return err
	}
	msg := messageFrame(f.Room, rec)
	if err := sh.broadcast(f.Room, &msg); err != nil {
		return err
	}
	sh.w.stats.messages.Add(1)
	return sh.ack(env, rec.Seq)
}

func (sh *shard) ack(env *protocol.Envelope, seq uint64) error {
	if env.Kind == protocol.KindIntegrator {
		return nil
	}
	f := &env.Frame
	ack := protocol.Frame{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: seq}
	if err := sh.reply(env, protocol.MsgReply, &ack); err != nil {
		// The message is durable and out; the sender misses only its ack
		// and will retry, which de-duplication answers.
		sh.w.log.Warn().Err(err).Str("room", f.Room).Uint64("seq", seq).Msg("ack not delivered")
	}
	return nil
}

// rebroadcast publishes a retained message again.
func (sh *shard) rebroadcast(roomName string, r *room, seq uint64) error {
	i := sort.Search(len(r.history), func(i int) bool { return r.history[i].Seq >= seq })
	if i == len(r.history) || r.history[i].Seq != seq {
		return nil // no longer retained; members resume through history
	}
	msg := messageFrame(roomName, &r.history[i])
	return sh.broadcast(roomName, &msg)
}

func (sh *shard) history(env *protocol.Envelope) error {
	f := &env.Frame
	if !sh.isMember(env) {
		// The edge lets a pending join through; the hub, which may have
		// refused that join, decides.
		return sh.replyError(env, protocol.MsgReply, protocol.CodeNotMember, "join the room before reading its history")
	}
	limit := int(f.Limit)
	if limit == 0 {
		limit = protocol.DefaultHistoryLimit
	}
	out := protocol.Frame{Type: protocol.TypeHistoryReply, ID: f.ID, Room: f.Room}
	if r := sh.st.rooms[f.Room]; r != nil {
		out.Seq = r.seq
		if f.After > 0 {
			out.History, out.Reset = r.historyAfter(f.After, limit)
		} else {
			out.History = r.historyBefore(f.Before, limit)
		}
	}
	return sh.reply(env, protocol.MsgReply, &out)
}

func (sh *shard) typing(env *protocol.Envelope) error {
	if !sh.isMember(env) {
		return nil // ephemeral: no error for a stale indicator
	}
	return sh.broadcast(env.Frame.Room, &protocol.Frame{Type: protocol.TypeTypingEvent, Room: env.Frame.Room, User: env.User})
}

func (sh *shard) read(env *protocol.Envelope) error {
	f := &env.Frame
	if !sh.isMember(env) {
		return sh.replyError(env, protocol.MsgReply, protocol.CodeNotMember, "join the room before marking it read")
	}
	r := sh.st.rooms[f.Room]
	seq := f.Seq
	if seq > r.seq {
		seq = r.seq
	}
	if seq <= r.reads[env.User] {
		return nil
	}
	if err := sh.commit(&record{K: recRead, Room: f.Room, User: env.User, Seq: seq}); err != nil {
		return err
	}
	return sh.broadcast(f.Room, &protocol.Frame{Type: protocol.TypeReceipt, Room: f.Room, User: env.User, Seq: seq})
}

// tick removes the members of edges that stopped announcing themselves,
// and the old connections of edges that restarted, broadcasting the leaves.
func (sh *shard) tick() error {
	// stale[edge] is true when some member connection of edge is gone.
	type edgeState struct {
		alive bool
		inc   string
		stale bool
	}
	edges := map[string]*edgeState{}
	for _, r := range sh.st.rooms {
		for _, conns := range r.members {
			for k := range conns {
				es := edges[k.edge]
				if es == nil {
					alive, inc := sh.w.edges.alive(k.edge)
					es = &edgeState{alive: alive, inc: inc}
					edges[k.edge] = es
				}
				if !es.alive || (es.inc != "" && !keeps(es.inc, k.conn)) {
					es.stale = true
				}
			}
		}
	}
	names := make([]string, 0, len(edges))
	for e, es := range edges {
		if es.stale {
			names = append(names, e)
		}
	}
	sort.Strings(names)
	for _, e := range names {
		rec := &record{K: recEdgeGone, Edge: e}
		if es := edges[e]; es.alive {
			rec.Conn = es.inc // a restart: keep the new incarnation's connections
		}
		sh.w.log.Info().Str("edge", e).Bool("restarted", rec.Conn != "").Int("shard", sh.n).Msg("edge gone: removing its members")
		if err := sh.commit(rec); err != nil {
			return err
		}
	}
	return nil
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
