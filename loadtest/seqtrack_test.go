package loadtest

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestSeqTracker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		base    uint64
		start   bool
		seqs    []uint64
		want    seqTracker
		acked   []uint64
		expLost uint64
		expExp  uint64
	}{
		{name: "in order", base: 0, start: true, seqs: []uint64{1, 2, 3},
			want: seqTracker{Started: true, Base: 0, Next: 4, Received: 3}, acked: []uint64{1, 2, 3}, expExp: 3},
		{name: "gap is a loss of acked messages only", base: 10, start: true, seqs: []uint64{11, 14},
			want:  seqTracker{Started: true, Base: 10, Next: 15, Received: 2, Missing: []seqRange{{12, 13}}},
			acked: []uint64{11, 12, 14}, expExp: 3, expLost: 1},
		{name: "late arrival fills the gap", base: 0, start: true, seqs: []uint64{1, 4, 3, 2},
			want: seqTracker{Started: true, Next: 5, Received: 4, Reordered: 2}, acked: []uint64{1, 2, 3, 4}, expExp: 4},
		{name: "fill in the middle splits the gap", base: 0, start: true, seqs: []uint64{1, 6, 3},
			want:  seqTracker{Started: true, Next: 7, Received: 3, Reordered: 1, Missing: []seqRange{{2, 2}, {4, 5}}},
			acked: []uint64{1, 2, 3, 4, 5, 6}, expExp: 6, expLost: 3},
		{name: "duplicate", base: 0, start: true, seqs: []uint64{1, 2, 2, 1},
			want: seqTracker{Started: true, Next: 3, Received: 2, Dup: 2}, acked: []uint64{1, 2}, expExp: 2},
		{name: "stale at or below the snapshot", base: 5, start: true, seqs: []uint64{5, 3, 6},
			want: seqTracker{Started: true, Base: 5, Next: 7, Received: 1, Stale: 2}, acked: []uint64{4, 5, 6}, expExp: 1},
		{name: "tail not received is lost", base: 0, start: true, seqs: []uint64{1},
			want: seqTracker{Started: true, Next: 2, Received: 1}, acked: []uint64{1, 2, 3}, expExp: 3, expLost: 2},
		{name: "unsequenced notices are ignored", base: 0, start: true, seqs: []uint64{0, 1, 0},
			want: seqTracker{Started: true, Next: 2, Received: 1}, acked: []uint64{1}, expExp: 1},
		{name: "before joined", start: false, seqs: []uint64{1},
			want: seqTracker{Stale: 1}, acked: []uint64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tr seqTracker
			if tt.start {
				tr.start(tt.base)
			}
			for _, s := range tt.seqs {
				tr.observe(s)
			}
			if len(tr.Missing) == 0 {
				tr.Missing = nil
			}
			if !reflect.DeepEqual(tr, tt.want) {
				t.Fatalf("tracker %+v, want %+v", tr, tt.want)
			}
			var acked rangeSet
			for _, a := range tt.acked {
				acked.add(a)
			}
			exp, lost := tr.lostOf(&acked)
			if exp != tt.expExp || lost != tt.expLost {
				t.Fatalf("expected %d lost %d, want %d and %d", exp, lost, tt.expExp, tt.expLost)
			}
		})
	}
}

// rangeSet against a plain map, with values added in a random order.
func TestRangeSetMatchesMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 9))
	var s rangeSet
	m := map[uint64]bool{}
	for i := 0; i < 3000; i++ {
		v := uint64(rng.IntN(2000))
		if rng.IntN(4) == 0 {
			v = uint64(len(m)) + uint64(rng.IntN(3)) // mostly appends, like acks
		}
		if s.add(v) == m[v] {
			t.Fatalf("add(%d) new=%v, map says present=%v", v, !m[v], m[v])
		}
		m[v] = true
	}
	if s.count() != uint64(len(m)) {
		t.Fatalf("count %d, map %d", s.count(), len(m))
	}
	for i := 1; i < len(s.r); i++ {
		if s.r[i][0] <= s.r[i-1][1]+1 {
			t.Fatalf("ranges %v and %v overlap or touch", s.r[i-1], s.r[i])
		}
	}
	for i := 0; i < 200; i++ {
		lo := uint64(rng.IntN(2100))
		hi := lo + uint64(rng.IntN(300))
		var want uint64
		for v := lo; v <= hi; v++ {
			if m[v] {
				want++
			}
		}
		if got := s.countIn(lo, hi); got != want {
			t.Fatalf("countIn(%d, %d) = %d, want %d", lo, hi, got, want)
		}
	}
	if n := s.addRange(seqRange{0, 2500}); n != 2501-uint64(len(m)) {
		t.Fatalf("addRange over everything added %d", n)
	}
	if len(s.r) != 1 {
		t.Fatalf("after covering everything: %v", s.r)
	}
}

// account checks members reported by two workers against acks reported by
// both: a member that missed one acked message counts one loss; a
// disconnected member is left out; a duplicate is counted.
func TestAccountAcrossWorkers(t *testing.T) {
	t.Parallel()
	acked := map[int]*rangeSet{0: {}, 1: {}}
	for s := uint64(1); s <= 10; s++ {
		acked[0].add(s) // acked to worker A's publishers
	}
	acked[1].addRange(seqRange{1, 5}) // worker B's room 1
	ok := seqTracker{}
	ok.start(0)
	for s := uint64(1); s <= 10; s++ {
		ok.observe(s)
	}
	missedOne := seqTracker{}
	missedOne.start(2) // joined late: expects 3..10
	for _, s := range []uint64{3, 4, 6, 7, 8, 9, 10, 10} {
		missedOne.observe(s)
	}
	gone := seqTracker{}
	gone.start(0)
	gone.observe(1)
	room1 := seqTracker{}
	room1.start(0)
	for s := uint64(1); s <= 5; s++ {
		room1.observe(s)
	}
	members := []memberReport{
		{Room: 0, Conn: 0, Live: true, T: ok},
		{Room: 0, Conn: 1, Live: true, T: missedOne},
		{Room: 0, Conn: 2, Live: false, T: gone},
		{Room: 1, Conn: 3, Live: true, T: room1},
		{Room: 1, Conn: 4, Live: true, T: seqTracker{}},
	}
	a := account(acked, members)
	want := Accounting{Acked: 15, Members: 3, Disconnected: 1, NotJoined: 1, Expected: 10 + 8 + 5, Lost: 1, LostMembers: 1, Duplicated: 1}
	if a != want {
		t.Fatalf("accounting %+v\nwant        %+v", a, want)
	}
}
