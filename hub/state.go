package hub

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearth-gateway/hearth/protocol"
)

// A shard's state is event-sourced: every change is a record, appended to
// the shard's durable log before it takes effect, and applied by the same
// code live and when a new owner replays the log after a takeover.

// Record kinds.
const (
	recMessage  uint8 = 1 // a sequenced room message
	recJoin     uint8 = 2 // a connection joined a room
	recLeave    uint8 = 3 // a connection left a room (or closed)
	recRead     uint8 = 4 // a user's read position in a room
	recEdgeGone uint8 = 5 // an edge died or restarted: its (old) connections left every room
	recSnapshot uint8 = 6 // the whole shard state
	recMarker   uint8 = 7 // end of a replay
)

// record is one entry of a shard's log.
type record struct {
	K    uint8     `msgpack:"k"`
	Room string    `msgpack:"r,omitempty"`
	Seq  uint64    `msgpack:"s,omitempty"`
	User string    `msgpack:"u,omitempty"`
	CMID string    `msgpack:"c,omitempty"`
	TS   int64     `msgpack:"t,omitempty"`
	Body []byte    `msgpack:"b,omitempty"`
	Edge string    `msgpack:"e,omitempty"`
	Conn string    `msgpack:"n,omitempty"`
	Snap *snapshot `msgpack:"snap,omitempty"`
	Mark string    `msgpack:"m,omitempty"`
}

// snapshot is a shard's whole state.
type snapshot struct {
	Rooms []roomSnap `msgpack:"rooms"`
}

type roomSnap struct {
	Name    string            `msgpack:"n"`
	Seq     uint64            `msgpack:"s"`
	History []record          `msgpack:"h,omitempty"`
	Dedup   []dedupEntry      `msgpack:"d,omitempty"`
	Members []memberEntry     `msgpack:"m,omitempty"`
	Reads   map[string]uint64 `msgpack:"rd,omitempty"`
}

type dedupEntry struct {
	User string `msgpack:"u"`
	CMID string `msgpack:"c"`
	Seq  uint64 `msgpack:"s"`
}

type memberEntry struct {
	User string `msgpack:"u"`
	Edge string `msgpack:"e"`
	Conn string `msgpack:"n"`
}

func encodeRecord(r *record) ([]byte, error) {
	b, err := msgpack.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("hub: encoding state record: %w", err)
	}
	return b, nil
}

// EncodeMsgpack writes r exactly as msgpack's reflection would — a map of
// the non-empty fields in declaration order, "k" always, with the same
// integer widths — without reflection's allocation per field: records are
// encoded once per state change and again in every snapshot.
// TestRecordEncoding holds the two to the same bytes.
func (r *record) EncodeMsgpack(enc *msgpack.Encoder) error {
	n := 1
	for _, set := range [...]bool{r.Room != "", r.Seq != 0, r.User != "", r.CMID != "", r.TS != 0,
		len(r.Body) != 0, r.Edge != "", r.Conn != "", r.Snap != nil, r.Mark != ""} {
		if set {
			n++
		}
	}
	if err := enc.EncodeMapLen(n); err != nil {
		return err
	}
	if err := enc.EncodeString("k"); err != nil {
		return err
	}
	if err := enc.EncodeUint8(r.K); err != nil {
		return err
	}
	str := func(key, v string) error {
		if v == "" {
			return nil
		}
		if err := enc.EncodeString(key); err != nil {
			return err
		}
		return enc.EncodeString(v)
	}
	if err := str("r", r.Room); err != nil {
		return err
	}
	if r.Seq != 0 {
		if err := enc.EncodeString("s"); err != nil {
			return err
		}
		if err := enc.EncodeUint64(r.Seq); err != nil {
			return err
		}
	}
	if err := str("u", r.User); err != nil {
		return err
	}
	if err := str("c", r.CMID); err != nil {
		return err
	}
	if r.TS != 0 {
		if err := enc.EncodeString("t"); err != nil {
			return err
		}
		if err := enc.EncodeInt64(r.TS); err != nil {
			return err
		}
	}
	if len(r.Body) != 0 {
		if err := enc.EncodeString("b"); err != nil {
			return err
		}
		if err := enc.EncodeBytes(r.Body); err != nil {
			return err
		}
	}
	if err := str("e", r.Edge); err != nil {
		return err
	}
	if err := str("n", r.Conn); err != nil {
		return err
	}
	if r.Snap != nil {
		if err := enc.EncodeString("snap"); err != nil {
			return err
		}
		if err := enc.Encode(r.Snap); err != nil {
			return err
		}
	}
	return str("m", r.Mark)
}

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := msgpack.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("hub: decoding state record: %w", err)
	}
	return &r, nil
}

// limits bound a room's retained state.
type limits struct {
	historyMessages int
	historyBytes    int
	dedupWindow     int
	// shardHistoryBytes and shardDedup bound all rooms of a shard together:
	// each shard's share of the hub-wide bounds. Zero: no bound.
	shardHistoryBytes int
	shardDedup        int
}

type msgKey struct{ user, cmid string }

// room is one room's state. Only its shard's goroutine touches it.
type room struct {
	seq uint64
	// history is the retained tail of the room's messages, oldest first.
	history      []record
	historyBytes int
	// dedup maps a publisher's client message id to the seq it was given;
	// dedupOrder evicts the oldest beyond the window.
	dedup      map[msgKey]uint64
	dedupOrder []msgKey
	// members maps a user to its connections in the room.
	members map[string]map[connKey]struct{}
	reads   map[string]uint64
	// lastActive is the shard clock of the room's last message.
	lastActive uint64
	// key is the room's egress routing key, once needed (roomKey).
	key string
}

type connKey struct{ edge, conn string }

func newRoom() *room {
	return &room{
		dedup:   make(map[msgKey]uint64),
		members: make(map[string]map[connKey]struct{}),
		reads:   make(map[string]uint64),
	}
}

// state is a shard's rooms.
type state struct {
	rooms map[string]*room
	lim   limits
	// clock counts messages; historyBytes and dedupEntries total all rooms.
	clock        uint64
	historyBytes int
	dedupEntries int
	evictions    int
}

func newState(lim limits) *state { return &state{rooms: make(map[string]*room), lim: lim} }

func (s *state) room(name string) *room {
	r := s.rooms[name]
	if r == nil {
		r = newRoom()
		s.rooms[name] = r
	}
	return r
}

// roomKey returns the egress routing key of the room name, remembered by
// the room when it exists.
func (s *state) roomKey(name string) string {
	r := s.rooms[name]
	if r == nil {
		return protocol.RoomKey(name)
	}
	if r.key == "" {
		r.key = protocol.RoomKey(name)
	}
	return r.key
}

// apply makes rec take effect. It returns whether a user's presence in a
// room changed (first connection joined, last one left) for join, leave and
// edge-gone records, so the caller can broadcast it.
func (s *state) apply(rec *record) (changed []presenceChange) {
	switch rec.K {
	case recMessage:
		r := s.room(rec.Room)
		if rec.Seq <= r.seq {
			return nil // already applied (a replay overlapping a snapshot)
		}
		r.seq = rec.Seq
		s.remember(r, rec)
	case recJoin:
		r := s.room(rec.Room)
		conns := r.members[rec.User]
		if conns == nil {
			conns = make(map[connKey]struct{})
			r.members[rec.User] = conns
		}
		if len(conns) == 0 {
			changed = append(changed, presenceChange{rec.Room, rec.User, protocol.EventJoin})
		}
		conns[connKey{rec.Edge, rec.Conn}] = struct{}{}
	case recLeave:
		if r := s.rooms[rec.Room]; r != nil && removeMember(r, rec.User, connKey{rec.Edge, rec.Conn}) {
			changed = append(changed, presenceChange{rec.Room, rec.User, protocol.EventLeave})
		}
	case recEdgeGone:
		names := make([]string, 0, len(s.rooms))
		for name := range s.rooms {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			r := s.rooms[name]
			for user, conns := range r.members {
				for k := range conns {
					if k.edge == rec.Edge && !keeps(rec.Conn, k.conn) && removeMember(r, user, k) {
						changed = append(changed, presenceChange{name, user, protocol.EventLeave})
					}
				}
			}
		}
	case recRead:
		r := s.room(rec.Room)
		if rec.Seq > r.reads[rec.User] {
			r.reads[rec.User] = rec.Seq
		}
	case recSnapshot:
		s.rooms = make(map[string]*room, len(rec.Snap.Rooms))
		s.historyBytes, s.dedupEntries = 0, 0
		for i := range rec.Snap.Rooms {
			rs := &rec.Snap.Rooms[i]
			r := s.room(rs.Name)
			r.seq = rs.Seq
			// De-duplication entries first, in their order, so the window
			// forgets the oldest ids first; remembering the history then
			// finds its ids already there.
			for _, d := range rs.Dedup {
				s.addDedup(r, msgKey{d.User, d.CMID}, d.Seq)
			}
			for j := range rs.History {
				s.remember(r, &rs.History[j])
			}
			for _, m := range rs.Members {
				conns := r.members[m.User]
				if conns == nil {
					conns = make(map[connKey]struct{})
					r.members[m.User] = conns
				}
				conns[connKey{m.Edge, m.Conn}] = struct{}{}
			}
			for u, seq := range rs.Reads {
				r.reads[u] = seq
			}
		}
	}
	return changed
}

type presenceChange struct{ room, user, event string }

// keeps reports whether an edge-gone record with incarnation inc spares
// connection conn: a restarted edge keeps its new connections.
func keeps(inc, conn string) bool {
	return inc != "" && strings.HasPrefix(conn, inc+"-")
}

func removeMember(r *room, user string, k connKey) (lastGone bool) {
	conns := r.members[user]
	if _, ok := conns[k]; !ok {
		return false
	}
	delete(conns, k)
	if len(conns) == 0 {
		delete(r.members, user)
		return true
	}
	return false
}

// remember adds a message to the room's history and de-duplication window,
// trimming both to the room's bounds and the shard's to its budgets.
func (s *state) remember(r *room, rec *record) {
	m := *rec
	m.K = recMessage
	m.Room = ""
	s.clock++
	r.lastActive = s.clock
	r.history = append(r.history, m)
	r.historyBytes += len(m.Body)
	s.historyBytes += len(m.Body)
	for len(r.history) > 0 && (len(r.history) > s.lim.historyMessages || r.historyBytes > s.lim.historyBytes) {
		s.dropHistory(r, 1)
	}
	if m.CMID != "" {
		s.addDedup(r, msgKey{m.User, m.CMID}, m.Seq)
	}
	s.enforceBudgets()
}

// dropHistory removes a room's n oldest retained messages.
func (s *state) dropHistory(r *room, n int) {
	for i := 0; i < n && len(r.history) > 0; i++ {
		r.historyBytes -= len(r.history[0].Body)
		s.historyBytes -= len(r.history[0].Body)
		r.history[0] = record{}
		r.history = r.history[1:]
	}
}

// dropDedup forgets a room's n oldest client message ids.
func (s *state) dropDedup(r *room, n int) {
	for i := 0; i < n && len(r.dedupOrder) > 0; i++ {
		delete(r.dedup, r.dedupOrder[0])
		r.dedupOrder = r.dedupOrder[1:]
		s.dedupEntries--
	}
}

func (s *state) addDedup(r *room, k msgKey, seq uint64) {
	if _, ok := r.dedup[k]; ok {
		return
	}
	r.dedup[k] = seq
	r.dedupOrder = append(r.dedupOrder, k)
	s.dedupEntries++
	if len(r.dedupOrder) > s.lim.dedupWindow {
		s.dropDedup(r, len(r.dedupOrder)-s.lim.dedupWindow)
	}
}

// enforceBudgets keeps the shard's history bytes and de-duplication
// entries, over all its rooms, within the shard's share of the hub-wide
// bounds, by halving what the least recently active rooms retain. A room
// that loses history answers older resumes with a reset; one that loses
// de-duplication entries can sequence a very late retry again.
func (s *state) enforceBudgets() {
	for (s.lim.shardHistoryBytes > 0 && s.historyBytes > s.lim.shardHistoryBytes) ||
		(s.lim.shardDedup > 0 && s.dedupEntries > s.lim.shardDedup) {
		var lru *room
		for _, r := range s.rooms {
			if (len(r.history) > 0 || len(r.dedupOrder) > 0) && (lru == nil || r.lastActive < lru.lastActive) {
				lru = r
			}
		}
		if lru == nil {
			return
		}
		s.dropHistory(lru, (len(lru.history)+1)/2)
		s.dropDedup(lru, (len(lru.dedupOrder)+1)/2)
		s.evictions++
	}
}

// snapshot captures the whole state.
func (s *state) snapshot() *snapshot {
	names := make([]string, 0, len(s.rooms))
	for name := range s.rooms {
		names = append(names, name)
	}
	sort.Strings(names)
	snap := &snapshot{Rooms: make([]roomSnap, 0, len(names))}
	for _, name := range names {
		r := s.rooms[name]
		rs := roomSnap{Name: name, Seq: r.seq, History: r.history}
		for _, k := range r.dedupOrder {
			rs.Dedup = append(rs.Dedup, dedupEntry{k.user, k.cmid, r.dedup[k]})
		}
		for user, conns := range r.members {
			for k := range conns {
				rs.Members = append(rs.Members, memberEntry{user, k.edge, k.conn})
			}
		}
		if len(r.reads) > 0 {
			rs.Reads = r.reads
		}
		snap.Rooms = append(snap.Rooms, rs)
	}
	return snap
}

// messageFrame is the client frame of a retained message.
func messageFrame(room string, rec *record) protocol.Frame {
	return protocol.Frame{Type: protocol.TypeMessage, Room: room, Seq: rec.Seq, From: rec.User, CMID: rec.CMID, TS: rec.TS, Body: rec.Body}
}

// historyAfter returns the retained messages with seq > after (at most
// limit, oldest first) and whether messages after `after` are missing from
// what the room retains (the client must reset).
func (r *room) historyAfter(after uint64, limit int) (out []protocol.Frame, reset bool) {
	if after > r.seq {
		return nil, true
	}
	if after == r.seq {
		return nil, false
	}
	oldest := r.seq + 1 // seq of the oldest retained message
	if len(r.history) > 0 {
		oldest = r.history[0].Seq
	}
	if after+1 < oldest {
		reset = true
	}
	i := sort.Search(len(r.history), func(i int) bool { return r.history[i].Seq > after })
	end := len(r.history)
	if end-i > limit {
		// More than one reply holds: the client pages on with After.
		end = i + limit
	}
	for j := i; j < end; j++ {
		out = append(out, messageFrame("", &r.history[j]))
	}
	return out, reset
}

// historyBefore returns up to limit retained messages with seq < before
// (0: the newest), oldest first.
func (r *room) historyBefore(before uint64, limit int) []protocol.Frame {
	end := len(r.history)
	if before > 0 {
		end = sort.Search(len(r.history), func(i int) bool { return r.history[i].Seq >= before })
	}
	start := end - limit
	if start < 0 {
		start = 0
	}
	out := make([]protocol.Frame, 0, end-start)
	for j := start; j < end; j++ {
		out = append(out, messageFrame("", &r.history[j]))
	}
	return out
}
