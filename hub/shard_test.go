package hub

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
	"github.com/hearth-gateway/hearth/shared/topology"
)

const waitTimeout = 10 * time.Second

// testHub is a worker on an in-process broker with one shard, whose
// consumer the test starts (start) the way the owner does, and a queue
// that records everything published to the egress exchange.
type testHub struct {
	t      *testing.T
	b      broker.Broker
	w      *Worker
	egress *egressLog
	// unconfirmed counts egress messages published in batches that
	// failed, which the hub's stats do not count as published.
	unconfirmed atomic.Uint64
}

// newTestHub builds the hub; wrap, if set, wraps the broker the worker uses.
func newTestHub(t *testing.T, wrap func(broker.Broker) broker.Broker) *testHub {
	t.Helper()
	local := broker.NewLocal(broker.LocalConfig{})
	var b broker.Broker = local
	if wrap != nil {
		b = wrap(local)
	}
	// Prefetch 256: batches of up to 128 envelopes.
	w, err := New(Config{ID: "hub-test", ListenAdmin: "-", Prefetch: 256, Topology: topology.Config{Shards: 1}},
		Hooks{}, b, zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := topology.Declare(ctx, local, w.cfg.Topology); err != nil {
		t.Fatal(err)
	}
	if err := w.state.declare(ctx, 0); err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t, b: local, w: w, egress: &egressLog{}}
	const q = "test.egress"
	if err := local.DeclareQueue(ctx, broker.QueueSpec{Name: q, MaxLength: 100000}); err != nil {
		t.Fatal(err)
	}
	if err := local.Bind(ctx, q, protocol.ExchangeEgress, "#"); err != nil {
		t.Fatal(err)
	}
	if err := local.Consume(context.Background(), broker.ConsumeSpec{Queue: q, AutoAck: true}, h.egress.add); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the shard stops, then the broker.
	t.Cleanup(func() { _ = local.Close() })
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		w.owner.releaseAll(sctx)
	})
	return h
}

// start takes shard 0, as the owner does when the assignment gives it.
func (h *testHub) start() {
	h.t.Helper()
	h.w.owner.acquire(0)
	if got := h.w.Shards(); !reflect.DeepEqual(got, []int{0}) {
		h.t.Fatalf("shards %v after taking shard 0", got)
	}
}

// send publishes envelopes to the shard's queue, in order.
func (h *testHub) send(envs ...protocol.Envelope) {
	h.t.Helper()
	for i := range envs {
		body, err := protocol.EncodeEnvelope(&envs[i])
		if err != nil {
			h.t.Fatal(err)
		}
		h.sendRaw(body)
	}
}

// sendBatch publishes envelopes to the shard's queue as one envelope batch.
func (h *testHub) sendBatch(envs ...protocol.Envelope) {
	h.t.Helper()
	h.sendRaw(encodeBatch(h.t, envs...))
}

// sendRaw publishes body to the shard's queue.
func (h *testHub) sendRaw(body []byte) {
	h.t.Helper()
	if err := h.b.Publish(h.t.Context(), protocol.ExchangeIngress, broker.Message{Key: protocol.ShardKey(0), Body: body}); err != nil {
		h.t.Fatal(err)
	}
}

func encodeBatch(t *testing.T, envs ...protocol.Envelope) []byte {
	t.Helper()
	var parts [][]byte
	for i := range envs {
		b, err := protocol.EncodeEnvelope(&envs[i])
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	return protocol.AppendEnvelopeBatch(nil, parts)
}

// waitBatches waits until the shard has processed n batches.
func (h *testHub) waitBatches(n uint64) {
	h.t.Helper()
	testenv.WaitFor(h.t, waitTimeout, func() bool { return h.w.Stats().Batches >= n },
		"waiting for %d batches (have %d)", n, h.w.Stats().Batches)
}

// settle waits until the egress consumer has received every message the
// hub published (and the broker confirmed) so far.
func (h *testHub) settle() {
	h.t.Helper()
	want := func() uint64 { return h.w.Stats().Published + h.unconfirmed.Load() }
	testenv.WaitFor(h.t, waitTimeout, func() bool { return h.egress.messages() == want() },
		"waiting for the egress to receive the %d messages published (has %d)", want(), h.egress.messages())
}

// stream rebuilds the shard's state from its stream, as a new owner would.
func (h *testHub) stream() *state {
	h.t.Helper()
	st := newState(h.w.limits())
	ctx, cancel := context.WithTimeout(h.t.Context(), waitTimeout)
	defer cancel()
	if _, err := h.w.state.replay(ctx, 0, func(rec *record) { st.apply(rec) }); err != nil {
		h.t.Fatal(err)
	}
	return st
}

// egressLog records the egress messages, in order, with their frames. A
// reply riding with a broadcast (hearth-reply) is recorded as an entry of
// its own, right after the broadcast, with Rides set.
type egressLog struct {
	mu  sync.Mutex
	out []egressMsg
	n   uint64 // AMQP messages received
}

type egressMsg struct {
	Key, Type, Conn, Room string
	Frame                 protocol.Frame
	Rides                 bool
}

func (l *egressLog) add(d *broker.Delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.out = append(l.out, egressMsg{Key: d.Key, Type: d.Type, Conn: d.Conn, Room: d.Room, Frame: decodeOrNote(d.Body)})
	if d.Reply != nil {
		l.out = append(l.out, egressMsg{Key: d.Key, Conn: d.Conn, Frame: decodeOrNote(d.Reply), Rides: true})
	}
}

func decodeOrNote(body []byte) protocol.Frame {
	f, err := protocol.DecodeFrame(body)
	if err != nil {
		f = protocol.Frame{Text: "undecodable: " + err.Error()}
	}
	return f
}

// messages returns how many AMQP messages arrived.
func (l *egressLog) messages() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *egressLog) get() []egressMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]egressMsg(nil), l.out...)
}

// Envelope builders: user u on connection "<u>-c" of edge "e1".
func clientEnv(u string, f protocol.Frame) protocol.Envelope {
	return protocol.Envelope{V: protocol.EnvelopeVersion, Kind: protocol.KindClient, Edge: "e1", Conn: u + "-c", User: u, Frame: f}
}

func joinEnv(u, room string) protocol.Envelope {
	return clientEnv(u, protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: room})
}

func leaveEnv(u, room string) protocol.Envelope {
	return clientEnv(u, protocol.Frame{Type: protocol.TypeLeave, ID: 2, Room: room})
}

func publishEnv(u, room, cmid string) protocol.Envelope {
	return clientEnv(u, protocol.Frame{Type: protocol.TypePublish, ID: 3, Room: room, CMID: cmid, Body: []byte("body of " + cmid)})
}

func readEnv(u, room string, seq uint64) protocol.Envelope {
	return clientEnv(u, protocol.Frame{Type: protocol.TypeRead, ID: 4, Room: room, Seq: seq})
}

func disconnectEnv(u, room string) protocol.Envelope {
	e := clientEnv(u, protocol.Frame{Type: protocol.TypeLeave, Room: room})
	e.Kind = protocol.KindDisconnect
	return e
}

// checkPublishes checks the egress and the stream after publishes of the
// given cmids to room by one member: the stream holds each message once,
// under seqs 1..n; every broadcast of a seq carries the message the stream
// has under it; each publish is acked, with its seq, after a broadcast of
// it; and the first broadcasts of the seqs come in seq order.
func checkPublishes(t *testing.T, h *testHub, room string, cmids []string) {
	t.Helper()
	h.settle()
	st := h.stream()
	r := st.rooms[room]
	if r == nil || r.seq != uint64(len(cmids)) || len(r.history) != len(cmids) {
		t.Fatalf("the stream has %+v for room %s, want %d messages", r, room, len(cmids))
	}
	seqOf := map[string]uint64{}
	for i, m := range r.history {
		if m.Seq != uint64(i+1) {
			t.Fatalf("the stream's message %d has seq %d", i, m.Seq)
		}
		if _, dup := seqOf[m.CMID]; dup {
			t.Fatalf("message %s sequenced twice", m.CMID)
		}
		seqOf[m.CMID] = m.Seq
	}
	broadcast := map[uint64]bool{}
	var firsts []uint64
	acked := map[string]uint64{}
	for i, m := range h.egress.get() {
		f := m.Frame
		switch f.Type {
		case protocol.TypeMessage:
			if m.Key != protocol.RoomKey(room) || seqOf[f.CMID] != f.Seq {
				t.Fatalf("egress %d: broadcast %+v under key %s; the stream has %s under seq %d", i, f, m.Key, f.CMID, seqOf[f.CMID])
			}
			if !broadcast[f.Seq] {
				firsts = append(firsts, f.Seq)
			}
			broadcast[f.Seq] = true
		case protocol.TypeAck:
			if f.Seq != seqOf[f.CMID] || !broadcast[f.Seq] {
				t.Fatalf("egress %d: ack %+v; the stream has seq %d, broadcast before: %v", i, f, seqOf[f.CMID], broadcast[f.Seq])
			}
			acked[f.CMID] = f.Seq
		}
	}
	for i, s := range firsts {
		if s != uint64(i+1) {
			t.Fatalf("broadcasts first came in the order %v", firsts)
		}
	}
	if len(firsts) != len(cmids) || len(acked) != len(cmids) {
		t.Fatalf("%d seqs broadcast and %d publishes acked, want %d", len(firsts), len(acked), len(cmids))
	}
}

// TestShardBatchPublish: envelopes that wait together are processed as one
// batch; its publishes to a room get consecutive seqs, broadcast in seq
// order, each ack after its broadcast, and the stream holds them all.
func TestShardBatchPublish(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	const n = 40
	// The sender's edge queue, bound to its edge key only, as if it had no
	// binding to the room any more: the acks' broadcasts are CC'd to it.
	edgeOnly := &egressLog{}
	const q = "test.edge-e1"
	if err := h.b.DeclareQueue(t.Context(), broker.QueueSpec{Name: q, MaxLength: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := h.b.Bind(t.Context(), q, protocol.ExchangeEgress, protocol.EdgeKey("e1")); err != nil {
		t.Fatal(err)
	}
	if err := h.b.Consume(t.Context(), broker.ConsumeSpec{Queue: q, AutoAck: true}, edgeOnly.add); err != nil {
		t.Fatal(err)
	}
	envs := []protocol.Envelope{joinEnv("ann", "r")}
	var cmids []string
	for i := range n {
		cmids = append(cmids, fmt.Sprintf("m%02d", i))
		envs = append(envs, publishEnv("ann", "r", cmids[i]))
	}
	h.send(envs...)
	h.start() // the consumer receives the whole queue at once
	h.waitBatches(1)
	h.settle()
	if st := h.w.Stats(); st.Batches != 1 || st.Processed != n+1 || st.Messages != n {
		t.Fatalf("stats %+v, want one batch of %d envelopes and %d messages", st, n+1, n)
	}
	out := h.egress.get()
	if len(out) != 2+2*n { // presence, joined, a broadcast and an ack per publish
		t.Fatalf("%d egress messages, want %d", len(out), 2+2*n)
	}
	if out[0].Frame.Type != protocol.TypePresence || out[1].Frame.Type != protocol.TypeJoined {
		t.Fatalf("the batch starts with %+v, %+v; want the presence, then the joined reply", out[0], out[1])
	}
	for i := range n {
		b, a := out[2+2*i], out[3+2*i]
		if b.Frame.Type != protocol.TypeMessage || b.Frame.Seq != uint64(i+1) ||
			a.Frame.Type != protocol.TypeAck || a.Frame.Seq != uint64(i+1) || !a.Rides || a.Conn != "ann-c" {
			t.Fatalf("publish %d: got %+v then %+v; want the broadcast, with the ack riding on it, of seq %d", i, b, a, i+1)
		}
	}
	checkPublishes(t, h, "r", cmids)
	testenv.WaitFor(t, waitTimeout, func() bool { return edgeOnly.messages() == 1+n },
		"the edge-only queue to get the joined reply and %d broadcasts (has %d)", n, edgeOnly.messages())
	for i, m := range edgeOnly.get()[1:] {
		if m.Frame.Type != protocol.TypeMessage && !(m.Rides && m.Frame.Type == protocol.TypeAck) {
			t.Fatalf("edge-only entry %d: %+v", i+1, m)
		}
	}
	// A later publish continues the sequence.
	h.send(publishEnv("ann", "r", "late"))
	h.waitBatches(2)
	checkPublishes(t, h, "r", append(cmids, "late"))
}

// TestShardEnvelopeBatches: deliveries carrying envelope batches are
// processed envelope by envelope, in order, with plain envelopes around
// them; an invalid envelope of a batch is dropped alone, a malformed batch
// whole.
func TestShardEnvelopeBatches(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	invalid := publishEnv("ann", "r", "bad")
	invalid.V = 99
	h.sendBatch(joinEnv("ann", "r"), publishEnv("ann", "r", "m0"), invalid, publishEnv("ann", "r", "m1"))
	h.send(publishEnv("ann", "r", "m2"))
	h.sendRaw([]byte{0x92, 0xc4, 0x05, 1, 2}) // cut short
	h.sendBatch(publishEnv("ann", "r", "m3"), publishEnv("ann", "r", "m4"))
	h.start()
	h.waitBatches(1)
	if st := h.w.Stats(); st.Batches != 1 || st.Processed != 6 || st.BadEnvelopes != 2 || st.Messages != 5 {
		t.Fatalf("stats %+v, want one batch of 6 envelopes, 5 messages, 2 dropped", st)
	}
	checkPublishes(t, h, "r", []string{"m0", "m1", "m2", "m3", "m4"})
	// A batch alone, later, is a batch of its own.
	h.sendBatch(publishEnv("ann", "r", "m5"), publishEnv("ann", "r", "m6"))
	h.waitBatches(2)
	checkPublishes(t, h, "r", []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6"})
}

// mixedScript is a run of joins, publishes, leaves, reads and errors in
// two rooms where each envelope depends on the state the earlier ones left.
func mixedScript() []protocol.Envelope {
	return []protocol.Envelope{
		joinEnv("ann", "r"),
		publishEnv("ben", "r", "b0"), // not a member yet: refused
		joinEnv("ben", "r"),
		publishEnv("ann", "r", "a1"),
		publishEnv("ben", "r", "b1"),
		publishEnv("ann", "r", "a1"), // a retry: the same seq, not sequenced again
		readEnv("ben", "r", 2),
		readEnv("ben", "r", 1), // backwards: ignored
		joinEnv("ann", "r"),    // already a member
		clientEnv("ann", protocol.Frame{Type: protocol.TypeHistory, ID: 9, Room: "r", After: 1}),
		clientEnv("ben", protocol.Frame{Type: protocol.TypeTyping, Room: "r"}),
		joinEnv("ann", "s"),
		publishEnv("ann", "s", "s1"),
		leaveEnv("ann", "r"),
		publishEnv("ann", "r", "a2"), // left: refused
		leaveEnv("ann", "r"),         // left already: only the reply
		publishEnv("ben", "r", "b2"),
		joinEnv("ann", "r"),
		publishEnv("ann", "r", "a3"),
		disconnectEnv("ben", "r"),
		publishEnv("ben", "r", "b3"), // gone: refused
		readEnv("ann", "r", 99),      // capped at the room's seq
	}
}

// runScript sends the script to a fresh hub, all at once (one batch) or
// one envelope per batch, and returns the egress (message timestamps
// cleared) and the state the stream rebuilds.
func runScript(t *testing.T, script []protocol.Envelope, batched bool) ([]egressMsg, *snapshot) {
	t.Helper()
	h := newTestHub(t, nil)
	if batched {
		h.send(script...)
		h.start()
		h.waitBatches(1)
	} else {
		h.start()
		for i := range script {
			h.send(script[i])
			h.waitBatches(uint64(i + 1))
		}
	}
	if st := h.w.Stats(); st.Processed != uint64(len(script)) {
		t.Fatalf("batched %v: %d envelopes processed, want %d", batched, st.Processed, len(script))
	}
	h.settle()
	out := h.egress.get()
	for i := range out {
		out[i].Frame.TS = 0
		for j := range out[i].Frame.History {
			out[i].Frame.History[j].TS = 0
		}
	}
	snap := h.stream().snapshot()
	for i := range snap.Rooms {
		for j := range snap.Rooms[i].History {
			snap.Rooms[i].History[j].TS = 0
		}
	}
	return out, snap
}

// TestShardBatchMatchesSequential: a batch mixing joins, publishes,
// leaves, reads and refusals has exactly the effects, egress and stream,
// of processing its envelopes one at a time.
func TestShardBatchMatchesSequential(t *testing.T) {
	t.Parallel()
	script := mixedScript()
	seqOut, seqSnap := runScript(t, script, false)
	batOut, batSnap := runScript(t, script, true)
	if !reflect.DeepEqual(batOut, seqOut) {
		for i := range max(len(batOut), len(seqOut)) {
			var b, s egressMsg
			if i < len(batOut) {
				b = batOut[i]
			}
			if i < len(seqOut) {
				s = seqOut[i]
			}
			if !reflect.DeepEqual(b, s) {
				t.Errorf("egress %d:\n batched    %+v\n sequential %+v", i, b, s)
			}
		}
		t.Fatalf("the batch's egress differs from sequential processing (%d vs %d messages)", len(batOut), len(seqOut))
	}
	if !reflect.DeepEqual(batSnap, seqSnap) {
		t.Fatalf("the streams differ:\n batched    %+v\n sequential %+v", batSnap, seqSnap)
	}
	// The script does what it says: spot checks of the sequential run.
	var types []protocol.FrameType
	for _, m := range seqOut {
		if m.Key == protocol.EdgeKey("e1") && m.Frame.Type == protocol.TypeError {
			types = append(types, m.Frame.Type)
		}
	}
	if len(types) != 3 {
		t.Fatalf("%d refusals, want 3 (two publishes by non-members, one by a disconnected member)", len(types))
	}
	r := seqSnap.Rooms[0]
	if r.Name != "r" || r.Seq != 4 || len(r.History) != 4 || r.Reads["ben"] != 2 || r.Reads["ann"] != 4 || len(r.Members) != 1 {
		t.Fatalf("room r in the stream: %+v", r)
	}
}

// failingBroker fails the next PublishBatch of more than one message to
// one exchange, after publishing the first half of it: a connection lost
// in the middle of a batch.
type failingBroker struct {
	broker.Broker
	exchange string
	armed    atomic.Bool
	// published counts the messages of the failed batch published.
	published *atomic.Uint64
}

var errLost = errors.New("test: connection lost in the middle of the batch")

func (f *failingBroker) PublishBatch(ctx context.Context, exchange string, msgs []broker.Message) error {
	if exchange != f.exchange || len(msgs) < 2 || !f.armed.CompareAndSwap(true, false) {
		return f.Broker.PublishBatch(ctx, exchange, msgs)
	}
	if err := f.Broker.PublishBatch(ctx, exchange, msgs[:len(msgs)/2]); err != nil {
		return err
	}
	f.published.Add(uint64(len(msgs) / 2))
	return fmt.Errorf("%w: %w", errLost, broker.ErrUnavailable)
}

// TestShardBatchFailure: when the records of a batch, or its broadcasts
// and replies, are published only in part, the whole batch is returned to
// the queue and the shard replays its stream; the redelivered envelopes
// then leave every message sequenced once, under one seq, none lost, every
// publish acked after its broadcast.
func TestShardBatchFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, exchange string
		oneDelivery    bool // the envelopes come as one envelope batch
	}{
		{"records", "", false},
		{"egress", protocol.ExchangeEgress, false},
		{"records/envelope-batch", "", true},
		{"egress/envelope-batch", protocol.ExchangeEgress, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := &failingBroker{exchange: tc.exchange}
			fb.armed.Store(true)
			h := newTestHub(t, func(b broker.Broker) broker.Broker { fb.Broker = b; return fb })
			if tc.exchange == protocol.ExchangeEgress {
				fb.published = &h.unconfirmed
			} else {
				fb.published = new(atomic.Uint64)
			}
			const n = 30
			envs := []protocol.Envelope{joinEnv("ann", "r")}
			var cmids []string
			for i := range n {
				cmids = append(cmids, fmt.Sprintf("m%02d", i))
				envs = append(envs, publishEnv("ann", "r", cmids[i]))
			}
			if tc.oneDelivery {
				h.sendBatch(envs...)
			} else {
				h.send(envs...)
			}
			h.start()
			h.waitBatches(1) // the redelivered batch
			if fb.armed.Load() {
				t.Fatal("the failure was not injected")
			}
			st := h.w.Stats()
			if st.Takeovers != 2 || st.Batches != 1 || st.Processed != 2*(n+1) {
				t.Fatalf("stats %+v: want 2 replays (taking the shard, after the failure), 1 batch done, every envelope processed twice", st)
			}
			checkPublishes(t, h, "r", cmids)
			if tc.exchange == "" {
				// Nothing of the failed attempt went out: each message is
				// broadcast once, the half that reached the stream when
				// its redelivered publish is answered from the
				// de-duplication window.
				// The first half of the records: the join and 14 messages.
				if want := uint64((n+1)/2 - 1); st.Duplicates != want {
					t.Fatalf("%d publishes answered from the de-duplication window, want %d", st.Duplicates, want)
				}
				count := map[uint64]int{}
				for _, m := range h.egress.get() {
					if m.Frame.Type == protocol.TypeMessage {
						count[m.Frame.Seq]++
					}
				}
				for seq, c := range count {
					if c != 1 {
						t.Fatalf("seq %d broadcast %d times: the failed batch published before its records were durable", seq, c)
					}
				}
			}
			// The shard goes on from the stream's state.
			h.send(publishEnv("ann", "r", "next"))
			h.waitBatches(2)
			checkPublishes(t, h, "r", append(cmids, "next"))
		})
	}
}

// TestTickSlices: a shard is ticked in its own slice only (shard number mod
// tickSlices), so the owned shards' ticks are spread over the interval.
func TestTickSlices(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	for slot := 1; slot < tickSlices; slot++ {
		h.w.owner.tick(slot)
	}
	h.w.owner.tick(0)
	// A join after the ticks: once it is processed, so is every tick
	// before it in the queue.
	h.send(joinEnv("ann", "r"))
	testenv.WaitFor(t, waitTimeout, func() bool {
		for _, m := range h.egress.get() {
			if m.Frame.Type == protocol.TypeJoined {
				return true
			}
		}
		return false
	}, "the join after the ticks to be answered")
	if st := h.w.Stats(); st.Processed != 2 {
		t.Fatalf("shard 0 processed %d envelopes after a tick of every slice and a join, want 2 (one tick)", st.Processed)
	}
}
