package hub

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// shard is one ingress shard this hub owns. Everything in it is touched
// only by the shard's consumer goroutine: handle (the consumer's handler),
// flush (its OnIdle) and invalidate (its OnStart).
//
// A shard processes its envelopes in batches: handle collects the
// deliveries that arrive together, and flush processes them as one batch
// (see process), so that a burst costs two broker round trips (the state
// records, then the broadcasts and replies) rather than three per envelope.
type shard struct {
	w  *Worker
	n  int
	st *state
	// stream is the shard's state stream, hearth.state.<n>.
	stream string
	// appended counts records written since the last snapshot.
	appended int
	// stale is set by each (re)subscription, and by a batch that failed:
	// the state must be replayed before the next batch, because another
	// hub may have owned the shard meanwhile, or because the state holds
	// records that did not reach the stream.
	stale atomic.Bool
	// maxBatch bounds a batch's deliveries, and its envelopes but for the
	// last delivery's (an envelope batch is never split).
	maxBatch int
	// batch is the batch being collected and processed.
	batch batch
	// edgeCCs caches, per edge replied to, a one-element slice holding
	// its egress routing key (edgeCC).
	edgeCCs map[string][]string
}

// batch is what a shard collected since its last flush, and what
// processing it produces. Its slices are reused from batch to batch.
type batch struct {
	// entries are the deliveries, in order.
	entries []entry
	// envs holds the envelopes of every entry, in order.
	envs []protocol.Envelope
	// records are the encoded state records to append, in order.
	records []broker.Message
	// egress are the broadcasts and replies to publish once the records
	// are durable, in order.
	egress []broker.Message
	// messages counts the room messages sequenced, for the stats.
	messages uint64
}

// entry is one delivery and the envelopes it carries, envs[first:end].
// They are processed in order, and the delivery is settled once, after all
// of them.
type entry struct {
	d          *broker.Delivery
	first, end int
}

// maxBatchCap bounds a batch whatever the prefetch.
const maxBatchCap = 256

// batchLimit is the largest batch for a consumer prefetch: half of it, so
// that while a full batch is being processed the broker can already send
// the deliveries of the next one.
func batchLimit(prefetch int) int {
	return min(maxBatchCap, max(1, prefetch/2))
}

// failureBackoff is how long a shard waits after returning a batch to its
// queue, before the broker delivers it again.
const failureBackoff = 200 * time.Millisecond

// errWrongShard is why an envelope routed to the wrong shard is dropped.
var errWrongShard = errors.New("hub: envelope routed to the wrong shard")

// maxEdgeKeys bounds shard.edgeCCs; past it the cache starts again.
const maxEdgeKeys = 1024

// invalidate marks the state stale; it runs as the consumer's OnStart.
func (sh *shard) invalidate() error {
	sh.stale.Store(true)
	return nil
}

func newShard(w *Worker, n int) *shard {
	return &shard{
		w: w, n: n, st: newState(w.limits()), stream: stateQueue(n),
		maxBatch: batchLimit(w.cfg.Prefetch), edgeCCs: make(map[string][]string),
	}
}

// replay rebuilds the shard from its log. It runs before the first batch
// of each subscription, when this consumer is the active one and the
// previous owner has stopped, so the log holds all it wrote; and after a
// failed batch, whose records may be in the log in part.
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

// handle adds one delivery to the batch, and processes the batch once it
// is full; otherwise the consumer's OnIdle does, after the deliveries that
// arrived together. A delivery with nothing to process is acknowledged at
// once.
func (sh *shard) handle(d *broker.Delivery) {
	b := &sh.batch
	first := len(b.envs)
	b.envs = sh.decode(d, b.envs)
	if len(b.envs) == first {
		_ = d.Ack()
		return
	}
	b.entries = append(b.entries, entry{d: d, first: first, end: len(b.envs)})
	if len(b.entries) >= sh.maxBatch || len(b.envs) >= sh.maxBatch {
		sh.flush()
	}
}

// decode appends the envelopes d carries to envs: its body is one envelope
// or an envelope batch (PROTOCOL.md §9.3). It drops, counts and logs once
// what it cannot process: a malformed batch whole, an envelope that is
// malformed or belongs to another shard alone.
func (sh *shard) decode(d *broker.Delivery, envs []protocol.Envelope) []protocol.Envelope {
	w := sh.w
	var bad int
	var why error
	if !protocol.IsEnvelopeBatch(d.Body) {
		envs, why = sh.decodeOne(d.Body, envs)
		if why != nil {
			bad = 1
		}
	} else if parts, err := protocol.SplitEnvelopeBatch(d.Body); err != nil {
		bad, why = 1, err
	} else {
		for _, p := range parts {
			var err error
			if envs, err = sh.decodeOne(p, envs); err != nil {
				bad, why = bad+1, err
			}
		}
	}
	if bad > 0 {
		w.stats.badEnvelopes.Add(uint64(bad))
		w.log.Warn().Err(why).Int("shard", sh.n).Int("dropped", bad).Msg("dropping bad envelopes")
	}
	return envs
}

// decodeOne appends the envelope encoded in b to envs, or says why not.
func (sh *shard) decodeOne(b []byte, envs []protocol.Envelope) ([]protocol.Envelope, error) {
	w := sh.w
	env, err := protocol.DecodeEnvelope(b, protocol.Limits{MaxBody: w.cfg.MaxBody})
	if err != nil {
		return envs, err
	}
	if env.Kind != protocol.KindTick {
		if want := protocol.ShardOf(env.Frame.Room, w.cfg.Topology.NumShards()); want != sh.n {
			return envs, fmt.Errorf("%w: room %q belongs to shard %d, not %d", errWrongShard, env.Frame.Room, want, sh.n)
		}
	}
	return append(envs, env), nil
}

// flush processes the batch and settles its deliveries: all acknowledged
// once everything they caused is confirmed by the broker, or all returned
// to the queue, in order, when something failed. It runs as the
// consumer's OnIdle, and from handle when the batch is full.
func (sh *shard) flush() {
	b := &sh.batch
	if len(b.entries) == 0 {
		return
	}
	defer b.reset()
	w := sh.w
	if sh.stale.Load() {
		if err := sh.replay(); err != nil {
			b.settle(false)
			time.Sleep(failureBackoff) // before the redeliveries retry the replay
			return
		}
		sh.stale.Store(false)
	}
	if err := sh.process(); err != nil {
		// The state holds records of the batch that may not all be in the
		// stream: rebuild it from the stream before the next batch. The
		// redelivered envelopes are safe to process again: a publish whose
		// record made it is answered from the de-duplication window (and
		// broadcast again, being redelivered), a join or leave that made
		// it is found done, a read position only moves forward.
		sh.stale.Store(true)
		w.log.Warn().Err(err).Int("shard", sh.n).Int("deliveries", len(b.entries)).
			Msg("batch not processed; requeued, the shard state will be replayed")
		b.settle(false)
		time.Sleep(failureBackoff) // a failure that persists must not spin on replays
		return
	}
	b.settle(true)
	w.stats.batches.Add(1)
	w.stats.messages.Add(b.messages)
	if err := sh.maybeSnapshot(); err != nil {
		// The stream is whole without it; the next batch tries again.
		w.log.Warn().Err(err).Int("shard", sh.n).Msg("snapshot not written")
	}
}

// process runs the batch in three steps. (1) Every envelope, in order, is
// dispatched against the state; the records it causes are applied at once,
// so later envelopes see earlier ones (seqs, members, de-duplication), and
// queued, with its broadcasts and replies. (2) The records are appended to
// the stream in one confirmed publish: the batch is durably sequenced. (3)
// Only then the broadcasts and replies go out, in order, in one confirmed
// publish: a publisher's ack follows its message's broadcast.
func (sh *shard) process() error {
	b := &sh.batch
	for _, e := range b.entries {
		for i := e.first; i < e.end; i++ {
			if err := sh.dispatch(&b.envs[i], e.d.Redelivered); err != nil {
				return err
			}
		}
	}
	if err := sh.appendRecords(); err != nil {
		return err
	}
	return sh.w.publishBatch(b.egress)
}

// appendRecords appends the batch's records to the shard's stream.
func (sh *shard) appendRecords() error {
	recs := sh.batch.records
	if len(recs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.w.cfg.PublishTimeout)
	defer cancel()
	if err := sh.w.state.appendBatch(ctx, sh.n, recs); err != nil {
		return err
	}
	sh.appended += len(recs)
	return nil
}

// settle acknowledges every delivery of the batch (ok) or returns each to
// its queue, in order. Errors mean the consumer is gone: the broker
// delivers the envelopes again anyway.
func (b *batch) settle(ok bool) {
	for _, e := range b.entries {
		if ok {
			_ = e.d.Ack()
		} else {
			_ = e.d.Nack(true)
		}
	}
}

// reset empties the batch, keeping its slices' capacity and dropping what
// they refer to.
func (b *batch) reset() {
	clear(b.entries)
	b.entries = b.entries[:0]
	clear(b.envs)
	b.envs = b.envs[:0]
	clear(b.records)
	b.records = b.records[:0]
	clear(b.egress)
	b.egress = b.egress[:0]
	b.messages = 0
}

// dispatch processes one envelope against the state, queuing what it
// causes in the batch.
func (sh *shard) dispatch(env *protocol.Envelope, redelivered bool) error {
	sh.w.stats.processed.Add(1)
	switch env.Kind {
	case protocol.KindTick:
		return sh.tick()
	case protocol.KindDisconnect:
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

// commit queues rec for the stream and applies it to the state at once, so
// that the rest of the batch sees it, and queues the presence changes it
// caused. The batch appends its records before anything it publishes.
func (sh *shard) commit(rec *record) error {
	body, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	b := &sh.batch
	b.records = append(b.records, broker.Message{Key: sh.stream, Body: body, Persistent: true})
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
		again := false
		if redelivered {
			var err error
			if again, err = sh.rebroadcast(f.Room, r, seq); err != nil {
				return err
			}
		}
		return sh.ack(env, seq, again)
	}
	rec := &record{K: recMessage, Room: f.Room, Seq: r.seq + 1, User: env.User, CMID: f.CMID, TS: time.Now().UnixMilli(), Body: f.Body}
	if err := sh.commit(rec); err != nil {
		return err
	}
	msg := messageFrame(f.Room, rec)
	if err := sh.broadcast(f.Room, &msg); err != nil {
		return err
	}
	sh.batch.messages++
	return sh.ack(env, rec.Seq, true)
}

// ack queues the publisher's ack, after the message's broadcast. When
// broadcast is set, the broadcast is the batch's last egress message and
// the ack rides with it (PROTOCOL.md §9.4): one message instead of two
// per chat message, and the sender's edge gets it even if it no longer
// has members of the room (the broadcast is CC'd to its edge key).
func (sh *shard) ack(env *protocol.Envelope, seq uint64, broadcast bool) error {
	if env.Kind == protocol.KindIntegrator {
		return nil
	}
	f := &env.Frame
	ack := protocol.Frame{Type: protocol.TypeAck, ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: seq}
	var err error
	if broadcast {
		err = sh.attachReply(env, &ack)
	} else {
		err = sh.reply(env, protocol.MsgReply, &ack)
	}
	if err != nil {
		// The message is sequenced; the sender misses only its ack and
		// will retry, which de-duplication answers.
		sh.w.log.Warn().Err(err).Str("room", f.Room).Uint64("seq", seq).Msg("ack not sent")
	}
	return nil
}

// rebroadcast queues a retained message's broadcast again and reports
// whether it did.
func (sh *shard) rebroadcast(roomName string, r *room, seq uint64) (bool, error) {
	i := sort.Search(len(r.history), func(i int) bool { return r.history[i].Seq >= seq })
	if i == len(r.history) || r.history[i].Seq != seq {
		return false, nil // no longer retained; members resume through history
	}
	msg := messageFrame(roomName, &r.history[i])
	return true, sh.broadcast(roomName, &msg)
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

// broadcast encodes f once and queues it for the room's key.
func (sh *shard) broadcast(roomName string, f *protocol.Frame) error {
	body, err := protocol.EncodeFrame(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	sh.batch.egress = append(sh.batch.egress, broker.Message{Key: sh.st.roomKey(roomName), Body: body})
	return nil
}

// reply queues f for the connection that sent env, with the given AMQP type.
func (sh *shard) reply(env *protocol.Envelope, typ string, f *protocol.Frame) error {
	if env.Kind == protocol.KindIntegrator {
		return nil
	}
	body, err := protocol.EncodeFrame(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	sh.batch.egress = append(sh.batch.egress, broker.Message{Key: sh.edgeKey(env.Edge), Body: body, Type: typ, Conn: env.Conn, Room: env.Frame.Room})
	return nil
}

// attachReply makes f, a reply to env, ride with the batch's last egress
// message, a broadcast: the hearth-reply header carries it, hearth-conn
// names the connection, and the edge's key is CC'd so that the sender's
// edge gets the broadcast whether or not it is bound to the room.
func (sh *shard) attachReply(env *protocol.Envelope, f *protocol.Frame) error {
	body, err := protocol.EncodeFrame(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	m := &sh.batch.egress[len(sh.batch.egress)-1]
	m.Reply, m.Conn, m.CC = body, env.Conn, sh.edgeCC(env.Edge)
	return nil
}

// edgeCC returns a slice holding edge's egress routing key, shared by
// every message CC'd to edge (it is never modified).
func (sh *shard) edgeCC(edge string) []string {
	if cc, ok := sh.edgeCCs[edge]; ok {
		return cc
	}
	if len(sh.edgeCCs) >= maxEdgeKeys {
		clear(sh.edgeCCs)
	}
	cc := []string{protocol.EdgeKey(edge)}
	sh.edgeCCs[edge] = cc
	return cc
}

// edgeKey returns the egress routing key of edge.
func (sh *shard) edgeKey(edge string) string { return sh.edgeCC(edge)[0] }

func (sh *shard) replyError(env *protocol.Envelope, typ string, code protocol.ErrorCode, text string) error {
	sh.w.stats.refused.Add(1)
	return sh.reply(env, typ, &protocol.Frame{Type: protocol.TypeError, ID: env.Frame.ID, Room: env.Frame.Room, Code: code, Text: text})
}
