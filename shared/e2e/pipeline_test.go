package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// dialTLS connects through the TLS tier, retrying while its first health
// checks have not yet found an edge.
func (c *cluster) dialTLS(t *testing.T, user string) *wsClient {
	t.Helper()
	var last error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ws, status, err := dialRaw(t, c.tlsURL(), dialOpts{token: token(t, user), tls: c.tlsConfig()})
		if err == nil {
			return ws
		}
		last = fmt.Errorf("status %d: %w", status, err)
		if status != http.StatusServiceUnavailable && status != http.StatusBadGateway {
			break
		}
		time.Sleep(50 * time.Millisecond) // retry pacing against a tier still warming up
	}
	t.Fatalf("dial through the TLS tier: %v", last)
	return nil
}

// roomLog collects what one client saw in one room.
type roomLog struct {
	messages []protocol.Frame
	acks     map[string]uint64 // cmid → seq
}

// collect reads c's frames until it has seen want messages of room and an
// ack for each of acks of its own publishes.
func collect(t *testing.T, c *wsClient, room string, want, acks int) roomLog {
	t.Helper()
	log := roomLog{acks: map[string]uint64{}}
	deadline := time.After(20 * time.Second)
	for len(log.messages) < want || len(log.acks) < acks {
		select {
		case f := <-c.frames:
			switch f.Type {
			case protocol.TypeMessage:
				if f.Room == room {
					log.messages = append(log.messages, f)
				}
			case protocol.TypeAck:
				if _, dup := log.acks[f.CMID]; dup {
					t.Fatalf("second ack for %s", f.CMID)
				}
				log.acks[f.CMID] = f.Seq
			case protocol.TypeError:
				t.Fatalf("error frame: %+v", f)
			}
		case <-c.closed:
			t.Fatalf("connection closed with %d while collecting", c.code())
		case <-deadline:
			t.Fatalf("collected %d/%d messages and %d/%d acks within 20s", len(log.messages), want, len(log.acks), acks)
		}
	}
	return log
}

// checkSequence fails unless msgs have strictly consecutive seqs after
// start and no client message id twice.
func checkSequence(t *testing.T, who string, msgs []protocol.Frame, start uint64) {
	t.Helper()
	seen := map[string]bool{}
	for i, m := range msgs {
		if m.Seq != start+uint64(i)+1 {
			t.Fatalf("%s: message %d has seq %d, want %d (gap, duplicate or reorder)", who, i, m.Seq, start+uint64(i)+1)
		}
		key := m.From + "/" + m.CMID
		if seen[key] {
			t.Fatalf("%s: %s delivered twice", who, key)
		}
		seen[key] = true
	}
}

// TestCrossEdge is the foundation scenario: through the TLS tier, Alice and
// Bob land on different edges, join one room and publish concurrently; both
// see every message exactly once, with the same seqs in the same order, and
// get an ack for each of their own; the third edge, with no member, receives
// none of the room's broadcasts.
func TestCrossEdge(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 3, hubs: 2, tls: true})
		alice := c.dialTLS(t, "alice")
		bob := c.dialTLS(t, "bob")

		// Least-connections put them on two different edges.
		var idle *edge.Server
		testenv.WaitFor(t, 10*time.Second, func() bool {
			busy, free := 0, []*edge.Server{}
			for _, e := range c.edges {
				switch e.Stats().Connections {
				case 1:
					busy++
				case 0:
					free = append(free, e)
				}
			}
			if busy == 2 && len(free) == 1 {
				idle = free[0]
				return true
			}
			return false
		}, "alice and bob on two different edges")

		const room = "general"
		ja := alice.join(room)
		jb := bob.join(room)
		if ja.Seq != 0 || jb.Seq != 0 {
			t.Fatalf("fresh room joined at seq %d/%d, want 0", ja.Seq, jb.Seq)
		}
		if len(jb.Members) != 2 {
			t.Fatalf("bob's joined lists members %v, want alice and bob", jb.Members)
		}

		const n = 25
		var wg sync.WaitGroup
		for _, p := range []struct {
			c    *wsClient
			name string
		}{{alice, "alice"}, {bob, "bob"}} {
			wg.Add(1)
			go func(c *wsClient, name string) {
				defer wg.Done()
				for i := 0; i < n; i++ {
					c.send(protocol.Frame{Type: protocol.TypePublish, Room: room, CMID: fmt.Sprintf("%s-%d", name, i), Body: []byte(name)})
				}
			}(p.c, p.name)
		}
		wg.Wait()
		la := collect(t, alice, room, 2*n, n)
		lb := collect(t, bob, room, 2*n, n)
		checkSequence(t, "alice", la.messages, 0)
		checkSequence(t, "bob", lb.messages, 0)
		for i := range la.messages {
			a, b := la.messages[i], lb.messages[i]
			if a.Seq != b.Seq || a.CMID != b.CMID || a.From != b.From {
				t.Fatalf("position %d: alice saw %s/%s#%d, bob saw %s/%s#%d", i, a.From, a.CMID, a.Seq, b.From, b.CMID, b.Seq)
			}
		}
		// Each ack carries the seq everyone saw for that message.
		bySeq := map[string]uint64{}
		for _, m := range la.messages {
			bySeq[m.CMID] = m.Seq
		}
		for _, l := range []roomLog{la, lb} {
			for cmid, seq := range l.acks {
				if bySeq[cmid] != seq {
					t.Fatalf("ack for %s says seq %d, broadcast had %d", cmid, seq, bySeq[cmid])
				}
			}
		}
		if got := idle.Stats().RoomMessages; got != 0 {
			t.Fatalf("the edge without members received %d room broadcasts, want 0", got)
		}
		for _, e := range c.edges {
			if e != idle && e.Stats().RoomMessages < 2*n {
				t.Fatalf("a member's edge received %d room broadcasts, want ≥ %d", e.Stats().RoomMessages, 2*n)
			}
		}
	})
}

// TestLeaveUnbinds checks the reference-counted bindings end to end: after
// the last local member leaves, the edge stops receiving the room.
func TestLeaveUnbinds(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := newCluster(t, kind, clusterOpts{edges: 2, hubs: 1})
		a1 := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ann")})
		a2 := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ann")})
		b := dial(t, c.edgeURL(1), dialOpts{token: token(t, "ben")})
		for _, w := range []*wsClient{a1, a2, b} {
			w.join("r1")
		}
		base := c.edges[0].Stats().BoundKeys
		a1.send(protocol.Frame{Type: protocol.TypeLeave, Room: "r1"})
		a1.next(protocol.TypeLeft)
		if got := c.edges[0].Stats().BoundKeys; got != base {
			t.Fatalf("edge unbound r1 while a2 is still a member: %d keys, want %d", got, base)
		}
		a2.send(protocol.Frame{Type: protocol.TypeLeave, Room: "r1"})
		a2.next(protocol.TypeLeft)
		if got := c.edges[0].Stats().BoundKeys; got != base-1 {
			t.Fatalf("edge keeps %d bound keys after the last leave, want %d", got, base-1)
		}
		before := c.edges[0].Stats().RoomMessages
		b.send(protocol.Frame{Type: protocol.TypePublish, Room: "r1", CMID: "x", Body: []byte("hi")})
		collect(t, b, "r1", 1, 1)
		if got := c.edges[0].Stats().RoomMessages; got != before {
			t.Fatalf("edge without members received %d new broadcasts", got-before)
		}
	})
}
