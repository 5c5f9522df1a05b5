package edge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/shared/broker"
)

// bindBroker records Bind calls and holds each until the test releases
// it, counting how many are in progress at once.
type bindBroker struct {
	broker.Broker
	release chan struct{}

	mu     sync.Mutex
	keys   []string
	active int
	most   int
}

func (b *bindBroker) Bind(ctx context.Context, _, _, key string) error {
	b.mu.Lock()
	b.keys = append(b.keys, key)
	b.active++
	b.most = max(b.most, b.active)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.active--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *bindBroker) bound() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.keys...)
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: userBound not closed", what)
	}
}

// TestUserBinds: connections' user keys are bound one at a time in
// arrival order; a connection that ended before its turn is skipped; on
// stop, whatever is still queued is marked as not bound, and so is a
// connection added after the stop.
func TestUserBinds(t *testing.T) {
	t.Parallel()
	bb := &bindBroker{release: make(chan struct{}, 16)} // tokens never block the test
	s := bareServer(t, 16)
	s.b = bb
	s.binder = newBinder(bb, "q")
	s.userBinds = newUserBinds()
	ctx, stop := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.userBinds.run(ctx, s)

	mk := func(user string) *conn {
		return &conn{user: user, srv: s, userBound: make(chan struct{})}
	}
	a, gone, b, late := mk("a"), mk("gone"), mk("b"), mk("late")
	gone.closing.Store(true)
	for _, c := range []*conn{a, gone, b} {
		s.userBinds.add(c)
	}
	bb.release <- struct{}{} // a
	waitClosed(t, a.userBound, "a")
	waitClosed(t, gone.userBound, "gone")
	bb.release <- struct{}{} // b
	waitClosed(t, b.userBound, "b")
	if a.userBindFailed || b.userBindFailed || !gone.userBindFailed {
		t.Fatalf("failed flags a=%v gone=%v b=%v, want false true false", a.userBindFailed, gone.userBindFailed, b.userBindFailed)
	}
	if got := bb.bound(); len(got) != 2 || got[0] != "user.a" || got[1] != "user.b" {
		t.Fatalf("bound %q, want [user.a user.b]", got)
	}

	// On the stop, the connection queued behind one whose bind may be in
	// progress is marked as not bound.
	c1, c2 := mk("c1"), mk("c2")
	s.userBinds.add(c1)
	s.userBinds.add(c2)
	stop()
	bb.release <- struct{}{} // c1, if its bind started before the stop
	waitClosed(t, c1.userBound, "c1")
	waitClosed(t, c2.userBound, "c2")
	if !c2.userBindFailed {
		t.Fatal("a connection queued at the stop is marked bound")
	}
	s.wg.Wait()
	s.userBinds.add(late)
	waitClosed(t, late.userBound, "late")
	if !late.userBindFailed {
		t.Fatal("a connection added after the stop is marked bound")
	}
	bb.mu.Lock()
	defer bb.mu.Unlock()
	if bb.most != 1 {
		t.Fatalf("%d binds ran at once, want 1", bb.most)
	}
}
