package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/protocol/client"
	"github.com/hearth-gateway/hearth/shared/checker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// TestEdgeKill: kill -9 the edge half the clients are on while everyone
// publishes. Its clients reconnect through the TLS tier to the other edge,
// resume every room with since, and the checker finds nothing lost,
// duplicated or reordered — and no resets: history covered the gap. The
// hubs remove the dead edge's connections and broadcast the leaves of
// users left with no connection.
func TestEdgeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	r := newChaosRig(t, 8)
	r.env = append(r.env, "HEARTH_EDGE_TIMEOUT=3s", "HEARTH_EDGE_ANNOUNCE=500ms")
	r.startHub("hub-a")
	r.startHub("hub-b")
	var edges []*proc
	for i := 0; i < 2; i++ {
		addr := freeAddr(t)
		edges = append(edges, startProc(t, fmt.Sprintf("edge%d", i), r.bin+"/hearth-edge", r.env,
			"-id", fmt.Sprintf("edge-%d", i), "-listen", addr, "-rate", "2000", "-rate-burst", "2000"))
		r.edgeAddrs = append(r.edgeAddrs, addr)
		testenv.WaitFor(t, 60*time.Second, func() bool { return httpOK("http://" + addr + "/readyz") }, "edge %d ready", i)
	}
	tlsAddr, caFile := startTLSTier(t, r.bin, r.edgeAddrs[:2], filepath.Join(t.TempDir(), "tls"), "-healthy-after", "1")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rooms := chaosRooms(5)
	type member struct {
		name string
		c    *client.Client
	}
	var members []member
	var resetsMu sync.Mutex
	resets := 0
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("m%d", i)
		var c *client.Client
		testenv.WaitFor(t, 15*time.Second, func() bool {
			var err error
			c, err = client.Dial(ctx, client.Config{
				URL: "wss://" + tlsAddr + "/ws", Token: token(t, name), CAFile: caFile,
				ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
				RetryPublish: true,
				OnDeliver: func(f protocol.Frame, recovered bool) {
					if f.Type != protocol.TypeMessage || f.Seq == 0 {
						return
					}
					via := checker.Live
					if recovered {
						via = checker.Recovered
					}
					r.check.Delivered(name, f.Room, f.Seq, checker.MsgID{From: f.From, CMID: f.CMID}, via)
				},
			})
			return err == nil
		}, "%s connected", name)
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			for ev := range c.Events() {
				if ev.Kind == client.EventReset {
					resetsMu.Lock()
					resets++
					resetsMu.Unlock()
					t.Errorf("%s: reset in %s after seq %d", name, ev.Room, ev.Seq)
				}
			}
		}()
		for _, room := range rooms {
			j, err := c.Join(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			r.check.Joined(name, room, j.Seq)
		}
		members = append(members, member{name, c})
	}
	testenv.WaitFor(t, 10*time.Second, func() bool {
		return edgeConnections(r.edgeAddrs[0]) == 3 && edgeConnections(r.edgeAddrs[1]) == 3
	}, "three members on each edge")

	// Everyone publishes 60 messages; edge 0 dies a third of the way in.
	const perMember = 60
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for _, m := range members {
		wg.Add(1)
		go func(m member) {
			defer wg.Done()
			for i := 0; i < perMember; i++ {
				room := rooms[i%len(rooms)]
				cmid := fmt.Sprintf("%s-%d", m.name, i)
				r.check.Sent(room, checker.MsgID{From: m.name, CMID: cmid})
				seq, err := m.c.PublishCMID(ctx, room, cmid, []byte(cmid))
				if err != nil {
					t.Errorf("%s: publish %s: %v", m.name, cmid, err)
					return
				}
				r.check.Acked(room, checker.MsgID{From: m.name, CMID: cmid}, seq)
				if i == perMember/3 && m.name == "m0" {
					_ = edges[0].cmd.Process.Signal(syscall.SIGKILL)
					<-edges[0].done
					close(killed)
				}
			}
		}(m)
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("edge 0 was never killed")
	}
	testenv.WaitFor(t, 30*time.Second, func() bool { return edgeConnections(r.edgeAddrs[1]) == 6 }, "all six members on the surviving edge")
	var rep checker.Report
	testenv.WaitFor(t, 30*time.Second, func() bool {
		rep = r.check.Report()
		return rep.Lost == 0
	}, "every acknowledged message delivered")
	var reconnects uint64
	for _, m := range members {
		reconnects += m.c.Stats().Reconnects
	}
	var b strings.Builder
	rep.WriteTable(&b)
	t.Logf("%d reconnections after the edge kill:\n%s", reconnects, b.String())
	if !rep.OK() || rep.ResetLost != 0 || resets != 0 {
		t.Fatal("checker verdict not clean")
	}
	if reconnects < 3 {
		t.Fatalf("only %d reconnections; the dead edge had 3 clients", reconnects)
	}
}
