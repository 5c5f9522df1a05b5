// Package brokertest is the behaviour suite every broker.Broker passes: the
// in-process broker and RabbitMQ run the same tests, so the embedded default
// behaves like the scale-out path.
//
// Tests use fresh, randomly named exchanges, exclusive queues and streams,
// so runs against a shared RabbitMQ do not collide; they wait for deliveries
// with deadlines and prove that something did not happen by publishing a
// sentinel after it (a queue keeps publish order) and waiting for that.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// closed. Exchanges and streams are durable in RabbitMQ and outlive the
	// test; the suite's other queues are exclusive and vanish with the
	// broker anyway.
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
		{"CCRoutesOncePerQueue", testCC},
		{"OrderPerPublisher", testOrderPerPublisher},
		{"AckNackRequeue", testAckNackRequeue},
		{"RequeueOnConsumerStop", testRequeueOnStop},
		{"PrefetchLimit", testPrefetch},
		{"ExclusiveConsumer", testExclusiveConsumer},
		{"ExclusiveHandover", testExclusiveHandover},
		{"SingleActiveConsumer", testSingleActiveConsumer},
		{"ConsumerCancelStops", testConsumerCancel},
		{"OnStartBeforeDeliveries", testOnStart},
		{"OnStartErrorRetries", testOnStartError},
		{"OnIdleAfterBatches", testOnIdle},
		{"OnIdleBeforeStop", testOnIdleBeforeStop},
		{"CloseIdempotent", testClose},
		{"DefaultExchange", testDefaultExchange},
		{"DefaultExchangeConcurrent", testDefaultExchangeConcurrent},
		{"PublishBatchOrder", testPublishBatchOrder},
		{"PublishBatchEmpty", testPublishBatchEmpty},
		{"PublishBatchUnroutable", testPublishBatchUnroutable},
		{"PublishBatchNacked", testPublishBatchNacked},
		{"StreamValidation", testStreamValidation},
		{"StreamFromFirst", testStreamFirst},
		{"StreamFromNext", testStreamNext},
		{"StreamFromLast", testStreamLast},
		{"StreamFromOffset", testStreamOffsetAt},
		{"StreamIndependentConsumers", testStreamIndependent},
		{"StreamPrefetch", testStreamPrefetch},
		{"StreamOnStartRetry", testStreamOnStartRetry},
		{"StreamRetentionBytes", testStreamRetention},
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

// stream declares a fresh stream like spec. Streams cannot be exclusive:
// Options.Cleanup deletes them.
func (e *env) stream(spec broker.QueueSpec) string {
	e.t.Helper()
	spec.Name = e.name("s")
	spec.Stream = true
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

func (c *collector) offsets() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int64, len(c.ds))
	for i, d := range c.ds {
		out[i] = d.Offset
	}
	return out
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
		{Key: "edge.e1", Body: []byte{0, 1, 2, 0xff}, Persistent: true, Type: "join", Conn: "c-42", Room: "lobby", Reply: []byte{0x81, 0xa1, 't', 0}},
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
			got.Type != want.Type || got.Conn != want.Conn || got.Room != want.Room || string(got.Reply) != string(want.Reply) {
			e.t.Errorf("message %d: got %+v, want %+v", i, got, want)
		}
		if d.Exchange != x || d.Redelivered {
			e.t.Errorf("message %d: Exchange %q Redelivered %v, want %q false", i, d.Exchange, d.Redelivered, x)
		}
	}
}

// testCC: a message with CC keys reaches every queue its key or a CC key
// matches, once per queue, on a topic exchange and on the default
// exchange; consumers never see the CC keys.
func testCC(e *env) {
	x := e.exchange()
	room, edge, both, none := e.boundedQueue(), e.boundedQueue(), e.boundedQueue(), e.boundedQueue()
	e.bind(room, x, "room.a")
	e.bind(edge, x, "edge.e1")
	e.bind(both, x, "room.a")
	e.bind(both, x, "edge.*")
	e.bind(none, x, "room.b")
	cs := map[string]*collector{}
	for _, q := range []string{room, edge, both, none} {
		cs[q] = e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	}
	m := broker.Message{Key: "room.a", Body: []byte("m"), CC: []string{"edge.e1", "edge.e9"}, Conn: "c-1", Reply: []byte("r")}
	if err := e.b.Publish(e.ctx, x, m); err != nil {
		e.t.Fatalf("Publish with CC: %v", err)
	}
	// Only CC matches: the message still goes out.
	if err := e.b.Publish(e.ctx, x, broker.Message{Key: "nobody", Body: []byte("cc-only"), CC: []string{"edge.e1"}}); err != nil {
		e.t.Fatalf("Publish with a CC key only matching: %v", err)
	}
	for _, q := range []string{room, edge, both, none} {
		e.publish(x, "room.a", "end")
		e.publish(x, "edge.e1", "end")
		e.publish(x, "room.b", "end")
		e.waitBody(cs[q], "end")
	}
	want := map[string][]string{room: {"m"}, edge: {"m", "cc-only"}, both: {"m", "cc-only"}, none: nil}
	for q, c := range cs {
		if got := before(c, "end"); !slices.Equal(got, want[q]) {
			e.t.Errorf("queue %s got %q before the sentinel, want %q", q, got, want[q])
		}
		for i := 0; i < c.len(); i++ {
			d := c.get(i)
			if d.CC != nil {
				e.t.Errorf("queue %s: delivery %q shows CC %q", q, d.Body, d.CC)
			}
			if string(d.Body) == "m" && (d.Conn != "c-1" || string(d.Reply) != "r" || d.Key != "room.a") {
				e.t.Errorf("queue %s: delivery %+v lost its key or headers", q, d.Message)
			}
		}
	}
	// The default exchange: CC names further queues.
	if err := e.b.Publish(e.ctx, "", broker.Message{Key: room, Body: []byte("direct"), CC: []string{edge}}); err != nil {
		e.t.Fatalf("Publish to the default exchange with CC: %v", err)
	}
	e.waitBody(cs[room], "direct")
	e.waitBody(cs[edge], "direct")
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
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.consume(ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, true)
	var refusedStops atomic.Int32
	refusedStop := func() { refusedStops.Add(1) }
	err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, OnStop: refusedStop}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "a consumer on a queue with an exclusive consumer")
	err = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true, OnStop: refusedStop}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "a second exclusive consumer")
	// Once the first is cancelled, the second can subscribe.
	cancel()
	second := &collector{t: e.t, ack: true}
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		return e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, second.handle) == nil
	}, "waiting for the cancelled exclusive consumer to go away")
	e.publish("", q, "to-second")
	e.waitBody(second, "to-second")
	if n := refusedStops.Load(); n != 0 {
		e.t.Fatalf("OnStop of a refused Consume was called %d times", n)
	}

	q2 := e.boundedQueue()
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q2}, true)
	err = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q2, Exclusive: true}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "an exclusive consumer on a queue with a consumer")
	// Non-exclusive consumers share a queue.
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q2}, true)
}

// testSingleActiveConsumer: only the oldest consumer receives; when it
// stops, the standby takes over, starting with what the first had not
// acknowledged, in order.
func testSingleActiveConsumer(e *env) {
	q := e.queue(broker.QueueSpec{MaxLength: 10000, SingleActiveConsumer: true})
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	first := e.consume(ctx, broker.ConsumeSpec{Queue: q}, false) // never acks
	second := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	for _, b := range []string{"1", "2", "3"} {
		e.publish("", q, b)
	}
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return first.len() == 3 }, "the active consumer receiving all three")
	if n := second.len(); n != 0 {
		e.t.Fatalf("the standby consumer received %d messages while the first was active", n)
	}
	cancel()
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return second.len() == 3 }, "the standby taking over the unacknowledged messages")
	e.publish("", q, "4")
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool { return second.len() == 4 }, "the new active consumer receiving new messages")
	if got := second.bodies(); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		e.t.Fatalf("the standby received %q, want 1 2 3 4 in order", got)
	}
	if !second.get(0).Redelivered {
		e.t.Fatal("a message the first consumer had held is not marked redelivered")
	}
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
	var stops atomic.Int32
	e.consume(e.ctx, broker.ConsumeSpec{Queue: q, OnStop: func() { stops.Add(1) }}, true)
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	// Close waits for the consumers, OnStop included.
	if n := stops.Load(); n != 1 {
		e.t.Fatalf("OnStop was called %d times by the time Close returned, want 1", n)
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

// events is a log of what a consumer's hooks and handler did, in order.
type events struct {
	mu sync.Mutex
	ev []string
}

func (l *events) add(ev string) {
	l.mu.Lock()
	l.ev = append(l.ev, ev)
	l.mu.Unlock()
}

func (l *events) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ev)
}

// waitClosed waits until ch is closed.
func (e *env) waitClosed(ch <-chan struct{}, what string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-time.After(e.opts.Timeout):
		e.t.Fatalf("timed out after %v waiting for %s", e.opts.Timeout, what)
	}
}

// testExclusiveHandover checks when an exclusive consumer lets go: only
// after the handler call in progress when its ctx ended has returned, and
// before OnStop, so the next owner can subscribe at once, even from OnStop.
func testExclusiveHandover(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	inHandler := make(chan struct{})
	release := make(chan struct{})
	stopped := make(chan struct{})
	var log events
	var returned atomic.Bool
	first := func(d *broker.Delivery) {
		log.add("first:" + string(d.Body))
		if string(d.Body) == "m1" {
			close(inHandler)
			<-release
		}
		returned.Store(true)
	}
	// OnStop means the queue is free: even OnStop itself can take it over.
	second := &collector{t: e.t, ack: true}
	var takeover error
	spec := broker.ConsumeSpec{Queue: q, Exclusive: true, OnStop: func() {
		if !returned.Load() {
			e.t.Errorf("OnStop was called while the handler was still running")
		}
		log.add("stop")
		takeover = e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, second.handle)
		close(stopped)
	}}
	if err := e.b.Consume(ctx, spec, first); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.publish(x, "k", "m1")
	e.publish(x, "k", "m2")
	e.waitClosed(inHandler, "the first delivery")
	cancel()
	// The handler has not returned: the queue is still taken.
	for range 3 {
		err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q, Exclusive: true}, func(*broker.Delivery) {})
		expectErr(e.t, err, broker.ErrInUse, "an exclusive consumer while the cancelled one's handler runs")
	}
	close(release)
	e.waitClosed(stopped, "OnStop")
	if takeover != nil {
		e.t.Fatalf("an exclusive consumer started from OnStop: %v", takeover)
	}
	e.waitLen(second, 2, "the cancelled consumer's messages, requeued")
	if got := second.bodies(); !slices.Equal(got, []string{"m1", "m2"}) {
		e.t.Fatalf("the next consumer got %q, want [m1 m2]", got)
	}
	if got := log.get(); !slices.Equal(got, []string{"first:m1", "stop"}) {
		e.t.Fatalf("the cancelled consumer did %q, want [first:m1 stop]: no handler call after cancel, one OnStop", got)
	}
}

// testOnStart checks that OnStart runs once per subscription, before any
// delivery is handled, and that the consumer holds the queue meanwhile.
func testOnStart(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	e.publish(x, "k", "1")
	var log events
	entered := make(chan struct{})
	release := make(chan struct{})
	spec := broker.ConsumeSpec{
		Queue:     q,
		Exclusive: true,
		OnStart: func() error {
			log.add("start")
			close(entered)
			<-release
			log.add("started")
			return nil
		},
	}
	c := &collector{t: e.t, ack: true}
	if err := e.b.Consume(e.ctx, spec, func(d *broker.Delivery) {
		log.add(string(d.Body))
		c.handle(d)
	}); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.waitClosed(entered, "OnStart")
	e.publish(x, "k", "2")
	err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: q}, func(*broker.Delivery) {})
	expectErr(e.t, err, broker.ErrInUse, "a consumer while an exclusive one runs OnStart")
	close(release)
	e.publish(x, "k", "end")
	e.waitBody(c, "end")
	if got, want := log.get(), []string{"start", "started", "1", "2", "end"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

// testOnStartError checks that a failing OnStart drops the subscription,
// so the messages it was sent go back to the queue, and that the consumer
// subscribes again, calling OnStart again, until it succeeds.
func testOnStartError(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	for _, b := range []string{"1", "2", "3"} {
		e.publish(x, "k", b)
	}
	var log events
	calls := 0 // on the consumer's goroutine only
	spec := broker.ConsumeSpec{
		Queue:     q,
		Exclusive: true,
		Prefetch:  2,
		OnStart: func() error {
			calls++
			if calls < 3 {
				log.add("fail")
				return fmt.Errorf("start %d fails", calls)
			}
			log.add("ok")
			return nil
		},
	}
	c := &collector{t: e.t, ack: true}
	if err := e.b.Consume(e.ctx, spec, func(d *broker.Delivery) {
		log.add(string(d.Body))
		c.handle(d)
	}); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.waitLen(c, 3, "the messages after OnStart succeeded")
	e.publish(x, "k", "end")
	e.waitBody(c, "end")
	if got, want := log.get(), []string{"fail", "fail", "ok", "1", "2", "3", "end"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

// testDefaultExchange publishes to the default exchange "", which routes to
// the queue named by the key.
func testDefaultExchange(e *env) {
	q := e.boundedQueue()
	other := e.boundedQueue()
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	co := e.consume(e.ctx, broker.ConsumeSpec{Queue: other}, true)
	e.publish("", q, "direct")
	missing := "hearth-test.no-such-queue." + randomHex(4)
	err := e.b.Publish(e.ctx, "", broker.Message{Key: missing, Body: []byte("dropped")})
	expectErr(e.t, err, broker.ErrUnroutable, "publishing to the default exchange with the key of a missing queue")
	e.publish("", q, "end")
	e.publish("", other, "other")
	e.waitBody(c, "end")
	e.waitBody(co, "other")
	if got := c.bodies(); !slices.Equal(got, []string{"direct", "end"}) {
		e.t.Fatalf("got %q, want [direct end]", got)
	}
	if got := co.bodies(); !slices.Equal(got, []string{"other"}) {
		e.t.Fatalf("the other queue got %q, want [other]", got)
	}
	if d := c.get(0); d.Exchange != "" || d.Key != q {
		e.t.Fatalf("Exchange %q Key %q, want \"\" and %q", d.Exchange, d.Key, q)
	}
	if err := e.b.Bind(e.ctx, q, "", "k"); err == nil {
		e.t.Fatalf("binding to the default exchange succeeded")
	}
	e.publish("", q, "after")
	e.waitBody(c, "after")
}

// testDefaultExchangeConcurrent publishes to the default exchange from
// many goroutines, alternating an existing and a missing queue: each publish
// gets its own outcome.
func testDefaultExchangeConcurrent(e *env) {
	const publishers, each = 8, 40
	q := e.boundedQueue()
	missing := "hearth-test.no-such-queue." + randomHex(4)
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				key := q
				if (p+i)%2 == 1 {
					key = missing
				}
				err := e.b.Publish(e.ctx, "", broker.Message{Key: key, Body: fmt.Appendf(nil, "%d:%d", p, i)})
				switch {
				case key == q && err != nil:
					errs <- fmt.Errorf("publisher %d message %d to an existing queue: %w", p, i, err)
					return
				case key == missing && !errors.Is(err, broker.ErrUnroutable):
					errs <- fmt.Errorf("publisher %d message %d to a missing queue: got %v, want ErrUnroutable", p, i, err)
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
	e.publish("", q, "end")
	e.waitBody(c, "end")
	if n := len(before(c, "end")); n != publishers*each/2 {
		e.t.Fatalf("the queue got %d messages, want %d", n, publishers*each/2)
	}
}

// publishN appends n messages "<prefix>0", "<prefix>1", ... to stream s
// through the default exchange, and returns their bodies.
func (e *env) publishN(s, prefix string, n int) []string {
	e.t.Helper()
	bodies := make([]string, n)
	for i := range n {
		bodies[i] = fmt.Sprintf("%s%d", prefix, i)
		e.publish("", s, bodies[i])
	}
	return bodies
}

// increasing reports whether offs strictly increase.
func increasing(offs []int64) bool {
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			return false
		}
	}
	return true
}

func testStreamValidation(e *env) {
	bad := []broker.QueueSpec{
		{Name: "hearth-test.bad-stream", Stream: true, Exclusive: true},
		{Name: "hearth-test.bad-stream", Stream: true, Quorum: true},
		{Name: "hearth-test.bad-stream", Stream: true, MaxLength: 10},
		{Name: "hearth-test.bad-stream", Stream: true, Overflow: broker.DropHead},
		{Name: "hearth-test.bad-stream", Stream: true, MaxAge: -time.Second},
		{Name: "hearth-test.bad-queue", MaxLength: 10, MaxAge: time.Hour},
		{Name: "hearth-test.bad-queue", MaxLength: 10, SegmentBytes: 1 << 20},
	}
	for _, spec := range bad {
		if err := e.b.DeclareQueue(e.ctx, spec); err == nil {
			e.t.Errorf("DeclareQueue(%+v) succeeded", spec)
		}
	}
	spec := broker.QueueSpec{MaxLengthBytes: 1 << 20, MaxAge: time.Hour, SegmentBytes: 1 << 18}
	s := e.stream(spec)
	spec.Name, spec.Stream = s, true
	if err := e.b.DeclareQueue(e.ctx, spec); err != nil {
		e.t.Fatalf("declaring the same stream again: %v", err)
	}
	spec.Durable = true // implied
	if err := e.b.DeclareQueue(e.ctx, spec); err != nil {
		e.t.Fatalf("declaring the same stream again, durable: %v", err)
	}
	other := spec
	other.MaxLengthBytes *= 2
	expectErr(e.t, e.b.DeclareQueue(e.ctx, other), broker.ErrMismatch, "declaring a stream with a different byte bound")
	other = spec
	other.MaxAge = 2 * time.Hour
	expectErr(e.t, e.b.DeclareQueue(e.ctx, other), broker.ErrMismatch, "declaring a stream with a different age bound")

	nop := func(*broker.Delivery) {}
	q := e.boundedQueue()
	badConsumers := []broker.ConsumeSpec{
		{Queue: s, AutoAck: true},                                   // RabbitMQ: a connection error
		{Queue: s, AutoAck: true, StreamOffset: broker.OffsetFirst}, // refused by normalize
		{Queue: s, StreamOffset: broker.OffsetAt(-1)},
		{Queue: q, StreamOffset: broker.OffsetFirst}, // not a stream
	}
	for _, cs := range badConsumers {
		if err := e.b.Consume(e.ctx, cs, nop); err == nil {
			e.t.Errorf("Consume(%+v) succeeded", cs)
		}
	}
	// The broker still works, streams included.
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst}, true)
	e.publish("", s, "ok")
	e.waitBody(c, "ok")
	if !e.b.State().Connected {
		e.t.Fatalf("State().Connected is false after refused stream consumers")
	}
}

func testStreamFirst(e *env) {
	s := e.stream(broker.QueueSpec{})
	want := e.publishN(s, "m", 20)
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst}, true)
	e.waitLen(c, len(want), "the whole stream")
	if got := c.bodies(); !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
	if offs := c.offsets(); !increasing(offs) {
		e.t.Fatalf("offsets %v do not increase", offs)
	}
	for i := range want {
		if d := c.get(i); d.Exchange != "" || d.Key != s || d.Redelivered {
			e.t.Fatalf("delivery %d: Exchange %q Key %q Redelivered %v", i, d.Exchange, d.Key, d.Redelivered)
		}
	}
	// A consumer that reached the end waits for new messages.
	e.publish("", s, "later")
	e.waitBody(c, "later")
	if offs := c.offsets(); !increasing(offs) {
		e.t.Fatalf("offsets %v do not increase", offs)
	}
}

func testStreamNext(e *env) {
	s := e.stream(broker.QueueSpec{})
	e.publishN(s, "before", 3)
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetNext}, true)
	want := e.publishN(s, "after", 3)
	e.waitBody(c, want[len(want)-1])
	if got := c.bodies(); !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

func testStreamLast(e *env) {
	s := e.stream(broker.QueueSpec{})
	// One confirmed publish at a time: each message is a chunk of its own
	// in RabbitMQ, whose "last" is the start of the newest chunk.
	sent := e.publishN(s, "m", 5)
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetLast}, true)
	e.publish("", s, "after")
	e.waitBody(c, "after")
	if got, want := c.bodies(), []string{sent[len(sent)-1], "after"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

func testStreamOffsetAt(e *env) {
	s := e.stream(broker.QueueSpec{})
	want := e.publishN(s, "m", 10)
	all := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst}, true)
	e.waitLen(all, len(want), "the whole stream")
	offs := all.offsets()
	const k = 6
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetAt(offs[k])}, true)
	e.waitLen(c, len(want)-k, "the stream from offset k")
	if got := c.bodies(); !slices.Equal(got, want[k:]) {
		e.t.Fatalf("from offset %d: got %q, want %q", offs[k], got, want[k:])
	}
	if got := c.offsets(); !slices.Equal(got, offs[k:]) {
		e.t.Fatalf("from offset %d: offsets %v, want %v", offs[k], got, offs[k:])
	}
	// An offset not written yet: the consumer waits for it.
	future := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetAt(offs[len(offs)-1] + 1)}, true)
	e.publish("", s, "next")
	e.waitBody(future, "next")
	if got := future.bodies(); !slices.Equal(got, []string{"next"}) {
		e.t.Fatalf("from the next offset: got %q, want [next]", got)
	}
}

// testStreamIndependent checks that stream consumers read independently and
// that neither Ack nor Nack removes anything from a stream.
func testStreamIndependent(e *env) {
	s := e.stream(broker.QueueSpec{})
	want := e.publishN(s, "m", 10)
	a := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst, Prefetch: 3}, true)
	var nacked collector
	nacker := func(d *broker.Delivery) {
		nacked.mu.Lock()
		nacked.ds = append(nacked.ds, d)
		n := len(nacked.ds)
		nacked.mu.Unlock()
		if err := d.Nack(n%2 == 0); err != nil {
			e.t.Errorf("Nack on a stream: %v", err)
		}
	}
	if err := e.b.Consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst, Prefetch: 2}, nacker); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.waitLen(a, len(want), "the first consumer")
	e.waitLen(&nacked, len(want), "the nacking consumer")
	if got := a.bodies(); !slices.Equal(got, want) {
		e.t.Fatalf("the acking consumer got %q, want %q", got, want)
	}
	if got := nacked.bodies(); !slices.Equal(got, want) {
		e.t.Fatalf("the nacking consumer got %q, want %q (nack on a stream does not requeue)", got, want)
	}
	// Everything is still there for a newcomer.
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst}, true)
	e.waitLen(c, len(want), "a third consumer")
	if got := c.bodies(); !slices.Equal(got, want) {
		e.t.Fatalf("a consumer after the others acked and nacked got %q, want %q", got, want)
	}
	e.publish("", s, "end")
	for _, col := range []*collector{a, &nacked, c} {
		e.waitBody(col, "end")
	}
}

// testStreamPrefetch checks that a stream consumer's prefetch is its
// credit: it reads on only as it acknowledges.
func testStreamPrefetch(e *env) {
	s := e.stream(broker.QueueSpec{})
	want := e.publishN(s, "m", 5)
	slow := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst, Prefetch: 2}, false)
	e.waitLen(slow, 2, "the slow consumer's prefetch")
	fast := e.consume(e.ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst, Prefetch: 10}, true)
	e.waitLen(fast, len(want), "the fast consumer")
	if n := slow.len(); n != 2 {
		e.t.Fatalf("the slow consumer (prefetch 2) got %d unacknowledged deliveries", n)
	}
	for i := range 2 {
		if err := slow.get(i).Ack(); err != nil {
			e.t.Fatalf("Ack: %v", err)
		}
	}
	e.waitLen(slow, 4, "two more after acknowledging two")
	if got := slow.bodies(); !slices.Equal(got[:4], want[:4]) {
		e.t.Fatalf("got %q, want %q", got, want[:4])
	}
}

// testStreamOnStartRetry checks that a stream consumer whose OnStart failed
// subscribes again from where it was to start: each message once, in order.
func testStreamOnStartRetry(e *env) {
	s := e.stream(broker.QueueSpec{})
	want := e.publishN(s, "m", 5)
	var starts atomic.Int32
	c := &collector{t: e.t, ack: true}
	spec := broker.ConsumeSpec{
		Queue:        s,
		StreamOffset: broker.OffsetFirst,
		Prefetch:     2,
		OnStart: func() error {
			if starts.Add(1) == 1 {
				return errors.New("first start fails")
			}
			return nil
		},
	}
	if err := e.b.Consume(e.ctx, spec, c.handle); err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.publish("", s, "end")
	e.waitBody(c, "end")
	if got := c.bodies(); !slices.Equal(got, append(want, "end")) {
		e.t.Fatalf("got %q, want %q", got, append(want, "end"))
	}
	if n := starts.Load(); n != 2 {
		e.t.Fatalf("OnStart was called %d times, want 2", n)
	}
}

// testStreamRetention checks retention by size: the oldest messages go,
// the newest stay. RabbitMQ drops whole segments, so the stream uses small
// ones and the test only asserts that what remains is the newest part of
// what was published; the local broker's exact retention is tested beside
// it. Segments are not tiny though: RabbitMQ 3.10 evaluates retention at
// each new segment, and deleting the stream (Cleanup) while evaluations are
// queued crashes its retention process, which upsets every stream of the
// node for a moment (with 500-byte segments, four runs in five did).
func testStreamRetention(e *env) {
	s := e.stream(broker.QueueSpec{MaxLengthBytes: 8192, SegmentBytes: 4096})
	pad := strings.Repeat(".", 500)
	var sent []string
	for i := range 60 {
		b := fmt.Sprintf("m%03d%s", i, pad)
		sent = append(sent, b)
		e.publish("", s, b)
	}
	last := sent[len(sent)-1]
	var got []string
	var offs []int64
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		c := e.consume(ctx, broker.ConsumeSpec{Queue: s, StreamOffset: broker.OffsetFirst}, true)
		e.waitBody(c, last)
		got, offs = c.bodies(), c.offsets()
		return got[0] != sent[0]
	}, "waiting for retention to drop the oldest messages")
	if len(got) >= len(sent) || !slices.Equal(got, sent[len(sent)-len(got):]) {
		e.t.Fatalf("retained %d messages %q..%q: not the newest part of what was published", len(got), got[0], got[len(got)-1])
	}
	if !increasing(offs) || offs[0] == 0 {
		e.t.Fatalf("offsets after retention: %v", offs)
	}
}

// testOnIdle checks that OnIdle follows every run of deliveries: deliveries
// that waited while the handler was busy are handled back to back, as one
// batch, and the last delivery is always followed by an OnIdle.
func testOnIdle(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	var log events
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	spec := broker.ConsumeSpec{Queue: q, AutoAck: true, OnIdle: func() { log.add("idle") }}
	err := e.b.Consume(e.ctx, spec, func(d *broker.Delivery) {
		log.add(string(d.Body))
		if string(d.Body) == "first" {
			once.Do(func() { close(entered) })
			<-release
		}
	})
	if err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.publish(x, "k", "first")
	e.waitClosed(entered, "the first delivery")
	const n = 20
	for i := range n {
		e.publish(x, "k", strconv.Itoa(i))
	}
	// Each publish waited for its confirm, so the early ones of the burst
	// have reached the consumer's side by now (AMQP pushes up to the
	// prefetch): at least those are handled back to back.
	close(release)
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		ev := log.get()
		return len(ev) > 0 && ev[len(ev)-1] == "idle" && slices.Contains(ev, strconv.Itoa(n-1))
	}, "waiting for the burst and an OnIdle after it")
	ev := log.get()
	batch, largest := 0, 0
	for _, v := range ev {
		if v == "idle" {
			if batch == 0 {
				e.t.Fatalf("OnIdle without a delivery before it: %q", ev)
			}
			batch = 0
			continue
		}
		batch++
		largest = max(largest, batch)
	}
	if largest < 2 {
		e.t.Fatalf("the deliveries that waited were not handled as one batch: %q", ev)
	}
	// A lone delivery later is its own batch.
	e.publish(x, "k", "lone")
	testenv.WaitFor(e.t, e.opts.Timeout, func() bool {
		ev := log.get()
		return len(ev) >= 2 && ev[len(ev)-2] == "lone" && ev[len(ev)-1] == "idle"
	}, "waiting for OnIdle after a lone delivery")
}

// testOnIdleBeforeStop checks that a consumer stopping in the middle of a
// batch calls OnIdle before OnStop, so the batch is finished while the
// subscription still holds its deliveries.
func testOnIdleBeforeStop(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var log events
	stopped := make(chan struct{})
	spec := broker.ConsumeSpec{
		Queue:  q,
		OnIdle: func() { log.add("idle") },
		OnStop: func() { log.add("stop"); close(stopped) },
	}
	err := e.b.Consume(ctx, spec, func(d *broker.Delivery) {
		log.add(string(d.Body))
		if err := d.Ack(); err != nil {
			e.t.Errorf("Ack: %v", err)
		}
		if string(d.Body) == "last" {
			cancel()
		}
	})
	if err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.publish(x, "k", "last")
	e.waitClosed(stopped, "OnStop")
	if got, want := log.get(), []string{"last", "idle", "stop"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

// batch returns n messages with key and bodies "<prefix>0", "<prefix>1", ...
func batch(key, prefix string, n int) []broker.Message {
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{Key: key, Body: fmt.Appendf(nil, "%s%d", prefix, i)}
	}
	return msgs
}

// bodiesOf returns the bodies of msgs.
func bodiesOf(msgs []broker.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	return out
}

// testPublishBatchOrder publishes batches to a queue with a running
// consumer, two of them concurrently: every message arrives once, each
// batch in its order, with its properties.
func testPublishBatchOrder(e *env) {
	const n = 200
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	first := batch("k", "a", n)
	first[7] = broker.Message{Key: "k", Body: []byte("a7"), Persistent: true, Type: "t", Conn: "c-1", Room: "lobby"}
	if err := e.b.PublishBatch(e.ctx, x, first); err != nil {
		e.t.Fatalf("PublishBatch: %v", err)
	}
	e.waitLen(c, n, "the batch")
	if got, want := c.bodies(), bodiesOf(first); !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
	if d := c.get(7); !d.Persistent || d.Type != "t" || d.Conn != "c-1" || d.Room != "lobby" || d.Exchange != x {
		e.t.Fatalf("message 7 lost its properties: %+v", d)
	}
	// Two batches at once: each keeps its own order.
	batches := [][]broker.Message{batch("k", "b", n), batch("k", "c", n)}
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	for _, msgs := range batches {
		wg.Go(func() { errs <- e.b.PublishBatch(e.ctx, x, msgs) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			e.t.Fatalf("concurrent PublishBatch: %v", err)
		}
	}
	e.waitLen(c, 3*n, "the concurrent batches")
	var gotB, gotC []string
	for _, b := range c.bodies()[n:] {
		switch b[0] {
		case 'b':
			gotB = append(gotB, b)
		case 'c':
			gotC = append(gotC, b)
		}
	}
	if !slices.Equal(gotB, bodiesOf(batches[0])) || !slices.Equal(gotC, bodiesOf(batches[1])) {
		e.t.Fatalf("a concurrent batch lost its order or messages:\n%q\n%q", gotB, gotC)
	}
}

// testPublishBatchEmpty: an empty batch does nothing, not even fail; a
// non-empty one fails like Publish on a done ctx or a missing exchange.
func testPublishBatchEmpty(e *env) {
	x := e.exchange()
	q := e.boundedQueue()
	e.bind(q, x, "k")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	cancelled, cancel := context.WithCancel(e.ctx)
	cancel()
	missing := "hearth-test.no-such-exchange." + randomHex(4)
	for _, tc := range []struct {
		ctx context.Context
		x   string
	}{{e.ctx, x}, {cancelled, x}, {e.ctx, missing}, {e.ctx, ""}} {
		for _, msgs := range [][]broker.Message{nil, {}} {
			if err := e.b.PublishBatch(tc.ctx, tc.x, msgs); err != nil {
				e.t.Fatalf("PublishBatch(%q) of %d messages (ctx err %v): %v", tc.x, len(msgs), tc.ctx.Err(), err)
			}
		}
	}
	err := e.b.PublishBatch(cancelled, x, batch("k", "late", 2))
	expectErr(e.t, err, context.Canceled, "PublishBatch with a cancelled context")
	err = e.b.PublishBatch(e.ctx, missing, batch("k", "lost", 2))
	expectErr(e.t, err, broker.ErrNotFound, "PublishBatch to a missing exchange")
	e.publish(x, "k", "end")
	e.waitBody(c, "end")
	if got := c.bodies(); !slices.Equal(got, []string{"end"}) {
		e.t.Fatalf("got %q, want [end]", got)
	}
}

// testPublishBatchUnroutable publishes batches to the default exchange: a
// message for a missing queue fails the batch with ErrUnroutable, and the
// messages for the existing queue, before and after it, arrive in order.
func testPublishBatchUnroutable(e *env) {
	q := e.boundedQueue()
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	missing := "hearth-test.no-such-queue." + randomHex(4)
	msgs := []broker.Message{
		{Key: q, Body: []byte("before")},
		{Key: missing, Body: []byte("dropped")},
		{Key: q, Body: []byte("after")},
	}
	err := e.b.PublishBatch(e.ctx, "", msgs)
	expectErr(e.t, err, broker.ErrUnroutable, "a default-exchange batch with a message for a missing queue")
	// More unroutable messages than the AMQP broker buffers returns for.
	err = e.b.PublishBatch(e.ctx, "", batch(missing, "m", 300))
	expectErr(e.t, err, broker.ErrUnroutable, "a default-exchange batch to a missing queue")
	// Nothing is left over: a good batch succeeds.
	if err := e.b.PublishBatch(e.ctx, "", batch(q, "ok", 3)); err != nil {
		e.t.Fatalf("PublishBatch to an existing queue: %v", err)
	}
	e.publish("", q, "end")
	e.waitBody(c, "end")
	if got, want := c.bodies(), []string{"before", "after", "ok0", "ok1", "ok2", "end"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}

// testPublishBatchNacked fills a reject-publish queue with a batch: the
// batch fails with ErrNacked, and the queue holds what fitted, in order.
func testPublishBatchNacked(e *env) {
	x := e.exchange()
	q := e.queue(broker.QueueSpec{MaxLength: 2, Overflow: broker.RejectPublish})
	e.bind(q, x, "k")
	err := e.b.PublishBatch(e.ctx, x, batch("k", "m", 4))
	expectErr(e.t, err, broker.ErrNacked, "a batch overflowing a reject-publish queue")
	c := e.consume(e.ctx, broker.ConsumeSpec{Queue: q}, true)
	e.waitLen(c, 2, "the messages that fitted")
	if err := e.b.PublishBatch(e.ctx, x, batch("k", "n", 2)); err != nil {
		e.t.Fatalf("PublishBatch with room again: %v", err)
	}
	e.waitLen(c, 4, "the second batch")
	if got, want := c.bodies(), []string{"m0", "m1", "n0", "n1"}; !slices.Equal(got, want) {
		e.t.Fatalf("got %q, want %q", got, want)
	}
}
