package e2e

import (
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// TestHeartbeatClosesGhosts: a connection that stops answering pings is
// closed with 4002, while one that answers stays.
func TestHeartbeatClosesGhosts(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1, edgeCfg: func(cfg *edge.Config) {
		cfg.Heartbeat = 100 * time.Millisecond
		cfg.HeartbeatTimeout = 200 * time.Millisecond
	}})
	alive := dial(t, c.edgeURL(0), dialOpts{token: token(t, "alive")})
	ghost := dial(t, c.edgeURL(0), dialOpts{token: token(t, "ghost"), mute: true})
	if code := ghost.waitClosed(); code != protocol.CloseHeartbeat {
		t.Fatalf("ghost closed with %d, want %d", code, protocol.CloseHeartbeat)
	}
	// The live client has outlived the ghost's timeout several times over.
	testenv.WaitFor(t, 5*time.Second, func() bool { return c.edges[0].Stats().HeartbeatTimeouts == 1 }, "one heartbeat timeout")
	alive.join("still-here")
	if alive.isClosed() {
		t.Fatal("a client answering pings was closed")
	}
}

// TestSlowConsumerIsCut: a member that stops reading overflows its bounded
// send queue and is disconnected, while a reading member of the same room
// receives every message.
func TestSlowConsumerIsCut(t *testing.T) {
	c := newCluster(t, kindLocal, clusterOpts{edges: 1, hubs: 1, edgeCfg: func(cfg *edge.Config) {
		cfg.SendQueueMessages = 1024
		cfg.SendQueueBytes = 8 << 20
		cfg.WriteTimeout = time.Second
		cfg.RatePerSecond = 100000
		cfg.RateBurst = 100000
	}})
	reader := dial(t, c.edgeURL(0), dialOpts{token: token(t, "reader")})
	reader.join("firehose")
	stalled := dial(t, c.edgeURL(0), dialOpts{token: token(t, "stalled"), noRead: true})
	// The stalled client joins without reading the reply.
	stalled.send(protocol.Frame{Type: protocol.TypeJoin, Room: "firehose"})
	testenv.WaitFor(t, 5*time.Second, func() bool { return c.edges[0].Stats().Deliveries >= 3 }, "stalled client joined")

	// 800 × 32 KiB = 25 MiB: far beyond the 8 MiB queue plus the socket
	// buffers (the sender's tcp_wmem maximum is 4 MiB here; a receiver that
	// never reads does not grow its window past the initial one).
	const n = 800
	body := make([]byte, 32<<10)
	for i := 0; i < n; i++ {
		reader.send(protocol.Frame{Type: protocol.TypePublish, Room: "firehose", CMID: "m" + itoa(i), Body: body})
	}
	l := collect(t, reader, "firehose", n, n)
	checkSequence(t, "reader", l.messages, 0)
	testenv.WaitFor(t, 10*time.Second, func() bool { return c.edges[0].Stats().SlowConsumers == 1 }, "stalled client cut as a slow consumer")
	testenv.WaitFor(t, 10*time.Second, func() bool { return c.edges[0].Stats().Connections == 1 }, "stalled connection gone")
	if reader.isClosed() {
		t.Fatal("the reading client was disconnected")
	}
}
