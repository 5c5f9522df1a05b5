package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/checker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// chaosRig runs hubs and edges as processes, so hubs can be killed with
// SIGKILL, and drives raw clients whose deliveries feed a checker.
type chaosRig struct {
	t      *testing.T
	bin    string
	env    []string
	shards int

	mu    sync.Mutex
	hubs  map[string]*proc
	admin map[string]string

	edgeAddrs []string
	check     *checker.Checker
}

// newChaosRig prepares a rig with shards shards; env adds HEARTH_*
// settings for every process it starts.
func newChaosRig(t *testing.T, shards int, env ...string) *chaosRig {
	t.Helper()
	url := vhostURL(t)
	r := &chaosRig{
		t: t, bin: buildBinaries(t), shards: shards,
		hubs: map[string]*proc{}, admin: map[string]string{},
		check: checker.New(),
	}
	secretFile := t.TempDir() + "/jwt-secret"
	if err := os.WriteFile(secretFile, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = []string{"AMQP_URL=" + url, fmt.Sprintf("HEARTH_SHARDS=%d", shards), "HEARTH_JWT_SECRET_FILE=" + secretFile,
		"HEARTH_LOG_LEVEL=info", "HEARTH_HUB_HEARTBEAT=500ms", "HEARTH_HUB_TIMEOUT=2s"}
	r.env = append(r.env, env...)
	return r
}

func (r *chaosRig) startHub(id string) {
	r.t.Helper()
	addr := r.spawnHub(id)
	testenv.WaitFor(r.t, 60*time.Second, func() bool { return httpOK("http://" + addr + "/readyz") }, "%s ready", id)
}

// spawnHub starts hub id without waiting for it; it returns its admin address.
func (r *chaosRig) spawnHub(id string) string {
	r.t.Helper()
	addr := freeAddr(r.t)
	p := startProc(r.t, id, r.bin+"/hearth-hub", r.env, "-id", id, "-admin-listen", addr)
	r.mu.Lock()
	r.hubs[id], r.admin[id] = p, addr
	r.mu.Unlock()
	return addr
}

func (r *chaosRig) startEdges(n int) {
	r.t.Helper()
	for i := 0; i < n; i++ {
		addr := freeAddr(r.t)
		startProc(r.t, fmt.Sprintf("edge%d", i), r.bin+"/hearth-edge", r.env,
			"-id", fmt.Sprintf("edge-%d", i), "-listen", addr, "-rate", "2000", "-rate-burst", "2000")
		r.edgeAddrs = append(r.edgeAddrs, addr)
	}
	for _, addr := range r.edgeAddrs {
		testenv.WaitFor(r.t, 60*time.Second, func() bool { return httpOK("http://" + addr + "/readyz") }, "edge %s ready", addr)
	}
}

// kill sends SIGKILL to hub id and forgets it.
func (r *chaosRig) kill(id string) {
	r.mu.Lock()
	p := r.hubs[id]
	delete(r.hubs, id)
	delete(r.admin, id)
	r.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// shards reads each live hub's owned-shard gauge.
func (r *chaosRig) shardCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, addr := range r.admin {
		out[id] = gauge(addr, "hearth_hub_shards{")
	}
	return out
}

// balanced reports whether the live hubs own every shard, evenly.
func (r *chaosRig) balanced() bool {
	counts := r.shardCounts()
	total, lo, hi := 0, r.shards, 0
	for _, n := range counts {
		if n < 0 {
			return false
		}
		total += n
		lo, hi = min(lo, n), max(hi, n)
	}
	return total == r.shards && hi-lo <= 1
}

func gauge(addr, prefix string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			var n float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &n); err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// chaosClient is a member of every room; it publishes and records what its
// application would see. Like every client (PROTOCOL.md) it drops a seq it
// already has — a takeover may broadcast the last message again — and
// counts those wire duplicates; anything else, out of order or not, goes to
// the checker.
type chaosClient struct {
	name     string
	ws       *wsClient
	seen     map[string]map[uint64]bool
	wireDups atomic.Int64
	acks     chan struct{}
}

func (r *chaosRig) client(name string, edge int, rooms []string) *chaosClient {
	ws := dial(r.t, "ws://"+r.edgeAddrs[edge]+"/ws", dialOpts{token: token(r.t, name)})
	c := &chaosClient{name: name, ws: ws, seen: map[string]map[uint64]bool{}, acks: make(chan struct{}, 100000)}
	for _, room := range rooms {
		j := ws.join(room)
		c.seen[room] = map[uint64]bool{}
		r.check.Joined(name, room, j.Seq)
	}
	go func() {
		for {
			select {
			case f := <-ws.frames:
				switch f.Type {
				case protocol.TypeMessage:
					if c.seen[f.Room][f.Seq] {
						c.wireDups.Add(1)
						continue
					}
					c.seen[f.Room][f.Seq] = true
					r.check.Delivered(name, f.Room, f.Seq, checker.MsgID{From: f.From, CMID: f.CMID}, checker.Live)
				case protocol.TypeAck:
					r.check.Acked(f.Room, checker.MsgID{From: name, CMID: f.CMID}, f.Seq)
					c.acks <- struct{}{}
				case protocol.TypeError:
					r.t.Errorf("%s got error %+v", name, f)
				}
			case <-ws.closed:
				return
			}
		}
	}()
	return c
}

func (c *chaosClient) publish(r *chaosRig, room string, i int) {
	cmid := fmt.Sprintf("%s-%d", c.name, i)
	r.check.Sent(room, checker.MsgID{From: c.name, CMID: cmid})
	c.ws.send(protocol.Frame{Type: protocol.TypePublish, Room: room, CMID: cmid, Body: []byte(cmid)})
}

// runChaos publishes total messages over rooms from clients, calling
// disturb once a third of them are out, then waits for every ack and for the
// checker to see every delivery, and fails unless the verdict is clean.
func runChaos(t *testing.T, r *chaosRig, clients []*chaosClient, rooms []string, total int, disturb func()) checker.Report {
	t.Helper()
	start := time.Now()
	for i := 0; i < total; i++ {
		c := clients[i%len(clients)]
		c.publish(r, rooms[(i/len(clients))%len(rooms)], i)
		if i == total/3 {
			disturb()
		}
		if i%50 == 49 {
			time.Sleep(20 * time.Millisecond) // pacing, so the run spans the disturbance
		}
	}
	acked := 0
	deadline := time.After(90 * time.Second)
	for _, c := range clients {
		for n := 0; n < total/len(clients); n++ {
			select {
			case <-c.acks:
				acked++
			case <-deadline:
				t.Fatalf("%d of %d publishes acked after 90s", acked, total)
			}
		}
	}
	var rep checker.Report
	testenv.WaitFor(t, 60*time.Second, func() bool {
		rep = r.check.Report()
		return rep.Lost == 0
	}, "every acknowledged message delivered to every member")
	var b strings.Builder
	rep.WriteTable(&b)
	var wire int64
	for _, c := range clients {
		wire += c.wireDups.Load()
	}
	t.Logf("%d messages over %d rooms in %v (%d wire duplicates dropped by clients):\n%s", total, len(rooms), time.Since(start).Round(time.Millisecond), wire, b.String())
	if !rep.OK() {
		t.Fatalf("checker verdict not clean:\n%s", b.String())
	}
	return rep
}

// startPipeline starts the hubs and two edges, waits for the shards to be
// balanced over the hubs, and connects eight clients, alternating edges,
// to 20 rooms.
func (r *chaosRig) startPipeline(hubs ...string) (rooms []string, clients []*chaosClient) {
	for _, id := range hubs {
		r.startHub(id)
	}
	r.startEdges(2)
	testenv.WaitFor(r.t, 20*time.Second, r.balanced, "%d shards over %d hubs", r.shards, len(hubs))
	rooms = chaosRooms(20)
	clients = make([]*chaosClient, 8)
	for i := range clients {
		clients[i] = r.client(fmt.Sprintf("c%d", i), i%2, rooms)
	}
	return rooms, clients
}

func chaosRooms(n int) []string {
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%02d", i)
	}
	return rooms
}

// TestHubKill: kill -9 one of three hubs while 2,000 messages flow across 20
// rooms: nothing lost, duplicated or reordered; its shards are taken over
// within 5 s and the survivors share them evenly. With both kinds of shard
// queue (ADR 0004): classic, the default, and quorum.
func TestHubKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	for _, quorum := range []bool{false, true} {
		name := map[bool]string{false: "classic", true: "quorum"}[quorum]
		t.Run(name, func(t *testing.T) {
			r := newChaosRig(t, 16, fmt.Sprintf("HEARTH_QUORUM=%v", quorum))
			rooms, clients := r.startPipeline("hub-a", "hub-b", "hub-c")
			var took *settleTimer
			runChaos(t, r, clients, rooms, 2000, func() {
				r.kill("hub-b")
				took = settle(func() bool { return r.balanced() && len(r.shardCounts()) == 2 })
			})
			d := took.wait(t, 10*time.Second)
			t.Logf("the killed hub's shards were taken over %v after the kill: %v", d.Round(time.Millisecond), r.shardCounts())
			if d > 5*time.Second {
				t.Fatalf("takeover took %v, want under 5s", d)
			}
		})
	}
}

// TestHubJoins: a fourth hub starts mid-run; the shards rebalance to it and
// the run stays clean.
func TestHubJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	r := newChaosRig(t, 16)
	rooms, clients := r.startPipeline("hub-a", "hub-b", "hub-c")
	var took *settleTimer
	runChaos(t, r, clients, rooms, 2000, func() {
		r.spawnHub("hub-d")
		took = settle(func() bool { return r.balanced() && len(r.shardCounts()) == 4 && r.shardCounts()["hub-d"] > 0 })
	})
	d := took.wait(t, 10*time.Second)
	t.Logf("the fourth hub had its share %v after it started: %v", d.Round(time.Millisecond), r.shardCounts())
	if d > 5*time.Second {
		t.Fatalf("rebalancing took %v, want under 5s", d)
	}
}

// settleTimer measures, from its start, how long until a condition holds.
type settleTimer struct {
	done chan time.Duration
}

// settle polls cond every 50 ms in the background from now on.
func settle(cond func() bool) *settleTimer {
	st := &settleTimer{done: make(chan time.Duration, 1)}
	start := time.Now()
	go func() {
		for time.Since(start) < 60*time.Second {
			if cond() {
				st.done <- time.Since(start)
				return
			}
			time.Sleep(50 * time.Millisecond) // polling interval of a measurement, not synchronisation
		}
	}()
	return st
}

func (st *settleTimer) wait(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	select {
	case d := <-st.done:
		return d
	case <-time.After(limit):
		t.Fatalf("condition not reached within %v", limit)
		return 0
	}
}
