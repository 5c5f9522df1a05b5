package edge

import (
	"bytes"
	"testing"
	"time"
)

// TestHeartbeatSlice: a check pings only the connections that need it —
// silent for longer than the timeout, or not written to for half a
// heartbeat — closes those that left a ping unanswered for longer than the
// timeout, never one it did not ping, and leaves connections of other
// slots alone.
func TestHeartbeatSlice(t *testing.T) {
	s := bareServer(t, 64)
	s.cfg.Heartbeat = 20 * time.Second
	s.cfg.HeartbeatTimeout = 10 * time.Second
	now := time.Now().UnixNano()
	sec := time.Second.Nanoseconds()
	type tc struct {
		name             string
		slot             uint32
		seen, sent, ping int64 // seconds before now; ping 0: never pinged
		wantPing         bool
		wantClosed       bool
		rc               *recordConn
		c                *conn
	}
	cases := []*tc{
		{name: "talking and talked to", seen: 1, sent: 1},
		{name: "listening, silent past the timeout", seen: 11, sent: 1, wantPing: true},
		{name: "talking, not written to for half a heartbeat", seen: 1, sent: 11, wantPing: true},
		{name: "a ping unanswered past the timeout", seen: 40, sent: 1, ping: 11, wantClosed: true},
		{name: "a ping unanswered, within the timeout", seen: 40, sent: 1, ping: 5},
		{name: "silent for long, never pinged (checks came late)", seen: 40, sent: 1, wantPing: true},
		{name: "answered the last ping", seen: 2, sent: 1, ping: 30},
		{name: "another slot", slot: 1, seen: 31, sent: 31},
	}
	for _, k := range cases {
		k.rc = &recordConn{}
		k.c = newConn(s, k.name, "u", "", &lockedConn{Conn: k.rc})
		k.c.hbSlot = k.slot
		k.c.lastSeen.Store(now - k.seen*sec)
		k.c.lastSent.Store(now - k.sent*sec)
		if k.ping > 0 {
			k.c.lastPing.Store(now - k.ping*sec)
		}
		s.conns[k.c] = struct{}{}
	}
	batch := s.heartbeatSlice(0, now, nil)
	if len(batch) != 0 {
		t.Fatalf("returned batch has %d connections", len(batch))
	}
	s.wg.Wait() // the close runs on a goroutine of its own
	ping := appendWSFrame(nil, opPing, nil)
	for _, k := range cases {
		got := k.rc.bytes()
		switch {
		case k.wantClosed:
			if len(got) == 0 || got[0] != 0x80|opClose || !k.c.closing.Load() {
				t.Errorf("%s: not closed (wrote % x)", k.name, got)
			}
		case k.wantPing:
			if !bytes.Equal(got, ping) || k.c.lastPing.Load() != now {
				t.Errorf("%s: wrote % x (ping at %d), want one ping at %d", k.name, got, k.c.lastPing.Load(), now)
			}
		default:
			if len(got) != 0 {
				t.Errorf("%s: wrote % x, want nothing", k.name, got)
			}
		}
	}
	if n := s.stats.heartbeatTimeouts.Load(); n != 1 {
		t.Errorf("heartbeat timeouts %d, want 1", n)
	}
	// A ping is a write: the connection is not pinged again at once.
	pinged := cases[1]
	if pinged.c.lastSent.Load() <= now-sec {
		t.Errorf("a ping did not count as a write")
	}
}

// TestHeartbeatSlotsSpread: connections are dealt into the heartbeat
// slots in turn, so each check touches an even share of them.
func TestHeartbeatSlotsSpread(t *testing.T) {
	s := bareServer(t, 64)
	counts := make([]int, heartbeatSlices)
	for i := 0; i < 3*heartbeatSlices; i++ {
		c := newConn(s, "c", "u", "", &lockedConn{Conn: &recordConn{}})
		counts[c.hbSlot]++
	}
	for slot, n := range counts {
		if n != 3 {
			t.Fatalf("slot %d has %d connections, want 3 (all: %v)", slot, n, counts)
		}
	}
}
