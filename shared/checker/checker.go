// Package checker verifies Hearth's delivery promise from the clients'
// point of view, in the style of the Jepsen checkers RabbitMQ uses: it
// records every send, ack, join and delivery, then reports per message which
// acknowledged messages were lost, duplicated, reordered or recovered (seen
// only through resume or history), and whether two clients ever saw
// different messages under one sequence number.
//
// A Checker is safe for concurrent use; recording is cheap (one lock, no
// I/O) so it can sit in a client's receive loop during a load or chaos run.
package checker

import (
	"fmt"
	"io"
	"sort"
	"sync"
)

// MsgID identifies a message: its publisher and client message id.
type MsgID struct{ From, CMID string }

func (m MsgID) String() string { return m.From + "/" + m.CMID }

// Via says how a client got a message.
type Via uint8

// How a message reached a client.
const (
	// Live: a broadcast while connected.
	Live Via = iota
	// Recovered: through a joined reply's history, a resume or a history request.
	Recovered
)

type roomKey struct{ client, room string }

type member struct {
	from uint64 // deliveries expected for seq > from
	// joined is false while the member is known only from deliveries (a
	// client may deliver a join's history before the join returns).
	joined bool
	// resets are ranges (after, upto] the client was told it lost.
	resets [][2]uint64
	// until is the last seq expected; 0 while the member stays.
	until uint64
	left  bool
	seqs  []uint64
	seen  map[uint64]MsgID
	dups  int
	reord int
	recov int
}

// Checker accumulates a run's history.
type Checker struct {
	mu      sync.Mutex
	sent    map[MsgID]string // → room
	acked   map[MsgID]uint64 // → seq
	bySeq   map[string]map[uint64]MsgID
	members map[roomKey]*member
	diverge []string
}

// New returns an empty Checker.
func New() *Checker {
	return &Checker{
		sent:    make(map[MsgID]string),
		acked:   make(map[MsgID]uint64),
		bySeq:   make(map[string]map[uint64]MsgID),
		members: make(map[roomKey]*member),
	}
}

// Sent records a publish attempt.
func (c *Checker) Sent(room string, id MsgID) {
	c.mu.Lock()
	c.sent[id] = room
	c.mu.Unlock()
}

// Acked records the ack of a publish: the message has sequence number seq.
func (c *Checker) Acked(room string, id MsgID, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.acked[id]; ok && prev != seq {
		c.diverge = append(c.diverge, fmt.Sprintf("%s acked twice with seqs %d and %d", id, prev, seq))
	}
	c.acked[id] = seq
	c.noteSeq(room, seq, id)
}

// Joined records that client joined room at sequence number seq: it must
// receive every acknowledged message with a larger seq while it stays.
// A re-join after a reconnect keeps the original starting point.
func (c *Checker) Joined(client, room string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := roomKey{client, room}
	if m := c.members[k]; m != nil && !m.left {
		if !m.joined {
			m.from, m.joined = seq, true
		}
		return
	}
	c.members[k] = &member{from: seq, joined: true, seen: make(map[uint64]MsgID)}
}

// Reset records that client was told (a reset answer) that it cannot get
// room's messages after `after` up to and including upto; those are not
// counted lost but as reset.
func (c *Checker) Reset(client, room string, after, upto uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[roomKey{client, room}]; m != nil {
		m.resets = append(m.resets, [2]uint64{after, upto})
	}
}

// Left records that client left room after having seen up to seq; later
// messages are not expected.
func (c *Checker) Left(client, room string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[roomKey{client, room}]; m != nil {
		m.left, m.until = true, seq
	}
}

// Delivered records that client's application received message id with seq.
func (c *Checker) Delivered(client, room string, seq uint64, id MsgID, via Via) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteSeq(room, seq, id)
	m := c.members[roomKey{client, room}]
	if m == nil {
		m = &member{seen: make(map[uint64]MsgID)}
		c.members[roomKey{client, room}] = m
	}
	if _, dup := m.seen[seq]; dup {
		m.dups++
		return
	}
	if n := len(m.seqs); n > 0 && seq < m.seqs[n-1] {
		m.reord++
	}
	m.seen[seq] = id
	m.seqs = append(m.seqs, seq)
	if via == Recovered {
		m.recov++
	}
}

// noteSeq records which message a room's seq names. mu held on entry.
func (c *Checker) noteSeq(room string, seq uint64, id MsgID) {
	seqs := c.bySeq[room]
	if seqs == nil {
		seqs = make(map[uint64]MsgID)
		c.bySeq[room] = seqs
	}
	if prev, ok := seqs[seq]; ok && prev != id {
		c.diverge = append(c.diverge, fmt.Sprintf("room %s seq %d is %s for one and %s for another", room, seq, prev, id))
		return
	}
	seqs[seq] = id
}

// Report is the verdict of a run.
type Report struct {
	Sent, Acked int
	// Delivered counts distinct (client, message) deliveries.
	Delivered int
	// Lost counts expected (client, acknowledged message) pairs never delivered.
	Lost int
	// Duplicated counts deliveries of a seq a client had already received.
	Duplicated int
	// Reordered counts deliveries with a seq below one already received.
	Reordered int
	// Recovered counts deliveries that came through resume or history.
	Recovered int
	// ResetLost counts expected deliveries a client was explicitly told it
	// had lost (a reset); allowed by the promise, but a run with full
	// retention should have none.
	ResetLost int
	// Unacked counts sends never acknowledged (allowed: the sender learns it).
	Unacked int
	// Diverged lists seqs that named different messages.
	Diverged []string
	// LostExamples names a few lost deliveries.
	LostExamples []string
}

// OK reports whether the run kept the promise.
func (r Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Reordered == 0 && len(r.Diverged) == 0
}

// Report computes the verdict.
func (c *Checker) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Sent: len(c.sent), Acked: len(c.acked), Diverged: append([]string(nil), c.diverge...)}
	for id := range c.sent {
		if _, ok := c.acked[id]; !ok {
			r.Unacked++
		}
	}
	// Acknowledged seqs per room.
	ackedSeqs := make(map[string][]uint64)
	for id, seq := range c.acked {
		room := c.sent[id]
		if room == "" {
			for rm, seqs := range c.bySeq {
				if seqs[seq] == id {
					room = rm
				}
			}
		}
		ackedSeqs[room] = append(ackedSeqs[room], seq)
	}
	keys := make([]roomKey, 0, len(c.members))
	for k := range c.members {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].client != keys[j].client {
			return keys[i].client < keys[j].client
		}
		return keys[i].room < keys[j].room
	})
	for _, k := range keys {
		m := c.members[k]
		r.Delivered += len(m.seqs)
		r.Duplicated += m.dups
		r.Reordered += m.reord
		r.Recovered += m.recov
		for _, seq := range ackedSeqs[k.room] {
			if seq <= m.from || (m.left && seq > m.until) {
				continue
			}
			if _, ok := m.seen[seq]; !ok {
				if m.wasReset(seq) {
					r.ResetLost++
					continue
				}
				r.Lost++
				if len(r.LostExamples) < 10 {
					r.LostExamples = append(r.LostExamples, fmt.Sprintf("%s missed %s #%d (%s)", k.client, k.room, seq, c.bySeq[k.room][seq]))
				}
			}
		}
	}
	return r
}

func (m *member) wasReset(seq uint64) bool {
	for _, rg := range m.resets {
		if seq > rg[0] && seq <= rg[1] {
			return true
		}
	}
	return false
}

// WriteTable prints the report as the table the chaos run shows.
func (r Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%-12s %8s\n", "sent", fmt.Sprint(r.Sent))
	fmt.Fprintf(w, "%-12s %8d\n", "acked", r.Acked)
	fmt.Fprintf(w, "%-12s %8d\n", "unacked", r.Unacked)
	fmt.Fprintf(w, "%-12s %8d\n", "delivered", r.Delivered)
	fmt.Fprintf(w, "%-12s %8d\n", "recovered", r.Recovered)
	fmt.Fprintf(w, "%-12s %8d\n", "reset-lost", r.ResetLost)
	fmt.Fprintf(w, "%-12s %8d\n", "lost", r.Lost)
	fmt.Fprintf(w, "%-12s %8d\n", "duplicated", r.Duplicated)
	fmt.Fprintf(w, "%-12s %8d\n", "reordered", r.Reordered)
	fmt.Fprintf(w, "%-12s %8d\n", "diverged", len(r.Diverged))
	for _, l := range r.LostExamples {
		fmt.Fprintf(w, "  lost: %s\n", l)
	}
	for _, d := range r.Diverged {
		fmt.Fprintf(w, "  diverged: %s\n", d)
	}
}
