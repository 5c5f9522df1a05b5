package edge

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// discardConn is a net.Conn that accepts every write and counts bytes.
type discardConn struct {
	net.Conn
	n *atomic.Int64
}

func (d discardConn) Write(b []byte) (int, error)      { d.n.Add(int64(len(b))); return len(b), nil }
func (d discardConn) SetWriteDeadline(time.Time) error { return nil }
func (d discardConn) Close() error                     { return nil }

// bareServer is a Server with just what fan-out and the writers use.
func bareServer(tb testing.TB, queueMessages int) *Server {
	tb.Helper()
	cfg := Config{ID: "bench", JWTSecret: "0123456789abcdef0123"}
	if err := cfg.normalize(); err != nil {
		tb.Fatal(err)
	}
	cfg.SendQueueMessages = queueMessages
	return &Server{cfg: cfg, log: zerolog.Nop(), index: newIndex(), conns: map[*conn]struct{}{}, byID: map[string]*conn{}}
}

// BenchmarkFanout1000 measures one broadcast to 1,000 local members: framing
// once, queueing on each connection and the writers' socket writes.
// allocs/op is per broadcast; per recipient it must be zero.
func BenchmarkFanout1000(b *testing.B) {
	const members = 1000
	s := bareServer(b, 4096)
	var written atomic.Int64
	conns := make([]*conn, members)
	for i := range conns {
		c := newConn(s, "c"+strconv.Itoa(i), "u"+strconv.Itoa(i), "", &lockedConn{Conn: discardConn{n: &written}})
		conns[i] = c
		s.index.addRoom("general", c)
		s.wg.Add(1)
		go c.writeLoop()
	}
	payload, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeMessage, Room: "general", Seq: 42, From: "alice", CMID: "m-1", TS: 1, Body: make([]byte, 100)})
	if err != nil {
		b.Fatal(err)
	}
	frameLen := int64(len(appendWSFrame(nil, opBinary, payload)))
	drained := func(ops int) {
		want := int64(ops) * members * frameLen
		for written.Load() < want {
			time.Sleep(10 * time.Microsecond) // waiting on the writers, not synchronising a test
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := s.index.fanout(roomsOf, "general", payload); n != members {
			b.Fatalf("fanout reached %d, want %d", n, members)
		}
		if i%32 == 31 {
			drained(i + 1)
		}
	}
	drained(b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/recipient")
	for _, c := range conns {
		c.stop()
	}
	s.wg.Wait()
	if n := s.stats.slowConsumers.Load(); n != 0 {
		b.Fatalf("%d slow-consumer closes during the benchmark", n)
	}
}

// TestFanoutAllocsPerRecipient fails if queueing a broadcast allocates per
// recipient: 1,000 members must cost at most a couple of allocations.
func TestFanoutAllocsPerRecipient(t *testing.T) {
	const members = 1000
	s := bareServer(t, 1<<16)
	conns := make([]*conn, members)
	for i := range conns {
		c := newConn(s, "c"+strconv.Itoa(i), "u", "", &lockedConn{Conn: discardConn{n: new(atomic.Int64)}})
		conns[i] = c
		s.index.addRoom("r", c)
	}
	payload := make([]byte, 200)
	// Warm the pools and let each ring grow to its working size.
	for i := 0; i < 64; i++ {
		s.index.fanout(roomsOf, "r", payload)
	}
	allocs := testing.AllocsPerRun(16, func() { s.index.fanout(roomsOf, "r", payload) })
	if allocs > 2 {
		t.Fatalf("fan-out to %d members made %.1f allocations, want ≤ 2 (none per recipient)", members, allocs)
	}
	for _, c := range conns {
		c.drainQueue()
	}
}

func TestAppendWSFrameLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := appendWSFrame(nil, opBinary, make([]byte, n))
		var hdr int
		switch {
		case n < 126:
			hdr = 2
		case n <= 0xFFFF:
			hdr = 4
		default:
			hdr = 10
		}
		if len(f) != hdr+n || f[0] != 0x82 {
			t.Fatalf("payload %d: frame of %d bytes, first byte %#x", n, len(f), f[0])
		}
	}
}

// recBroker records bindings; only Bind and Unbind are used by binder.
type recBroker struct {
	broker.Broker
	mu    sync.Mutex
	bound map[string]bool
	calls atomic.Int64
}

func (r *recBroker) Bind(_ context.Context, _, _, key string) error {
	r.calls.Add(1)
	r.mu.Lock()
	r.bound[key] = true
	r.mu.Unlock()
	return nil
}

func (r *recBroker) Unbind(_ context.Context, _, _, key string) error {
	r.calls.Add(1)
	r.mu.Lock()
	delete(r.bound, key)
	r.mu.Unlock()
	return nil
}

func (r *recBroker) isBound(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bound[key]
}

// TestBinderConcurrentJoinsLeaves hammers a few keys with concurrent
// acquire/release pairs: while a holder has a reference the key must be
// bound, and at the end nothing may stay bound.
func TestBinderConcurrentJoinsLeaves(t *testing.T) {
	t.Parallel()
	rb := &recBroker{bound: map[string]bool{}}
	bd := newBinder(rb, "q")
	keys := []string{"room.a", "room.b", "room.c"}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < 500; i++ {
				k := keys[(g+i)%len(keys)]
				if err := bd.acquire(ctx, k); err != nil {
					t.Error(err)
					return
				}
				if !rb.isBound(k) {
					bad.Add(1)
				}
				if err := bd.release(ctx, k); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d times a holder found its key unbound", bad.Load())
	}
	for _, k := range keys {
		if rb.isBound(k) {
			t.Fatalf("%s still bound after every release", k)
		}
	}
	if n := bd.count(); n != 0 {
		t.Fatalf("binder counts %d bound keys, want 0", n)
	}
	bd.mu.Lock()
	left := len(bd.refs)
	bd.mu.Unlock()
	if left != 0 {
		t.Fatalf("binder keeps %d entries, want 0", left)
	}
}
