package edge

import (
	"errors"
	"net"
	"syscall"
)

// rawNowWriter writes to a socket's file descriptor without the runtime's
// poller: one write(2) on the non-blocking descriptor, whose short count
// or EAGAIN says the socket is full. It is how fan-out writes to thousands
// of sockets from one goroutine with one system call each and no goroutine
// wake-ups.
type rawNowWriter struct {
	rc syscall.RawConn
	// The arguments and results of the write in progress, kept here so
	// that the callback is allocated once per connection, not per write.
	// Only the caller holding the connection's nc.mu uses them.
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// nowWriterOf returns a writer that never waits for nc, or nil when nc
// offers no way to write without waiting.
func nowWriterOf(nc net.Conn) nowWriter {
	if w, ok := nc.(nowWriter); ok {
		return w
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawNowWriter{rc: rc}
	w.fn = w.write
	return w
}

func (w *rawNowWriter) write(fd uintptr) bool {
	w.n, w.err = syscall.Write(int(fd), w.b)
	return true // never wait for the poller: a full socket is the flusher's
}

func (w *rawNowWriter) writeNow(b []byte) (int, error) {
	w.b = b
	if err := w.rc.Write(w.fn); err != nil {
		// Closed, or a write deadline in the past from an earlier blocking
		// write: let the flusher, which sets its own deadline, decide.
		w.b = nil
		return 0, nil
	}
	n, err := w.n, w.err
	w.b, w.err = nil, nil
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		return 0, nil
	default:
		return 0, err
	}
}
