package loadtest

import "sort"

// seqRange is an inclusive range of sequence numbers, [lo, hi]; it encodes
// as a two-element JSON array.
type seqRange [2]uint64

func (r seqRange) len() uint64 { return r[1] - r[0] + 1 }

// rangeSet is a set of sequence numbers kept as sorted, disjoint,
// non-adjacent ranges. Adding in increasing order, the usual case, is O(1).
type rangeSet struct {
	r []seqRange
}

// add inserts v and reports whether it was new.
func (s *rangeSet) add(v uint64) bool { return s.addRange(seqRange{v, v}) == 1 }

// addRange inserts [lo, hi] and returns how many of its values were new.
func (s *rangeSet) addRange(x seqRange) uint64 {
	if x[1] < x[0] {
		return 0
	}
	n := len(s.r)
	// Fast path: at or after the end.
	if n == 0 || x[0] > s.r[n-1][1]+1 {
		s.r = append(s.r, x)
		return x.len()
	}
	if x[0] >= s.r[n-1][0] && x[0] <= s.r[n-1][1]+1 && x[1] >= s.r[n-1][1] {
		added := x[1] - s.r[n-1][1]
		s.r[n-1][1] = x[1]
		return added
	}
	before := s.count()
	// General case: find the ranges x touches and replace them by their union.
	i := sort.Search(n, func(i int) bool { return s.r[i][1]+1 >= x[0] })
	j := i
	lo, hi := x[0], x[1]
	for j < n && s.r[j][0] <= x[1]+1 {
		lo = min(lo, s.r[j][0])
		hi = max(hi, s.r[j][1])
		j++
	}
	out := make([]seqRange, 0, n-(j-i)+1)
	out = append(out, s.r[:i]...)
	out = append(out, seqRange{lo, hi})
	out = append(out, s.r[j:]...)
	s.r = out
	return s.count() - before
}

// count returns the number of values in the set.
func (s *rangeSet) count() uint64 {
	var n uint64
	for _, r := range s.r {
		n += r.len()
	}
	return n
}

// countIn returns how many values of the set lie in [lo, hi].
func (s *rangeSet) countIn(lo, hi uint64) uint64 {
	if hi < lo {
		return 0
	}
	var n uint64
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= lo })
	for ; i < len(s.r) && s.r[i][0] <= hi; i++ {
		a, b := max(lo, s.r[i][0]), min(hi, s.r[i][1])
		n += b - a + 1
	}
	return n
}

// ranges returns a copy of the set's ranges.
func (s *rangeSet) ranges() []seqRange { return append([]seqRange(nil), s.r...) }

// seqTracker follows one member's deliveries of one room. The member joined
// with snapshot Base and must then receive Base+1, Base+2, … exactly once.
// Everything in (Base, Next) has arrived except the Missing ranges; it costs
// a few words per member however many messages pass, as long as delivery
// is in order.
type seqTracker struct {
	Started   bool       `json:"s,omitempty"`
	Base      uint64     `json:"b,omitempty"`
	Next      uint64     `json:"n,omitempty"`
	Missing   []seqRange `json:"m,omitempty"`
	Received  uint64     `json:"rc,omitempty"`
	Dup       uint64     `json:"d,omitempty"`
	Stale     uint64     `json:"st,omitempty"`
	Reordered uint64     `json:"ro,omitempty"`
}

// Outcomes of seqTracker.observe.
const (
	seqNew       = iota // first arrival, in order or filling a gap
	seqDuplicate        // arrived before
	seqStale            // at or below the join snapshot, or before joined
	seqIgnored          // seq 0: an unsequenced notice
)

// start records the join snapshot from the joined reply.
func (t *seqTracker) start(base uint64) {
	if t.Started {
		return
	}
	t.Started, t.Base, t.Next = true, base, base+1
}

// observe records the arrival of seq and classifies it.
func (t *seqTracker) observe(seq uint64) int {
	switch {
	case seq == 0:
		return seqIgnored
	case !t.Started || seq <= t.Base:
		t.Stale++
		return seqStale
	case seq == t.Next:
		t.Next++
	case seq > t.Next:
		t.Missing = append(t.Missing, seqRange{t.Next, seq - 1})
		t.Next = seq + 1
	default: // Base < seq < Next: a duplicate, or a late arrival filling a gap
		i := sort.Search(len(t.Missing), func(i int) bool { return t.Missing[i][1] >= seq })
		if i == len(t.Missing) || t.Missing[i][0] > seq {
			t.Dup++
			return seqDuplicate
		}
		m := t.Missing[i]
		switch {
		case m[0] == m[1]:
			t.Missing = append(t.Missing[:i], t.Missing[i+1:]...)
		case seq == m[0]:
			t.Missing[i][0]++
		case seq == m[1]:
			t.Missing[i][1]--
		default:
			t.Missing = append(t.Missing[:i+1], t.Missing[i:]...)
			t.Missing[i] = seqRange{m[0], seq - 1}
			t.Missing[i+1] = seqRange{seq + 1, m[1]}
		}
		t.Reordered++
	}
	t.Received++
	return seqNew
}

// lostOf returns how many of the acknowledged seqs in acked this member
// should have received (seq > Base) and did not.
func (t *seqTracker) lostOf(acked *rangeSet) (expected, lost uint64) {
	if !t.Started {
		return 0, 0
	}
	expected = acked.countIn(t.Base+1, ^uint64(0))
	lost = acked.countIn(t.Next, ^uint64(0))
	for _, m := range t.Missing {
		lost += acked.countIn(m[0], m[1])
	}
	return expected, lost
}

// memberReport is one member's tracker as a worker reports it.
type memberReport struct {
	Room int        `json:"r"`
	Conn int        `json:"c"`
	Live bool       `json:"l,omitempty"`
	T    seqTracker `json:"t"`
}

// Accounting is the run's exact message accounting: every acknowledged
// message against every member that joined before it was sequenced.
type Accounting struct {
	// Acked is the number of distinct acknowledged messages.
	Acked uint64 `json:"acked"`
	// Members is the number of members checked: joined and still connected.
	Members int `json:"members_checked"`
	// Disconnected members joined but lost their connection; they are not
	// checked for losses.
	Disconnected int `json:"members_disconnected"`
	// NotJoined members never got their joined reply.
	NotJoined int `json:"members_not_joined"`
	// Expected deliveries of acknowledged messages to checked members.
	Expected uint64 `json:"expected_deliveries"`
	// Lost is Expected minus what arrived: member × message pairs.
	Lost uint64 `json:"lost"`
	// LostMembers is how many checked members lost at least one message.
	LostMembers int `json:"members_with_loss"`
	// Duplicated deliveries: a member received the same seq again.
	Duplicated uint64 `json:"duplicated"`
	// Stale deliveries had a seq at or below the member's join snapshot.
	Stale uint64 `json:"stale"`
	// Reordered deliveries arrived after a later seq of the same room.
	Reordered uint64 `json:"reordered"`
}

// account checks members against the acknowledged seqs of their rooms.
func account(acked map[int]*rangeSet, members []memberReport) Accounting {
	var a Accounting
	for _, s := range acked {
		a.Acked += s.count()
	}
	empty := &rangeSet{}
	for i := range members {
		m := &members[i]
		a.Duplicated += m.T.Dup
		a.Stale += m.T.Stale
		a.Reordered += m.T.Reordered
		switch {
		case !m.T.Started:
			a.NotJoined++
			continue
		case !m.Live:
			a.Disconnected++
			continue
		}
		s := acked[m.Room]
		if s == nil {
			s = empty
		}
		exp, lost := m.T.lostOf(s)
		a.Members++
		a.Expected += exp
		a.Lost += lost
		if lost > 0 {
			a.LostMembers++
		}
	}
	return a
}
