//go:build linux

package edge

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// poller waits for client sockets to become readable with one epoll set,
// so that a connection with nothing to read costs no goroutine (and no
// goroutine stack: ADR 0003). Each socket is armed one-shot: when it
// becomes readable the poller hands its connection to ready, which reads
// and handles what arrived on a goroutine of its own and then re-arms the
// socket (rearm), or removes it when the connection ends. So at most one
// goroutine reads a connection at a time, and its frames are handled in
// order.
//
// The epoll set is level-triggered: re-arming a socket that received data
// in the meantime reports it at once, so no wake-up is lost.
type poller struct {
	epfd int
	// wake is a pipe whose read end is in the set: a byte written to it
	// stops run.
	wake [2]int
	done chan struct{}

	// mu guards conns and next. Re-arming and dispatching both take it,
	// which also orders one reading goroutine's work before the next's.
	mu    sync.Mutex
	conns map[uint64]*conn
	next  uint64
}

const (
	pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT
	wakeToken  = 0 // connection tokens start at 1
)

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("edge: epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, done: make(chan struct{}), conns: make(map[uint64]*conn)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("edge: pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("edge: epoll_ctl: %w", err)
	}
	return p, nil
}

// setToken stores a connection's token in the event's 64-bit user data
// (Fd and Pad are its two halves on every Linux architecture).
func setToken(ev *syscall.EpollEvent, t uint64) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func eventToken(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add registers c's socket, armed.
func (p *poller) add(c *conn) error {
	if c.rc == nil {
		return errNoRawConn
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	t := p.next
	if err := p.ctl(c, syscall.EPOLL_CTL_ADD, t); err != nil {
		return err
	}
	c.pollToken = t
	p.conns[t] = c
	return nil
}

// rearm arms c's socket again after its reader ran out of bytes.
func (p *poller) rearm(c *conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctl(c, syscall.EPOLL_CTL_MOD, c.pollToken)
}

// remove forgets c; its socket is taken out of the set before it is
// closed.
func (p *poller) remove(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.pollToken == 0 {
		return
	}
	delete(p.conns, c.pollToken)
	_ = p.ctl(c, syscall.EPOLL_CTL_DEL, c.pollToken)
	c.pollToken = 0
}

// errPollerStopped: the epoll set is closed (the edge is shutting down).
var errPollerStopped = errors.New("edge: poller stopped")

// ctl runs epoll_ctl on c's descriptor while the runtime guarantees it is
// open, so a descriptor number reused by a newer socket is never touched.
// mu held on entry.
func (p *poller) ctl(c *conn, op int, t uint64) error {
	if p.epfd < 0 {
		return errPollerStopped
	}
	var opErr error
	err := c.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents}
		setToken(&ev, t)
		opErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return opErr
}

// run waits for readable sockets and passes their connections to ready
// until stop is called. It blocks one thread in epoll_wait.
func (p *poller) run(ready func(*conn)) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for i := range events[:n] {
			t := eventToken(&events[i])
			if t == wakeToken {
				return
			}
			p.mu.Lock()
			c := p.conns[t]
			p.mu.Unlock()
			if c != nil {
				ready(c)
			}
		}
	}
}

// stop ends run, waits for it, and closes the epoll set. Sockets still
// registered are no longer watched; readers still running find the set
// closed when they re-arm, and finish their connections.
func (p *poller) stop() {
	_, _ = syscall.Write(p.wake[1], []byte{0})
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeFDs()
	p.epfd = -1
}

func (p *poller) closeFDs() {
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
	_ = syscall.Close(p.epfd)
}
