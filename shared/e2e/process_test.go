package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/protocol/client"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// edgeConnections reads an edge's connection gauge from /metrics.
func edgeConnections(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "hearth_edge_connections{") {
			var n float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &n); err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// TestProcesses runs the real binaries as `make run` does — two hubs, two
// edges and the TLS tier as separate processes on RabbitMQ — and chats
// through them with the Go client. Then one edge gets SIGTERM: it drains
// (close 1001 with a reconnect hint) and exits in bounded time, and its
// client reconnects through the TLS tier to the other edge, rejoins and
// keeps chatting.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	url := vhostURL(t)
	bin := buildBinaries(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "jwt-secret")
	if err := os.WriteFile(secretFile, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"AMQP_URL=" + url, "HEARTH_SHARDS=8", "HEARTH_JWT_SECRET_FILE=" + secretFile, "HEARTH_LOG_LEVEL=debug"}
	for i := 0; i < 2; i++ {
		startProc(t, fmt.Sprintf("hub%d", i), bin+"/hearth-hub", env,
			"-id", fmt.Sprintf("hub-%d", i), "-admin-listen", freeAddr(t))
	}
	edgeAddrs := []string{freeAddr(t), freeAddr(t)}
	edges := make([]*proc, 2)
	for i, addr := range edgeAddrs {
		edges[i] = startProc(t, fmt.Sprintf("edge%d", i), bin+"/hearth-edge", env,
			"-id", fmt.Sprintf("edge-%d-%s", i, randHex(2)), "-listen", addr, "-drain-timeout", "5s", "-reconnect-hint", "200ms")
	}
	for _, addr := range edgeAddrs {
		testenv.WaitFor(t, 60*time.Second, func() bool { return httpOK("http://" + addr + "/readyz") }, "edge %s ready", addr)
	}
	tlsAddr, caFile := startTLSTier(t, bin, edgeAddrs, filepath.Join(dir, "tls"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialClient := func(user string) *client.Client {
		var c *client.Client
		testenv.WaitFor(t, 15*time.Second, func() bool {
			var err error
			c, err = client.Dial(ctx, client.Config{
				URL: "wss://" + tlsAddr + "/ws", Token: token(t, user), CAFile: caFile,
				ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
			})
			return err == nil
		}, "%s connected through the TLS tier", user)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	alice := dialClient("alice")
	bob := dialClient("bob")
	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Join(ctx, "general"); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(c *client.Client, who, cmid string) protocol.Frame {
		t.Helper()
		for {
			select {
			case f := <-c.Messages():
				if f.Type == protocol.TypeMessage && f.CMID == cmid {
					return f
				}
			case <-ctx.Done():
				t.Fatalf("%s never received %s", who, cmid)
			}
		}
	}
	seq, err := alice.PublishCMID(ctx, "general", "hello-1", []byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	if m := expect(bob, "bob", "hello-1"); m.Seq != seq || m.From != "alice" {
		t.Fatalf("bob got %+v, ack said seq %d", m, seq)
	}

	// Drain one edge; exactly one of the clients is on it.
	testenv.WaitFor(t, 10*time.Second, func() bool {
		return edgeConnections(edgeAddrs[0]) == 1 && edgeConnections(edgeAddrs[1]) == 1
	}, "one client on each edge")
	const victim = 0
	took := edges[victim].stop(t, 15*time.Second)
	if took > 8*time.Second {
		t.Fatalf("edge took %v to drain and exit, want under its 5s drain timeout plus margin", took)
	}
	var drained, other *client.Client
	deadline := time.After(10 * time.Second)
	for drained == nil {
		var ev client.Event
		var from, not *client.Client
		select {
		case ev = <-alice.Events():
			from, not = alice, bob
		case ev = <-bob.Events():
			from, not = bob, alice
		case <-deadline:
			t.Fatal("no client saw the drain")
		}
		if ev.Kind != client.EventDisconnected {
			continue
		}
		if ev.Code != protocol.CloseGoingAway || ev.Reason != protocol.DrainReason(200) {
			t.Fatalf("drained client saw close %d %q, want 1001 %q", ev.Code, ev.Reason, protocol.DrainReason(200))
		}
		drained, other = from, not
	}
	// Reconnected, through the TLS tier, to the surviving edge; rejoined.
	testenv.WaitFor(t, 15*time.Second, func() bool { return edgeConnections(edgeAddrs[1-victim]) == 2 }, "drained client on the other edge")
	testenv.WaitFor(t, 15*time.Second, func() bool {
		_, err := drained.PublishCMID(ctx, "general", "after-drain", []byte("back"))
		return err == nil
	}, "drained client publishes again")
	expect(other, "the other client", "after-drain")
}

// startTLSTier starts the TLS tier in front of the edges, with its local CA
// in caDir, and waits until it listens and has written the CA certificate.
// extra flags are appended.
func startTLSTier(t *testing.T, bin string, edgeAddrs []string, caDir string, extra ...string) (addr, caFile string) {
	t.Helper()
	addr = freeAddr(t)
	edges := make([]string, len(edgeAddrs))
	for i, a := range edgeAddrs {
		edges[i] = "http://" + a
	}
	args := append([]string{"-listen", addr, "-edges", strings.Join(edges, ","),
		"-ca-dir", caDir, "-metrics-listen", "-", "-health-interval", "100ms"}, extra...)
	startProc(t, "tls", bin+"/hearth-tls", nil, args...)
	caFile = filepath.Join(caDir, "ca.pem")
	testenv.WaitFor(t, 30*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		_, statErr := os.Stat(caFile)
		return err == nil && statErr == nil
	}, "TLS tier listening")
	return addr, caFile
}
