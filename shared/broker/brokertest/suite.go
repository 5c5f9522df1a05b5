// Package brokertest is the behaviour suite every broker.Broker passes: the
// in-process broker and RabbitMQ run the same tests, so the embedded default
// behaves like the scale-out path.
//
// Tests use fresh, randomly named exchanges and exclusive queues, so runs
// against a shared RabbitMQ do not collide; they wait for deliveries with
// deadlines and prove that something did not happen by publishing a
// sentinel after it (a queue keeps publish order) and waiting for that.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// Options tunes Run for one implementation.
type Options struct {
	// Timeout bounds every wait for a delivery or a condition. Zero value
	// means 10s.
	Timeout time.Duration
	// Cleanup, if set, deletes what a test declared, once its broker is
	// closed. Exchanges are durable in RabbitMQ and outlive the test; the
	// suite's queues are exclusive and vanish with the broker anyway.
	Cleanup func(t testing.TB, exchanges, queues []string)
}

// Run runs the suite. newBroker returns a fresh, connected broker for one
// test; Run closes it when the test ends. Subtests run in parallel.
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker, opts Options) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		{"TopicMatching", testTopicMatching},
		{"OneCopyPerQueue", testOneCopyPerQueue},
		{"BindUnbindIdempotent", testBindUnbindIdempotent},
		{"UnbindStopsDelivery", testUnbindStopsDelivery},
		{"PublishConfirm", testPublishConfirm},
		{"PublishMissingExchange", testPublishMissingExchange},
		{"MissingQueue", testMissingQueue},
		{"DeclareMismatch", testDeclareMismatch},
		{"RejectPublishOverflow", testRejectPublish},
		{"RejectPublishAnyQueue", testRejectPublishAnyQueue},
		{"DropHeadKeepsNewest", testDropHead},
		{"ByteBounds", testByteBounds},
		{"MessageRoundTrip", testRoundTrip},
		{"OrderPerPublisher", testOrderPerPublisher},
		{"AckNackRequeue", testAckNackRequeue},
		{"RequeueOnConsumerStop", testRequeueOnStop},
		{"PrefetchLimit", testPrefetch},
		{"ExclusiveConsumer", testExclusiveConsumer},
		{"ConsumerCancelStops", testConsumerCancel},
		{"CloseIdempotent", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(newEnv(t, newBroker, opts))
		})
	}
}

// env is one test's broker and bookkeeping.
type env struct {
	t       *testing.T
	b       broker.Broker
	opts    Options
	prefix  string
	ctx     context.Context
	mu      sync.Mutex
	exs     []string
	queues  []string
	counter int
}

func newEnv(t *testing.T, newBroker func(t *testing.T) broker.Broker, opts Options) *env {
	t.Helper()
	e := &env{t: t, opts: opts, ctx: t.Context()}
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if len(name) > 32 {
		name = name[:32]
	}
	e.prefix = "hearth-test." + strings.ToLower(name) + "." + randomHex(4)
	e.b = newBroker(t)
	t.Cleanup(func() {
		if err := e.b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if opts.Cleanup != nil {
			opts.Cleanup(t, e.exs, e.queues)
		}
	})
	return e
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// name returns a fresh name under the test's prefix.
func (e *env) name(kind string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counter++
	return fmt.Sprintf("%s.%s%d", e.prefix, kind, e.counter)
}

// exchange declares a fresh exchange.
func (e *env) exchange() string {
	e.t.Helper()
	x := e.name("x")
	if err := e.b.DeclareExchange(e.ctx, x); err != nil {
		e.t.Fatalf("DeclareExchange(%q): %v", x, err)
	}
	e.mu.Lock()
	e.exs = append(e.exs, x)
	e.mu.Unlock()
	return x
}

// queue declares a fresh exclusive queue like spec.
func (e *env) queue(spec broker.QueueSpec) string {
	e.t.Helper()
	spec.Name = e.name("q")
	spec.Exclusive = true
	if err := e.b.DeclareQueue(e.ctx, spec); err != nil {
		e.t.Fatalf("DeclareQueue(%+v): %v", spec, err)
	}
	e.mu.Lock()
	e.queues = append(e.queues, spec.Name)
	e.mu.Unlock()
	return spec.Name
}

// boundedQueue declares a fresh queue bounded by length 10000, as Hearth's
// queues always are.
func (e *env) boundedQueue() string {
	e.t.Helper()
	return e.queue(broker.QueueSpec{MaxLength: 10000})
}

func (e *env) bind(q, x, pattern string) {
	e.t.Helper()
	if err := e.b.Bind(e.ctx, q, x, pattern); err != nil {
		e.t.Fatalf("Bind(%q, %q, %q): %v", q, x, pattern, err)
	}
}

func (e *env) unbind(q, x, pattern string) {
	e.t.Helper()
	if err := e.b.Unbind(e.ctx, q, x, pattern); err != nil {
		e.t.Fatalf("Unbind(%q, %q, %q): %v", q, x, pattern, err)
	}
}

func (e *env) publish(x, key, body string) {
	e.t.Helper()
	if err := e.b.Publish(e.ctx, x, broker.Message{Key: key, Body: []byte(body)}); err != nil {
		e.t.Fatalf("Publish(%q, %q): %v", x, key, err)
	}
}

// collector records deliveries; with ack set it acknowledges each one.
type collector struct {
	t   *testing.T
	ack bool
	mu  sync.Mutex
	ds  []*broker.Delivery
}

func (c *collector) handle(d *broker.Delivery) {
	c.mu.Lock()
	c.ds = append(c.ds, d)
	c.mu.Unlock()
	if c.ack {
		if err := d.Ack(); err != nil {
			c.t.Errorf("Ack: %v", err)
		}
	}
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ds)
}

func (c *collector) get(i int) *broker.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ds[i]
}

func (c *collector) bodies() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.ds))
	for i, d := range c.ds {
		out[i] = string(d.Body)
	}
	return out
}

// has reports whether a delivery with body arrived.
func (c *collector) has(body string) bool {
	return slices.Contains(c.bodies(), body)
}

// consume starts a consumer with spec that records into a new collector.
func (e *env) consume(ctx context.Context, spec broker.ConsumeSpec, ack bool) *collector {
	e.t.Helper()
	c := &collector{t: e.t, ack: ack}
	if err := e.b.Consume(ctx, spec, c.handle); err != nil {
		e.t.Fatalf("Consume(%+v): %v", spec, err)
	}
	return c
}

// waitLen waits until c holds at least n deliveries.
func (e *env) waitLen(c *collector, n int, what string) {
	e.t.Helper()
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return c.len() >= n },
		"waiting for %d deliveries: %s", n, what)
}

// waitBody waits until a delivery with body reaches c.
func (e *env) waitBody(c *collector, body string) {
	e.t.Helper()
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return c.has(body) },
		"waiting for a delivery with body %q", body)
}

// before returns the bodies c received before the first one equal to
// sentinel, which must have arrived.
func before(c *collector, sentinel string) []string {
	bodies := c.bodies()
	i := slices.Index(bodies, sentinel)
	if i < 0 {
		return bodies
	}
	return bodies[:i]
}

func expectErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testTopicMatching(e *env) {
	cases := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"room.*", []string{"room.a", "room.lobby", "room."}, []string{"room", "room.a.b", "rooms.a", "x.room.a"}},
		{"#", []string{"", "a", "a.b.c", "room.lobby"}, nil},
		{"a.#.b", []string{"a.b", "a.x.b", "a.x.y.b"}, []string{"a", "a.b.c", "b.a.b", "ab"}},
		{"a.#", []string{"a", "a.b", "a.b.c"}, []string{"ab", "b.a"}},
		{"#.b", []string{"b", "a.b", "x.y.b"}, []string{"b.a", "ab"}},
		{"*.x", []string{"a.x", ".x"}, []string{"x", "a.b.x"}},
		{"a.*.#", []string{"a.b", "a.b.c.d"}, []string{"a", "b.a.c"}},
		{"*", []string{"a"}, []string{"", "a.b"}},
		{"room.lobby", []string{"room.lobby"}, []string{"room.lobby2", "room", "room.lobby.x", "Room.lobby"}},
		{"room.a*", []string{"room.a*"}, []string{"room.ab", "room.a"}},
		{"user.*.dm", []string{"user.42.dm"}, []string{"user.dm", "user.4.2.dm"}},
	}
	x := e.exchange()
	for _, tc := range cases {
		q := e.boundedQueue()
		e.bind(q, x, tc.pattern)
		sentinel := "sentinel." + randomHex(4)
		e.bind(q, x, sentinel)
		c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q, AutoAck: true}, false)
		keys := append(slices.Clone(tc.match), tc.miss...)
		for _, k := range keys {
			e.publish(x, k, k)
		}
		e.publish(x, sentinel, sentinel)
		e.waitBody(c, sentinel)
		if got := before(c, sentinel); !slices.Equal(got, tc.match) {
			e.t.Errorf("pattern %q: published %q, got %q, want %q", tc.pattern, keys, got, tc.match)
		}
	}
}

func testOneCopyPerQueue(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	for _, p := range []string{"a.b", "a.*", "#", "a.#", "a.b"} {
		e.bind(q, x, p)
	}
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "a.b", "one")
	e.publish(x, "end", "end")
	e.waitBody(c, "end")
	if got := before(c, "end"); !slices.Equal(got, []string{"one"}) {
		e.t.Fatalf("a queue bound by several matching patterns got %q, want one copy", got)
	}
}

func testBindUnbindIdempotent(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	e.bind(q, x, "k")
	e.unbind(q, x, "never-bound")
	e.unbind(q, "hearth-test.no-such-exchange."+randomHex(4), "k")
	e.unbind("hearth-test.no-such-queue."+randomHex(4), x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "k", "m1")
	e.bind(q, x, "end")
	e.publish(x, "end", "end1")
	e.waitBody(c, "end1")
	if got := before(c, "end1"); !slices.Equal(got, []string{"m1"}) {
		e.t.Fatalf("binding twice: got %q, want one copy", got)
	}
	e.unbind(q, x, "k")
	e.unbind(q, x, "k")
	e.publish(x, "k", "m2")
	e.publish(x, "end", "end2")
	e.waitBody(c, "end2")
	if got := c.bodies(); !slices.Equal(got, []string{"m1", "end1", "end2"}) {
		e.t.Fatalf("after unbinding twice: got %q", got)
	}
}

func testUnbindStopsDelivery(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "room.a")
	e.bind(q, x, "room.*")
	e.bind(q, x, "end")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "room.a", "1")
	e.waitBody(c, "1")
	e.unbind(q, x, "room.a")
	e.publish(x, "room.a", "2") // still matches room.*
	e.unbind(q, x, "room.*")
	e.publish(x, "room.a", "3")
	e.publish(x, "room.b", "4")
	e.publish(x, "end", "end")
	e.waitBody(c, "end")
	if got := c.bodies(); !slices.Equal(got, []string{"1", "2", "end"}) {
		e.t.Fatalf("got %q, want [1 2 end]", got)
	}
}

func testPublishConfirm(e *env) {
	x := e.exchange()
	// Unroutable messages are confirmed and dropped.
	e.publish(x, "nobody.listens", "lost")
	q := e.boundedQueue()
	e.bind(q, x, "k")
	if err := e.b.Publish(e.ctx, x, broker.Message{Key: "k", Body: []byte("m")}); err != nil {
		e.t.Fatalf("Publish: %v", err)
	}
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.waitBody(c, "m")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := e.b.Publish(ctx, x, broker.Message{Key: "k", Body: []byte("late")}); !errors.Is(err, context.Canceled) {
		e.t.Fatalf("Publish with a cancelled context: got %v, want context.Canceled", err)
	}
	if !e.b.State().Connected {
		e.t.Fatalf("State().Connected is false on a working broker")
	}
}

func testPublishMissingExchange(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	missing := "hearth-test.no-such-exchange." + randomHex(4)
	for i := range 2 {
		err := e.b.Publish(e.ctx, missing, broker.Message{Key: "k", Body: []byte("x")})
		expectErr(e.t, err, broker.ErrNotFound, fmt.Sprintf("publish %d to a missing exchange", i))
	}
	// The broker recovers from the failure: publishing elsewhere works.
	e.publish(x, "k", "after")
	e.waitBody(c, "after")
}

func testMissingQueue(e *env) {
	x := e.exchange()
	missing := "hearth-test.no-such-queue." + randomHex(4)
	err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: missing}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrNotFound, "Consume of a missing queue")
	err = e.b.Bind(e.ctx, missing, x, "k")
	expectErr(e.t, err, broker.ErrNotFound, "Bind of a missing queue")
	q := e.boundedQueue()
	err = e.b.Bind(e.ctx, q, "hearth-test.no-such-exchange."+randomHex(4), "k")
	expectErr(e.t, err, broker.ErrNotFound, "Bind to a missing exchange")
	// Topology calls still work after the failures.
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "k", "ok")
	e.waitBody(c, "ok")
}

func testDeclareMismatch(e *env) {
	spec := broker.QueueSpec{MaxLength: 10}
	q := e.queue(spec)
	same := broker.QueueSpec{Name: q, Exclusive: true, MaxLength: 10, Overflow: broker.DropHead}
	if err := e.b.DeclareQueue(e.ctx, same); err != nil {
		e.t.Fatalf("declaring the same queue again: %v", err)
	}
	other := same
	other.MaxLength = 20
	expectErr(e.t, e.b.DeclareQueue(e.ctx, other), broker.ErrMismatch, "declaring a queue with a different length")
	other = same
	other.Overflow = broker.RejectPublish
	expectErr(e.t, e.b.DeclareQueue(e.ctx, other), broker.ErrMismatch, "declaring a queue with a different overflow")
	// The broker recovers: topology and publishing still work.
	x := e.exchange()
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "k", "ok")
	e.waitBody(c, "ok")
	if err := e.b.DeclareQueue(e.ctx, broker.QueueSpec{Name: "x", Quorum: true, Exclusive: true}); err == nil {
		e.t.Fatalf("an exclusive quorum queue was accepted")
	}
}

func testRejectPublish(e *env) {
	x := e.exchange()
	q := e.queue(broker.QueueSpec{MaxLength: 2, Overflow: broker.RejectPublish})
	e.bind(q, x, "k")
	e.publish(x, "k", "1")
	e.publish(x, "k", "2")
	err := e.b.Publish(e.ctx, x, broker.Message{Key: "k", Body: []byte("3")})
	expectErr(e.t, err, broker.ErrNacked, "publishing to a full reject-publish queue")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.waitLen(c, 2, "the two accepted messages")
	e.publish(x, "k", "4") // room again
	e.waitBody(c, "4")
	if got := c.bodies(); !slices.Equal(got, []string{"1", "2", "4"}) {
		e.t.Fatalf("got %q, want [1 2 4]", got)
	}
}

func testRejectPublishAnyQueue(e *env) {
	x := e.exchange()
	full := e.queue(broker.QueueSpec{MaxLength: 1, Overflow: broker.RejectPublish})
	roomy := e.boundedQueue()
	e.bind(full, x, "k")
	e.bind(roomy, x, "k")
	e.publish(x, "k", "1")
	err := e.b.Publish(e.ctx, x, broker.Message{Key: "k", Body: []byte("2")})
	expectErr(e.t, err, broker.ErrNacked, "publishing when one of two queues is full")
	// As with RabbitMQ, the queue with room kept the message.
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: roomy}, true)
	e.waitLen(c, 2, "both messages in the queue with room")
	if got := c.bodies(); !slices.Equal(got, []string{"1", "2"}) {
		e.t.Fatalf("got %q, want [1 2]", got)
	}
}

func testDropHead(e *env) {
	x := e.exchange()
	q := e.queue(broker.QueueSpec{MaxLength: 3}) // zero Overflow: drop-head
	e.bind(q, x, "k")
	for i := 1; i <= 6; i++ {
		e.publish(x, "k", fmt.Sprint(i))
	}
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.waitLen(c, 3, "the newest three")
	e.publish(x, "k", "end")
	e.waitBody(c, "end")
	if got := c.bodies(); !slices.Equal(got, []string{"4", "5", "6", "end"}) {
		e.t.Fatalf("got %q, want [4 5 6 end]", got)
	}
}

func testByteBounds(e *env) {
	x := e.exchange()
	drop := e.queue(broker.QueueSpec{MaxLength: 100, MaxLengthBytes: 10, Overflow: broker.DropHead})
	reject := e.queue(broker.QueueSpec{MaxLength: 100, MaxLengthBytes: 10, Overflow: broker.RejectPublish})
	e.bind(drop, x, "drop")
	e.bind(reject, x, "reject")
	for _, b := range []string{"aaaa", "bbbb", "cccc", "dddd"} {
		e.publish(x, "drop", b)
	}
	e.publish(x, "reject", "aaaa")
	e.publish(x, "reject", "bbbb")
	err := e.b.Publish(e.ctx, x, broker.Message{Key: "reject", Body: []byte("cccc")})
	expectErr(e.t, err, broker.ErrNacked, "publishing past the byte bound of a reject-publish queue")
	e.publish(x, "reject", "ee") // exactly 10 bytes: fits

	cd := e.consume(e.ctx, broker.ConsumeSpec{Queue: drop}, true)
	cr := e.consume(e.ctx, broker.ConsumeSpec{Queue: reject}, true)
	e.waitLen(cd, 2, "drop-head queue by bytes")
	e.waitLen(cr, 3, "reject-publish queue by bytes")
	e.publish(x, "drop", "end")
	e.waitBody(cd, "end")
	if got := cd.bodies(); !slices.Equal(got, []string{"cccc", "dddd", "end"}) {
		e.t.Fatalf("drop-head by bytes: got %q, want [cccc dddd end]", got)
	}
	if got := cr.bodies(); !slices.Equal(got, []string{"aaaa", "bbbb", "ee"}) {
		e.t.Fatalf("reject-publish by bytes: got %q, want [aaaa bbbb ee]", got)
	}
}

func testRoundTrip(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "edge.*")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	msgs := []broker.Message{
		{Key: "edge.e1", Body: []byte{0, 1, 2, 0xff}, Persistent: true, Type: "join", Conn: "c-42", Room: "lobby"},
		{Key: "edge.e2", Body: nil},
		{Key: "edge.e3", Body: []byte("x"), Type: "t", Room: "only-room"},
	}
	for _, m := range msgs {
		if err := e.b.Publish(e.ctx, x, m); err != nil {
			e.t.Fatalf("Publish(%+v): %v", m, err)
		}
	}
	e.waitLen(c, len(msgs), "the round-trip messages")
	for i, want := range msgs {
		d := c.get(i)
		got := d.Message
		if got.Key != want.Key || string(got.Body) != string(want.Body) || got.Persistent != want.Persistent ||
			got.Type != want.Type || got.Conn != want.Conn || got.Room != want.Room {
			e.t.Errorf("message %d: got %+v, want %+v", i, got, want)
		}
		if d.Exchange != x || d.Redelivered {
			e.t.Errorf("message %d: Exchange %q Redelivered %v, want %q false", i, d.Exchange, d.Redelivered, x)
		}
	}
}

func testOrderPerPublisher(e *env) {
	const publishers, each = 4, 100
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				m := broker.Message{Key: "k", Body: fmt.Appendf(nil, "%d:%d", p, i)}
				if err := e.b.Publish(e.ctx, x, m); err != nil {
					errs <- fmt.Errorf("publisher %d message %d: %w", p, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatal(err)
	}
	e.waitLen(c, publishers*each, "every message")
	next := make([]int, publishers)
	for _, b := range c.bodies() {
		var p, i int
		if _, err := fmt.Sscanf(b, "%d:%d", &p, &i); err != nil {
			e.t.Fatalf("body %q: %v", b, err)
		}
		if i != next[p] {
			e.t.Fatalf("publisher %d: got message %d, want %d", p, i, next[p])
		}
		next[p]++
	}
}

func testAckNackRequeue(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	var mu sync.Mutex
	var seen []*broker.Delivery
	handler := func(d *broker.Delivery) {
		mu.Lock()
		n := len(seen)
		seen = append(seen, d)
		mu.Unlock()
		var err error
		switch {
		case n == 0: // first delivery of "a": requeue it
			err = d.Nack(true)
		case string(d.Body) == "b": // drop it
			err = d.Nack(false)
		default:
			err = d.Ack()
		}
		if err != nil {
			e.t.Errorf("settling %q: %v", d.Body, err)
		}
		if err := d.Ack(); err == nil {
			e.t.Errorf("a second Ack of %q succeeded", d.Body)
		}
	}
	if err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q}, handler); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.publish(x, "k", "a")
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return count() >= 2 }, "waiting for the redelivery of a")
	e.publish(x, "k", "b")
	e.publish(x, "k", "c")
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return count() >= 4 }, "waiting for b and c")
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, d := range seen {
		got = append(got, fmt.Sprintf("%s/%v", d.Body, d.Redelivered))
	}
	if want := []string{"a/false", "a/true", "b/false", "c/false"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

func testRequeueOnStop(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	ctx, cancel := context.WithCancel(e.ctx)
	first := e.consume(ctx, broker.ConsumeSpec{Queue: q}, false) // never acks
	e.publish(x, "k", "m")
	e.waitBody(first, "m")
	cancel()
	// An exclusive consumer is refused until the first one is gone.
	second := &collector{t: e.t, ack: true}
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		return e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, second.handle) == nil
	}, "waiting for the stopped consumer to go away")
	e.waitBody(second, "m")
	if d := second.get(0); !d.Redelivered {
		e.t.Fatalf("a message requeued by a stopped consumer came back with Redelivered false")
	}
	err := first.get(0).Ack()
	expectErr(e.t, err, broker.ErrUnavailable, "Ack after the consumer stopped")
}

func testPrefetch(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	for i := range 5 {
		e.publish(x, "k", fmt.Sprint(i))
	}
	first := e.consume(e.ctx, broker.ConsumeSpec{Queue: q, Prefetch: 2}, false)
	e.waitLen(first, 2, "the first consumer's prefetch")
	// The first consumer is at its limit: a second one gets the other three.
	second := e.consume(e.ctx, broker.ConsumeSpec{Queue: q, Prefetch: 10}, false)
	e.waitLen(second, 3, "the rest, on the second consumer")
	if n := first.len(); n != 2 {
		e.t.Fatalf("the first consumer (prefetch 2) got %d unacknowledged deliveries", n)
	}
	// Acknowledging frees a slot.
	e.publish(x, "k", "5")
	for i := range 2 {
		if err := first.get(i).Ack(); err != nil {
			e.t.Fatalf("Ack: %v", err)
		}
	}
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return first.has("5") || second.has("5") },
		"waiting for the sixth message")
}

func testExclusiveConsumer(e *env) {
	q := e.boundedQueue()
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, true)
	err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "a consumer on a queue with an exclusive consumer")
	err = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "a second exclusive consumer")

	q2 := e.boundedQueue()
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q2}, true)
	err = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q2, Exclusive: true}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "an exclusive consumer on a queue with a consumer")
	// Non-exclusive consumers share a queue.
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q2}, true)
}

func testConsumerCancel(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	ctx, cancel := context.WithCancel(e.ctx)
	old := e.consume(ctx, broker.ConsumeSpec{Queue: q}, true)
	e.publish(x, "k", "before")
	e.waitBody(old, "before")
	cancel()
	next := &collector{t: e.t, ack: true}
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		return e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, next.handle) == nil
	}, "waiting for the cancelled consumer to go away")
	e.publish(x, "k", "after")
	e.waitBody(next, "after")
	if got := old.bodies(); !slices.Equal(got, []string{"before"}) {
		e.t.Fatalf("the cancelled consumer got %q", got)
	}
}

func testClose(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("second Close: %v", err)
	}
	err := e.b.Publish(e.ctx, x, broker.Message{Key: "k"})
	expectErr(e.t, err, broker.ErrClosed, "Publish after Close")
	err = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrClosed, "Consume after Close")
	err = e.b.DeclareExchange(e.ctx, x)
	expectErr(e.t, err, broker.ErrClosed, "DeclareExchange after Close")
	if e.b.State().Connected {
		e.t.Fatalf("State().Connected after Close")
	}
}
