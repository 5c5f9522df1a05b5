package hub

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearth-gateway/hearth/protocol"
)

func msg(room string, seq uint64, user, cmid string) *record {
	return &record{K: recMessage, Room: room, Seq: seq, User: user, CMID: cmid, Body: []byte(cmid)}
}

func TestHistoryBoundsAndQueries(t *testing.T) {
	t.Parallel()
	st := newState(limits{historyMessages: 5, historyBytes: 1 << 20, dedupWindow: 3})
	for i := uint64(1); i <= 8; i++ {
		st.apply(msg("r", i, "u", "m"+string(rune('0'+i))))
	}
	r := st.rooms["r"]
	if r.seq != 8 || len(r.history) != 5 || r.history[0].Seq != 4 {
		t.Fatalf("seq %d, %d retained from %d", r.seq, len(r.history), r.history[0].Seq)
	}
	if len(r.dedup) != 3 {
		t.Fatalf("dedup window holds %d, want 3", len(r.dedup))
	}
	cases := []struct {
		after     uint64
		limit     int
		wantFirst uint64
		wantN     int
		reset     bool
	}{
		{after: 8, limit: 10, wantN: 0},
		{after: 5, limit: 10, wantFirst: 6, wantN: 3},
		{after: 3, limit: 10, wantFirst: 4, wantN: 5},              // exactly reaches back
		{after: 2, limit: 10, wantFirst: 4, wantN: 5, reset: true}, // seq 3 is gone
		{after: 3, limit: 2, wantFirst: 4, wantN: 2},
		{after: 9, limit: 10, reset: true}, // ahead of the room: the client's view is wrong
	}
	for _, tc := range cases {
		got, reset := r.historyAfter(tc.after, tc.limit)
		if len(got) != tc.wantN || reset != tc.reset || (tc.wantN > 0 && got[0].Seq != tc.wantFirst) {
			t.Fatalf("after %d limit %d: %d frames (first %v), reset %v", tc.after, tc.limit, len(got), got, reset)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 || got[i].Type != protocol.TypeMessage {
				t.Fatalf("after %d: not consecutive messages: %+v", tc.after, got)
			}
		}
	}
	if got := r.historyBefore(7, 2); len(got) != 2 || got[0].Seq != 5 || got[1].Seq != 6 {
		t.Fatalf("before 7: %+v", got)
	}
	if got := r.historyBefore(0, 3); len(got) != 3 || got[2].Seq != 8 {
		t.Fatalf("newest 3: %+v", got)
	}
	// Byte bound.
	st2 := newState(limits{historyMessages: 100, historyBytes: 10, dedupWindow: 10})
	for i := uint64(1); i <= 5; i++ {
		st2.apply(&record{K: recMessage, Room: "r", Seq: i, Body: []byte("abcd")})
	}
	if h := st2.rooms["r"].history; len(h) != 2 || st2.rooms["r"].historyBytes != 8 {
		t.Fatalf("byte bound kept %d messages (%d bytes)", len(h), st2.rooms["r"].historyBytes)
	}
}

func TestPresenceChanges(t *testing.T) {
	t.Parallel()
	st := newState(limits{historyMessages: 10, historyBytes: 100, dedupWindow: 10})
	join := func(user, edge, conn string) []presenceChange {
		return st.apply(&record{K: recJoin, Room: "r", User: user, Edge: edge, Conn: conn})
	}
	if ch := join("ann", "e1", "i1-1"); len(ch) != 1 || ch[0].event != protocol.EventJoin {
		t.Fatalf("first connection: %+v", ch)
	}
	if ch := join("ann", "e2", "i2-1"); len(ch) != 0 {
		t.Fatalf("second connection of the same user announced: %+v", ch)
	}
	join("ben", "e1", "i1-2")
	if ch := st.apply(&record{K: recLeave, Room: "r", User: "ann", Edge: "e1", Conn: "i1-1"}); len(ch) != 0 {
		t.Fatalf("leave of one of two connections announced: %+v", ch)
	}
	// Edge e1 restarts with incarnation i9: its old connections go.
	ch := st.apply(&record{K: recEdgeGone, Edge: "e1", Conn: "i9"})
	if len(ch) != 1 || ch[0].user != "ben" || ch[0].event != protocol.EventLeave {
		t.Fatalf("edge restart: %+v", ch)
	}
	join("cat", "e2", "i2-2")
	ch = st.apply(&record{K: recEdgeGone, Edge: "e2"})
	if len(ch) != 2 {
		t.Fatalf("edge death removed %+v, want ann and cat", ch)
	}
	if n := len(st.rooms["r"].members); n != 0 {
		t.Fatalf("%d members left", n)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	lim := limits{historyMessages: 10, historyBytes: 1000, dedupWindow: 10}
	st := newState(lim)
	for i := uint64(1); i <= 4; i++ {
		st.apply(msg("a", i, "u", "c"+string(rune('0'+i))))
	}
	st.apply(&record{K: recJoin, Room: "a", User: "u", Edge: "e", Conn: "x-1"})
	st.apply(&record{K: recRead, Room: "a", User: "u", Seq: 3})
	st.apply(msg("b", 1, "v", "z"))
	b, err := encodeRecord(&record{K: recSnapshot, Snap: st.snapshot()})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	st2 := newState(lim)
	st2.apply(msg("stale", 9, "u", "gone")) // a snapshot replaces everything
	st2.apply(rec)
	if !reflect.DeepEqual(st.snapshot(), st2.snapshot()) {
		t.Fatalf("snapshot did not round-trip:\n%+v\n%+v", st.snapshot(), st2.snapshot())
	}
	// Records after the snapshot that it already contains are ignored.
	st2.apply(msg("a", 4, "u", "c4"))
	if len(st2.rooms["a"].history) != 4 {
		t.Fatal("a replayed message was applied twice")
	}
}

// TestShardBudgets: all rooms of a shard together stay within the shard's
// history and de-duplication budgets; the least recently active rooms give
// way, the busy one keeps its recent messages.
func TestShardBudgets(t *testing.T) {
	t.Parallel()
	st := newState(limits{historyMessages: 1000, historyBytes: 1 << 20, dedupWindow: 1000, shardHistoryBytes: 1000, shardDedup: 50})
	body := make([]byte, 10)
	seq := map[string]uint64{}
	for i := 0; i < 500; i++ {
		room := fmt.Sprintf("r%d", i%10)
		if i >= 400 {
			room = "busy"
		}
		seq[room]++
		st.apply(&record{K: recMessage, Room: room, Seq: seq[room], User: "u", CMID: fmt.Sprint(i), Body: body})
		if st.historyBytes > 1000 || st.dedupEntries > 50 {
			t.Fatalf("after %d messages: %d history bytes, %d dedup entries", i+1, st.historyBytes, st.dedupEntries)
		}
	}
	sum := 0
	for _, r := range st.rooms {
		sum += r.historyBytes
	}
	if sum != st.historyBytes {
		t.Fatalf("rooms hold %d bytes, total says %d", sum, st.historyBytes)
	}
	busy := st.rooms["busy"]
	if len(busy.history) == 0 || busy.history[len(busy.history)-1].Seq != 100 {
		t.Fatal("the most active room lost its newest message")
	}
	if st.evictions == 0 {
		t.Fatal("no eviction happened")
	}
}

// TestSnapshotKeepsDedupOrder: after a restore, the window still forgets
// the oldest ids first.
func TestSnapshotKeepsDedupOrder(t *testing.T) {
	t.Parallel()
	lim := limits{historyMessages: 2, historyBytes: 1000, dedupWindow: 4}
	st := newState(lim)
	for i := uint64(1); i <= 4; i++ {
		st.apply(msg("r", i, "u", fmt.Sprint(i)))
	}
	b, _ := encodeRecord(&record{K: recSnapshot, Snap: st.snapshot()})
	rec, _ := decodeRecord(b)
	st2 := newState(lim)
	st2.apply(rec)
	st2.apply(msg("r", 5, "u", "5"))
	r := st2.rooms["r"]
	if _, ok := r.dedup[msgKey{"u", "1"}]; ok {
		t.Fatal("the oldest id survived; a newer one was forgotten instead")
	}
	for _, c := range []string{"2", "3", "4", "5"} {
		if _, ok := r.dedup[msgKey{"u", c}]; !ok {
			t.Fatalf("id %s forgotten", c)
		}
	}
}

// plainRecord is record without its EncodeMsgpack: msgpack encodes it by
// reflection, the format every stream written so far holds.
type plainRecord record

// TestRecordEncoding holds record.EncodeMsgpack to the bytes reflection
// writes, so streams stay readable both ways, and checks the round trip.
func TestRecordEncoding(t *testing.T) {
	t.Parallel()
	full := record{K: recMessage, Room: "r", Seq: 1<<40 + 3, User: "u", CMID: "c", TS: -5, Body: []byte{0, 0xff},
		Edge: "e", Conn: "n", Mark: "m"}
	cases := []record{
		{},
		{K: recMarker, Mark: "beef"},
		*msg("room", 7, "ann", "cm-1"),
		{K: recJoin, Room: "r", User: "u", Edge: "e1", Conn: "i1-1"},
		{K: recLeave, Room: "r", User: "u", Edge: "e1", Conn: "i1-1"},
		{K: recRead, Room: "r", User: "u", Seq: 300},
		{K: recEdgeGone, Edge: "e1", Conn: "i2"},
		{K: recMessage, Room: "r", Seq: 1, TS: 1700000000000, Body: []byte{}}, // empty body: omitted
		{K: recMessage, Seq: 255, Body: make([]byte, 70000)},
		full,
	}
	// Each field alone.
	v := reflect.ValueOf(full)
	for i := 1; i < v.NumField(); i++ {
		one := record{K: full.K}
		reflect.ValueOf(&one).Elem().Field(i).Set(v.Field(i))
		cases = append(cases, one)
	}
	for i := range cases {
		rec := &cases[i]
		got, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		want, err := msgpack.Marshal((*plainRecord)(rec))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %+v:\n got %x\nwant %x", rec, got, want)
		}
		back, err := decodeRecord(got)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Body) == 0 {
			back.Body = rec.Body // nil and empty both travel as absent
		}
		if !reflect.DeepEqual(back, rec) {
			t.Fatalf("round trip: got %+v, want %+v", back, rec)
		}
	}
	// A snapshot: its history records use EncodeMsgpack too, and read back.
	st := newState(limits{historyMessages: 10, historyBytes: 1000, dedupWindow: 10})
	for i := uint64(1); i <= 3; i++ {
		st.apply(msg("a", i, "u", fmt.Sprint(i)))
	}
	st.apply(&record{K: recJoin, Room: "a", User: "u", Edge: "e", Conn: "x-1"})
	snap := &record{K: recSnapshot, Snap: st.snapshot()}
	got, err := encodeRecord(snap)
	if err != nil {
		t.Fatal(err)
	}
	want, err := msgpack.Marshal((*plainRecord)(snap))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("snapshot:\n got %x\nwant %x", got, want)
	}
	back, err := decodeRecord(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Snap, snap.Snap) {
		t.Fatalf("snapshot round trip: got %+v, want %+v", back.Snap, snap.Snap)
	}
}

func BenchmarkEncodeRecord(b *testing.B) {
	rec := msg("room-name", 12345, "user-1", "client-message-id")
	rec.TS = 1700000000000
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}
