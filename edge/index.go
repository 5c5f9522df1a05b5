package edge

import (
	"context"
	"sync"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// index maps rooms and users to the local connections that receive their
// broadcasts. Fan-out holds mu for reading; joins and leaves for writing.
type index struct {
	mu    sync.RWMutex
	rooms map[string]map[*conn]struct{}
	users map[string]map[*conn]struct{}
}

func newIndex() *index {
	return &index{rooms: make(map[string]map[*conn]struct{}), users: make(map[string]map[*conn]struct{})}
}

func add(m map[string]map[*conn]struct{}, key string, c *conn) {
	set := m[key]
	if set == nil {
		set = make(map[*conn]struct{})
		m[key] = set
	}
	set[c] = struct{}{}
}

func remove(m map[string]map[*conn]struct{}, key string, c *conn) {
	if set := m[key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

func (x *index) addRoom(room string, c *conn) {
	x.mu.Lock()
	add(x.rooms, room, c)
	x.mu.Unlock()
}

func (x *index) removeRoom(room string, c *conn) {
	x.mu.Lock()
	remove(x.rooms, room, c)
	x.mu.Unlock()
}

func (x *index) addUser(c *conn) {
	x.mu.Lock()
	add(x.users, c.user, c)
	x.mu.Unlock()
}

func (x *index) removeUser(c *conn) {
	x.mu.Lock()
	remove(x.users, c.user, c)
	x.mu.Unlock()
}

// fanout queues payload, framed once, on every connection in m[key]
// without writing it, and appends to *pending each connection that now
// waits for a write (Server.handOver). It returns the number of
// recipients.
func (x *index) fanout(m func(*index) map[string]map[*conn]struct{}, key string, payload []byte, pending *[]*conn) int {
	x.mu.RLock()
	set := m(x)[key]
	n := len(set)
	if n == 0 {
		x.mu.RUnlock()
		return 0
	}
	f := newWSFrame(opBinary, payload, n)
	for c := range set {
		c.queueFor(f, pending)
	}
	x.mu.RUnlock()
	return n
}

func roomsOf(x *index) map[string]map[*conn]struct{} { return x.rooms }
func usersOf(x *index) map[string]map[*conn]struct{} { return x.users }

// binder keeps the edge queue bound to a routing key while at least one
// local connection needs it. Each key's count and its bind or unbind call
// happen under that key's lock, so concurrent joins and leaves can never
// leave a binding behind or remove one still needed.
type binder struct {
	b     broker.Broker
	queue string

	mu   sync.Mutex // guards refs and every bindRef.pins
	refs map[string]*bindRef
}

type bindRef struct {
	pins int // callers between get and put; guarded by binder.mu

	mu sync.Mutex // guards n and serialises the broker calls for this key
	n  int
}

func newBinder(b broker.Broker, queue string) *binder {
	return &binder{b: b, queue: queue, refs: make(map[string]*bindRef)}
}

func (bd *binder) get(key string) *bindRef {
	bd.mu.Lock()
	r := bd.refs[key]
	if r == nil {
		r = &bindRef{}
		bd.refs[key] = r
	}
	r.pins++
	bd.mu.Unlock()
	return r
}

// put unpins r; r.mu must not be held.
func (bd *binder) put(key string, r *bindRef) {
	bd.mu.Lock()
	r.pins--
	if r.pins == 0 {
		r.mu.Lock()
		if r.n == 0 {
			delete(bd.refs, key)
		}
		r.mu.Unlock()
	}
	bd.mu.Unlock()
}

// acquire takes one reference on key, binding it on the first.
func (bd *binder) acquire(ctx context.Context, key string) error {
	r := bd.get(key)
	defer bd.put(key, r)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		if err := bd.b.Bind(ctx, bd.queue, protocol.ExchangeEgress, key); err != nil {
			return err
		}
	}
	r.n++
	return nil
}

// release drops one reference on key, unbinding it after the last.
func (bd *binder) release(ctx context.Context, key string) error {
	r := bd.get(key)
	defer bd.put(key, r)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return nil
	}
	r.n--
	if r.n == 0 {
		return bd.b.Unbind(ctx, bd.queue, protocol.ExchangeEgress, key)
	}
	return nil
}

// count returns the number of keys currently bound.
func (bd *binder) count() int {
	bd.mu.Lock()
	defer bd.mu.Unlock()
	n := 0
	for _, r := range bd.refs {
		r.mu.Lock()
		if r.n > 0 {
			n++
		}
		r.mu.Unlock()
	}
	return n
}
