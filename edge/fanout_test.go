package edge

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// discardConn is a net.Conn that accepts every write and counts bytes.
type discardConn struct {
	net.Conn
	n *atomic.Int64
}

func (d discardConn) Write(b []byte) (int, error)      { d.n.Add(int64(len(b))); return len(b), nil }
func (d discardConn) writeNow(b []byte) (int, error)   { return d.Write(b) }
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

// BenchmarkFanout1000 measures one broadcast to 1,000 local members:
// framing once, queueing on each connection and the flush that writes each
// connection's frames (to a socket that takes everything: the system call
// is not measured here). allocs/op is per broadcast; per recipient it must
// be zero.
func BenchmarkFanout1000(b *testing.B) {
	const members = 1000
	s := bareServer(b, 4096)
	var written atomic.Int64
	for i := 0; i < members; i++ {
		c := newConn(s, "c"+strconv.Itoa(i), "u"+strconv.Itoa(i), "", &lockedConn{Conn: discardConn{n: &written}})
		s.index.addRoom("general", c)
	}
	payload, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeMessage, Room: "general", Seq: 42, From: "alice", CMID: "m-1", TS: 1, Body: make([]byte, 100)})
	if err != nil {
		b.Fatal(err)
	}
	frameLen := int64(len(appendWSFrame(nil, opBinary, payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := s.index.fanout(roomsOf, "general", payload, &s.pending); n != members {
			b.Fatalf("fanout reached %d, want %d", n, members)
		}
		s.handOver()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/recipient")
	if got, want := written.Load(), int64(b.N)*members*frameLen; got != want {
		b.Fatalf("wrote %d bytes, want %d", got, want)
	}
	if n := s.stats.slowConsumers.Load(); n != 0 {
		b.Fatalf("%d slow-consumer closes during the benchmark", n)
	}
}

// TestFanoutAllocsPerRecipient fails if queueing and writing a broadcast
// allocates per recipient: 1,000 members must cost at most a couple of
// allocations.
func TestFanoutAllocsPerRecipient(t *testing.T) {
	const members = 1000
	s := bareServer(t, 1<<16)
	var written atomic.Int64
	for i := 0; i < members; i++ {
		c := newConn(s, "c"+strconv.Itoa(i), "u", "", &lockedConn{Conn: discardConn{n: &written}})
		s.index.addRoom("r", c)
	}
	payload := make([]byte, 200)
	// Warm the pools and the pending list.
	for i := 0; i < 64; i++ {
		s.index.fanout(roomsOf, "r", payload, &s.pending)
		s.handOver()
	}
	allocs := testing.AllocsPerRun(16, func() {
		s.index.fanout(roomsOf, "r", payload, &s.pending)
		s.index.fanout(roomsOf, "r", payload, &s.pending) // two frames coalesced into one write
		s.handOver()
	})
	if allocs > 4 {
		t.Fatalf("two broadcasts to %d members made %.1f allocations, want ≤ 4 (none per recipient)", members, allocs)
	}
	if want := int64(64+2*17) * members * int64(len(appendWSFrame(nil, opBinary, payload))); written.Load() != want {
		t.Fatalf("wrote %d bytes, want %d", written.Load(), want)
	}
}

// TestWriterFullSocket fills a real socket whose peer does not read: the
// non-blocking writes stop short, the rest waits in the queue for a
// flusher goroutine, and once the peer reads, every byte arrives in order
// and the flusher ends.
func TestWriterFullSocket(t *testing.T) {
	s := bareServer(t, 1<<16)
	s.cfg.SendQueueBytes = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	c := newConn(s, "c1", "u", "", &lockedConn{Conn: server})
	if c.now == nil {
		t.Fatal("a TCP connection has no non-blocking writer")
	}
	// Frames numbered 0..n-1, each 1 KiB, far more than socket buffers hold.
	const n, size = 8192, 1024
	var want []byte
	for i := 0; i < n; i++ {
		p := make([]byte, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		f := newWSFrame(opBinary, p, 1)
		want = append(want, f.buf...)
		c.enqueue(f)
	}
	c.qmu.Lock()
	queued, flushing := c.qLen, c.flushing
	c.qmu.Unlock()
	if queued == 0 || !flushing {
		t.Fatalf("after %d KiB to a peer that does not read: %d frames queued, flusher running %v; want some queued and a flusher", n*size>>10, queued, flushing)
	}
	got := make([]byte, len(want))
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("reading %d bytes: %v", len(want), err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the byte stream differs from the frames at offset %d", i)
	}
	testenv.WaitFor(t, 5*time.Second, func() bool {
		c.qmu.Lock()
		defer c.qmu.Unlock()
		return !c.flushing && c.qLen == 0
	}, "the flusher to end once the queue is empty")
	// The socket has room again: the next frame is written at once.
	c.enqueue(newWSFrame(opBinary, []byte("x"), 1))
	c.qmu.Lock()
	queued, flushing = c.qLen, c.flushing
	c.qmu.Unlock()
	if queued != 0 || flushing {
		t.Fatalf("a frame to a socket with room: %d queued, flusher %v; want written at once", queued, flushing)
	}
	c.stop()
	s.wg.Wait()
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

// recordConn is a net.Conn that keeps everything written to it.
type recordConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (r *recordConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.buf = append(r.buf, b...)
	r.mu.Unlock()
	return len(b), nil
}
func (r *recordConn) writeNow(b []byte) (int, error)   { return r.Write(b) }
func (r *recordConn) SetWriteDeadline(time.Time) error { return nil }
func (r *recordConn) Close() error                     { return nil }

func (r *recordConn) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

// TestFanoutThroughWriter runs the consumer side (fan-out and hand-over)
// against the running socket writer: every frame queued while the writer
// is busy with earlier connections must still be written, exactly once,
// and in order per connection.
func TestFanoutThroughWriter(t *testing.T) {
	const members, broadcasts = 300, 200
	s := bareServer(t, 1<<16)
	s.writerWake = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.writeLoop(ctx)
	rcs := make([]*recordConn, members)
	for i := range rcs {
		rcs[i] = &recordConn{}
		s.index.addRoom("r", newConn(s, "c"+strconv.Itoa(i), "u", "", &lockedConn{Conn: rcs[i]}))
	}
	var want []byte
	for i := 0; i < broadcasts; i++ {
		payload := binary.BigEndian.AppendUint32(make([]byte, 0, 100), uint32(i))
		payload = payload[:100]
		want = appendWSFrame(want, opBinary, payload)
		s.index.fanout(roomsOf, "r", payload, &s.pending)
		if i%3 == 2 { // hand over every few deliveries, as OnIdle would
			s.handOver()
		}
	}
	s.handOver()
	testenv.WaitFor(t, 10*time.Second, func() bool {
		for _, r := range rcs {
			if len(r.bytes()) < len(want) {
				return false
			}
		}
		return true
	}, "every member to get all %d bytes", len(want))
	cancel()
	s.wg.Wait()
	for i, r := range rcs {
		if !bytes.Equal(r.bytes(), want) {
			t.Fatalf("member %d got a different byte stream (%d bytes, want %d)", i, len(r.bytes()), len(want))
		}
	}
}
