package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/auth"
)

func publishN(c *wsClient, room, prefix string, n int) {
	for i := 0; i < n; i++ {
		c.send(protocol.Frame{Type: protocol.TypePublish, Room: room, CMID: fmt.Sprintf("%s-%d", prefix, i), Body: []byte(prefix)})
	}
}

func u64(v uint64) *uint64 { return &v }

// joinFrame joins with an optional since and returns the joined reply.
func (c *wsClient) joinSince(room string, since *uint64) protocol.Frame {
	c.t.Helper()
	id := c.send(protocol.Frame{Type: protocol.TypeJoin, Room: room, Since: since})
	f := c.next(protocol.TypeJoined)
	if f.ID != id {
		c.t.Fatalf("joined %+v does not answer join %d", f, id)
	}
	return f
}

// TestJoinedCarriesHistory: a fresh join gets the room's seq S and the
// recent messages up to S; a resume gets exactly what it missed; a resume
// from before what the room retains is told to reset.
func TestJoinedCarriesHistory(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 1, hubs: 1})
		pub := dial(t, c.edgeURL(0), dialOpts{token: token(t, "pub")})
		pub.join("hist")
		publishN(pub, "hist", "m", 10)
		collect(t, pub, "hist", 10, 10)

		late := dial(t, c.edgeURL(0), dialOpts{token: token(t, "late")})
		j := late.joinSince("hist", nil)
		if j.Seq != 10 || len(j.History) != 10 || j.History[0].Seq != 1 || j.History[9].Seq != 10 || j.Reset {
			t.Fatalf("fresh join: seq %d, %d history frames, reset %v", j.Seq, len(j.History), j.Reset)
		}
		again := dial(t, c.edgeURL(0), dialOpts{token: token(t, "again")})
		r := again.joinSince("hist", u64(7))
		if len(r.History) != 3 || r.History[0].Seq != 8 || r.Reset {
			t.Fatalf("resume from 7: %d frames from %v, reset %v", len(r.History), r.History, r.Reset)
		}
		ahead := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ahead")})
		if r := ahead.joinSince("hist", u64(99)); !r.Reset {
			t.Fatal("a client ahead of the room was not told to reset")
		}
		// History requests page through the same retained messages.
		id := late.send(protocol.Frame{Type: protocol.TypeHistory, Room: "hist", After: 4, Limit: 3})
		h := late.next(protocol.TypeHistoryReply)
		if h.ID != id || len(h.History) != 3 || h.History[0].Seq != 5 || h.Seq != 10 {
			t.Fatalf("history after 4 limit 3: %+v", h)
		}
		late.send(protocol.Frame{Type: protocol.TypeHistory, Room: "hist", Before: 3})
		if h := late.next(protocol.TypeHistoryReply); len(h.History) != 2 || h.History[1].Seq != 2 {
			t.Fatalf("history before 3: %+v", h)
		}
	})
}

// TestConcurrentJoinUnderPublishing: clients join while others publish as
// fast as they can; each joiner sees seq S in its joined reply, then every
// message after S exactly once and in order — no gap, no duplicate.
func TestConcurrentJoinUnderPublishing(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 2, hubs: 2})
		const room, perPub = "busy", 60
		pubs := make([]*wsClient, 3)
		for i := range pubs {
			pubs[i] = dial(t, c.edgeURL(i%2), dialOpts{token: token(t, fmt.Sprintf("pub%d", i))})
			pubs[i].join(room)
		}
		var wg sync.WaitGroup
		for i, p := range pubs {
			wg.Add(1)
			go func(p *wsClient, i int) {
				defer wg.Done()
				publishN(p, room, fmt.Sprintf("p%d", i), perPub)
			}(p, i)
		}
		joiners := make([]*wsClient, 6)
		starts := make([]uint64, len(joiners))
		for i := range joiners {
			joiners[i] = dial(t, c.edgeURL(i%2), dialOpts{token: token(t, fmt.Sprintf("joiner%d", i))})
			j := joiners[i].joinSince(room, nil)
			starts[i] = j.Seq
			if n := len(j.History); n > 0 && j.History[n-1].Seq != j.Seq {
				t.Fatalf("joiner %d: history ends at %d, joined seq %d", i, j.History[n-1].Seq, j.Seq)
			}
		}
		wg.Wait()
		total := uint64(len(pubs) * perPub)
		for i, jn := range joiners {
			want := int(total - starts[i])
			l := collect(t, jn, room, want, 0)
			checkSequence(t, fmt.Sprintf("joiner %d", i), l.messages, starts[i])
		}
	})
}

// TestIdempotentPublish: the same cmid twice is sequenced once; the retry's
// ack carries the original seq, and members see one message.
func TestIdempotentPublish(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 1, hubs: 1})
		a := dial(t, c.edgeURL(0), dialOpts{token: token(t, "a")})
		b := dial(t, c.edgeURL(0), dialOpts{token: token(t, "b")})
		a.join("dedup")
		b.join("dedup")
		a.send(protocol.Frame{Type: protocol.TypePublish, Room: "dedup", CMID: "same", Body: []byte("x")})
		first := a.next(protocol.TypeAck)
		a.send(protocol.Frame{Type: protocol.TypePublish, Room: "dedup", CMID: "same", Body: []byte("x")})
		second := a.next(protocol.TypeAck)
		if first.Seq != second.Seq || first.Seq == 0 {
			t.Fatalf("retry acked with seq %d, original %d", second.Seq, first.Seq)
		}
		a.send(protocol.Frame{Type: protocol.TypePublish, Room: "dedup", CMID: "next", Body: []byte("y")})
		l := collect(t, b, "dedup", 2, 0)
		if l.messages[0].CMID != "same" || l.messages[1].CMID != "next" || l.messages[1].Seq != first.Seq+1 {
			t.Fatalf("member saw %+v", l.messages)
		}
		// Another user may use the same cmid: ids are per publisher.
		b.send(protocol.Frame{Type: protocol.TypePublish, Room: "dedup", CMID: "same", Body: []byte("z")})
		if ack := b.next(protocol.TypeAck); ack.Seq != first.Seq+2 {
			t.Fatalf("b's own 'same' got seq %d", ack.Seq)
		}
	})
}

// TestChatFeatures: typing is broadcast but never sequenced; read receipts
// are broadcast and survive in state; DMs admit only their two users;
// private rooms admit only users whose token grants them.
func TestChatFeatures(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1})
	ann := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ann")})
	bob := dial(t, c.edgeURL(0), dialOpts{token: token(t, "bob")})
	ann.join("lounge")
	bob.join("lounge")
	ann.send(protocol.Frame{Type: protocol.TypeTyping, Room: "lounge"})
	if f := bob.next(protocol.TypeTypingEvent); f.User != "ann" || f.Seq != 0 {
		t.Fatalf("typing event %+v", f)
	}
	ann.send(protocol.Frame{Type: protocol.TypePublish, Room: "lounge", CMID: "1", Body: []byte("hi")})
	ack := ann.next(protocol.TypeAck)
	if ack.Seq != 1 {
		t.Fatalf("typing was sequenced: first message got seq %d", ack.Seq)
	}
	bob.send(protocol.Frame{Type: protocol.TypeRead, Room: "lounge", Seq: 1})
	if f := ann.next(protocol.TypeReceipt); f.User != "bob" || f.Seq != 1 {
		t.Fatalf("receipt %+v", f)
	}

	dm := protocol.DMRoom("ann", "bob")
	ann.join(dm)
	bob.join(dm)
	eve := dial(t, c.edgeURL(0), dialOpts{token: token(t, "eve")})
	eve.send(protocol.Frame{Type: protocol.TypeJoin, Room: dm})
	if f := eve.next(protocol.TypeError); f.Code != protocol.CodeForbidden {
		t.Fatalf("eve joining a DM: %+v", f)
	}
	eve.send(protocol.Frame{Type: protocol.TypeJoin, Room: "priv:ops"})
	if f := eve.next(protocol.TypeError); f.Code != protocol.CodeForbidden {
		t.Fatalf("eve joining a private room: %+v", f)
	}
	opsTok, err := auth.MintRooms(testSecret, "ops-person", time.Hour, []string{"priv:ops"})
	if err != nil {
		t.Fatal(err)
	}
	ops := dial(t, c.edgeURL(0), dialOpts{token: opsTok})
	ops.join("priv:ops")
}

// TestEdgeDeathRemovesMembers: when an edge stops announcing itself, the
// hubs remove its members and broadcast their leaves within the edge
// timeout; users with another connection elsewhere stay.
func TestEdgeDeathRemovesMembers(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 2, hubs: 1})
	stay := dial(t, c.edgeURL(0), dialOpts{token: token(t, "stay")})
	stay.join("watch")
	gone := dial(t, c.edgeURL(1), dialOpts{token: token(t, "gone")})
	gone.join("watch")
	both0 := dial(t, c.edgeURL(0), dialOpts{token: token(t, "both")})
	both1 := dial(t, c.edgeURL(1), dialOpts{token: token(t, "both")})
	both0.join("watch")
	both1.join("watch")
	// Kill edge 1 without a goodbye: stop its announcements and freeze it.
	c.crashEdge(1)
	start := time.Now()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-stay.frames:
			if f.Type == protocol.TypePresence && f.Event == protocol.EventLeave {
				if f.User != "gone" {
					t.Fatalf("%s left, but it still has a connection on the live edge", f.User)
				}
				t.Logf("leave broadcast %v after the edge died", time.Since(start))
				return
			}
		case <-deadline:
			t.Fatal("no leave within 10s of the edge's death")
		}
	}
}

// TestAckAfterLeave: a publisher that leaves right after publishing — the
// last member of the room on its edge, so the edge unbinds the room — still
// gets its ack, exactly once and before the leave's reply: the ack rides
// with the message's broadcast, which is CC'd to the sender's edge however
// its bindings stand (PROTOCOL.md §9.4). A member on another edge gets
// every message.
func TestAckAfterLeave(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 2, hubs: 1})
		other := dial(t, c.edgeURL(1), dialOpts{token: token(t, "other")})
		other.join("brief")
		ann := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ann")})
		const rounds = 20
		for i := range rounds {
			ann.join("brief")
			pid := ann.send(protocol.Frame{Type: protocol.TypePublish, Room: "brief", CMID: fmt.Sprintf("m%d", i), Body: []byte("x")})
			lid := ann.send(protocol.Frame{Type: protocol.TypeLeave, Room: "brief"})
			if a := ann.next(protocol.TypeAck); a.ID != pid || a.Seq != uint64(i+1) {
				t.Fatalf("round %d: ack %+v, want the ack of request %d with seq %d", i, a, pid, i+1)
			}
			if l := ann.next(protocol.TypeLeft); l.ID != lid {
				t.Fatalf("round %d: left %+v does not answer leave %d", i, l, lid)
			}
		}
		if log := collect(t, other, "brief", rounds, 0); len(log.messages) != rounds {
			t.Fatalf("the other member got %d messages, want %d", len(log.messages), rounds)
		}
		// Nothing else arrived for ann: a second ack would show up before
		// this join's reply.
		ann.join("brief")
	})
}
