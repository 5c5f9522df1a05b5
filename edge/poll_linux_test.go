//go:build linux

package edge

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

func polledConn(t *testing.T, nc net.Conn) *conn {
	t.Helper()
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return &conn{rc: rc}
}

// TestPoller: a socket is reported once per arming (one-shot), re-arming a
// socket that still holds bytes reports it again at once (level-triggered:
// no lost wake-up), and a removed socket is never reported.
func TestPoller(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan *conn, 16)
	go p.run(func(c *conn) { ready <- c })
	defer p.stop()

	client, server := tcpPair(t)
	c := polledConn(t, server)
	if err := p.add(c); err != nil {
		t.Fatal(err)
	}
	expect := func(what string) {
		t.Helper()
		select {
		case got := <-ready:
			if got != c {
				t.Fatalf("%s: reported another connection", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not reported", what)
		}
	}
	quiet := func(what string) {
		t.Helper()
		// A report would arrive within microseconds; 100 ms without one,
		// after a write the poller would have seen, is a real silence.
		select {
		case <-ready:
			t.Fatalf("%s: reported", what)
		case <-time.After(100 * time.Millisecond):
		}
	}

	quiet("an idle socket")
	_, _ = client.Write([]byte("a"))
	expect("first bytes")
	_, _ = client.Write([]byte("b"))
	quiet("more bytes before re-arming")
	if err := p.rearm(c); err != nil {
		t.Fatal(err)
	}
	expect("re-armed with unread bytes")

	buf := make([]byte, 8)
	if n, _ := server.Read(buf); n != 2 {
		t.Fatalf("read %d bytes, want 2", n)
	}
	if err := p.rearm(c); err != nil {
		t.Fatal(err)
	}
	quiet("re-armed and drained")
	p.remove(c)
	_, _ = client.Write([]byte("c"))
	quiet("removed")
	if err := p.rearm(c); err == nil {
		t.Fatal("re-arming a removed socket succeeded")
	}
}

// TestReadNowAllocs: a read through the pooled reader allocates nothing,
// whether the socket has bytes or not (EAGAIN).
func TestReadNowAllocs(t *testing.T) {
	client, server := tcpPair(t)
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r := getSockReader(512)
	payload := []byte("0123456789")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := client.Write(payload); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for got := 0; got < len(payload); {
			n, err := r.readNow(rc, r.buf)
			if err != nil && err != syscall.EAGAIN {
				t.Fatal(err)
			}
			got += n
			if time.Now().After(deadline) {
				t.Fatal("bytes written to the socket never arrived")
			}
		}
		if n, err := r.readNow(rc, r.buf); n != 0 || err != syscall.EAGAIN {
			t.Fatalf("read of an empty socket: %d, %v; want 0, EAGAIN", n, err)
		}
	})
	// A read used to cost three allocations (its callback, n and err).
	if allocs > 0 {
		t.Fatalf("%.1f allocations per write-and-read round, want 0", allocs)
	}
}
