package broker_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/broker/brokertest"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// newAMQP connects to the test RabbitMQ with a short backoff, so
// reconnect tests are quick.
func newAMQP(t *testing.T) *broker.AMQP {
	t.Helper()
	u := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	b, err := broker.NewAMQP(ctx, broker.AMQPConfig{
		URLs:         []string{u},
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 300 * time.Millisecond,
		Name:         "hearth-test " + t.Name(),
		Logger:       zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger(),
	})
	if err != nil {
		t.Fatalf("NewAMQP: %v", err)
	}
	return b
}

// deleteTopology removes what a test declared, on a connection of its own.
func deleteTopology(t testing.TB, exchanges, queues []string) {
	t.Helper()
	if len(exchanges) == 0 && len(queues) == 0 {
		return
	}
	conn, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, q := range queues {
		// A 404 (exclusive queues are gone already) closes the channel.
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			if ch, err = conn.Channel(); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Errorf("cleanup: deleting exchange %q: %v", x, err)
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
}

func TestAMQP(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newAMQP(t) },
		brokertest.Options{Cleanup: deleteTopology})
}

func TestAMQPConfig(t *testing.T) {
	t.Parallel()
	if _, err := broker.NewAMQP(t.Context(), broker.AMQPConfig{}); err == nil {
		t.Fatal("NewAMQP without URLs succeeded")
	}
	if _, err := broker.NewAMQP(t.Context(), broker.AMQPConfig{URLs: []string{"http://x"}}); err == nil {
		t.Fatal("NewAMQP with an http URL succeeded")
	}
	// Nothing listens on port 1: NewAMQP gives up when its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := broker.NewAMQP(ctx, broker.AMQPConfig{URLs: []string{"amqp://guest:guest@127.0.0.1:1/"}, ReconnectMax: 50 * time.Millisecond})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("NewAMQP with an unreachable URL: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewAMQP took %v to give up", d)
	}
}

// recorder collects deliveries, acknowledging them unless told to hold them.
type recorder struct {
	mu     sync.Mutex
	ds     []*broker.Delivery
	hold   bool
	starts int // OnStart calls
}

func (r *recorder) onStart() error {
	r.mu.Lock()
	r.starts++
	r.mu.Unlock()
	return nil
}

func (r *recorder) startCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts
}

func (r *recorder) offsets() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, d := range r.ds {
		out = append(out, d.Offset)
	}
	return out
}

func (r *recorder) handle(d *broker.Delivery) {
	r.mu.Lock()
	r.ds = append(r.ds, d)
	hold := r.hold
	r.mu.Unlock()
	if !hold {
		_ = d.Ack()
	}
}

func (r *recorder) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.ds {
		out = append(out, string(d.Body))
	}
	return out
}

func (r *recorder) has(body string) bool { return slices.Contains(r.bodies(), body) }

// TestAMQPReconnect stops and starts RabbitMQ under a broker with
// exclusive and durable queues, a stream, bindings and consumers, and checks
// that everything comes back: consumers call OnStart again, and a stream
// consumer resumes after the last message it handled. It does not run in parallel: it stops the shared
// node (testenv coordinates with other packages' tests).
func TestAMQPReconnect(t *testing.T) {
	const wait = 30 * time.Second
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })

	suffix := time.Now().Format("150405.000000")
	x := "hearth-test.reconnect." + suffix
	durable := "hearth-test.reconnect.durable." + suffix
	exclusive := "hearth-test.reconnect.exclusive." + suffix
	stream := "hearth-test.reconnect.stream." + suffix
	t.Cleanup(func() { deleteTopology(t, []string{x}, []string{durable, stream}) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.DeclareExchange(ctx, x))
	must(b.DeclareQueue(ctx, broker.QueueSpec{Name: durable, Durable: true, MaxLength: 1000}))
	must(b.DeclareQueue(ctx, broker.QueueSpec{Name: exclusive, Exclusive: true, MaxLength: 1000}))
	must(b.DeclareQueue(ctx, broker.QueueSpec{Name: stream, Stream: true, MaxLengthBytes: 1 << 20}))
	must(b.Bind(ctx, durable, x, "d.*"))
	must(b.Bind(ctx, exclusive, x, "e.#"))
	must(b.Bind(ctx, exclusive, x, "unbound.later"))
	held := &recorder{hold: true} // keeps its first delivery unacknowledged
	must(b.Consume(ctx, broker.ConsumeSpec{Queue: durable}, held.handle))
	excl := &recorder{}
	must(b.Consume(ctx, broker.ConsumeSpec{Queue: exclusive, OnStart: excl.onStart}, excl.handle))
	streamed := &recorder{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("durable %q, exclusive %q, stream %q", held.bodies(), excl.bodies(), streamed.bodies())
		}
	})
	must(b.Consume(ctx, broker.ConsumeSpec{Queue: stream, StreamOffset: broker.OffsetFirst, OnStart: streamed.onStart}, streamed.handle))

	must(b.Publish(ctx, x, broker.Message{Key: "d.1", Body: []byte("held"), Persistent: true}))
	must(b.Publish(ctx, x, broker.Message{Key: "e.1", Body: []byte("e-before")}))
	must(b.Publish(ctx, "", broker.Message{Key: stream, Body: []byte("s1")}))
	must(b.Publish(ctx, "", broker.Message{Key: stream, Body: []byte("s2")}))
	testenv.WaitFor(t, wait, func() bool {
		return held.has("held") && excl.has("e-before") && streamed.has("s2")
	}, "deliveries before the restart")
	held.mu.Lock()
	unacked := held.ds[0]
	held.hold = false
	held.mu.Unlock()

	testenv.StopBroker(t)
	testenv.WaitFor(t, wait, func() bool { return !b.State().Connected }, "State().Connected to turn false")

	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := b.Publish(pctx, x, broker.Message{Key: "d.1", Body: []byte("lost")})
	cancel()
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish during the outage: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Publish during the outage took %v", d)
	}
	if err := b.Bind(ctx, exclusive, x, "bound.during.outage"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Bind during the outage: got %v, want ErrUnavailable", err)
	}
	if err := b.Unbind(ctx, exclusive, x, "unbound.later"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Unbind during the outage: got %v, want ErrUnavailable", err)
	}
	if err := b.Consume(ctx, broker.ConsumeSpec{Queue: durable}, func(*broker.Delivery) {}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Consume during the outage: got %v, want ErrUnavailable", err)
	}

	testenv.StartBroker(t)
	testenv.WaitFor(t, wait, func() bool { return b.State().Connected }, "State().Connected to turn true again")

	// The delivery held across the restart cannot be acknowledged any more:
	// an error, not a panic, and RabbitMQ delivers the message again.
	if err := unacked.Ack(); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ack of a delivery from before the reconnect: got %v, want ErrUnavailable", err)
	}
	testenv.WaitFor(t, wait, func() bool { return len(held.bodies()) >= 2 }, "the persistent unacknowledged message again")

	// Queues, bindings and consumers are back: the exclusive queue was
	// deleted by RabbitMQ and declared again.
	must(b.Publish(ctx, x, broker.Message{Key: "d.2", Body: []byte("d-after")}))
	must(b.Publish(ctx, x, broker.Message{Key: "bound.during.outage", Body: []byte("not-recorded")}))
	must(b.Publish(ctx, x, broker.Message{Key: "unbound.later", Body: []byte("unbound")}))
	must(b.Publish(ctx, x, broker.Message{Key: "e.2", Body: []byte("e-after")}))
	// For a moment after the restart the stream is not running yet: RabbitMQ
	// returns what is published to it, and Publish reports ErrUnroutable.
	testenv.WaitFor(t, wait, func() bool {
		err := b.Publish(ctx, "", broker.Message{Key: stream, Body: []byte("s3")})
		if err != nil && !errors.Is(err, broker.ErrUnroutable) {
			t.Fatalf("Publish to the stream after the restart: %v", err)
		}
		return err == nil
	}, "publishing to the stream after the restart")
	testenv.WaitFor(t, wait, func() bool {
		return held.has("d-after") && excl.has("e-after") && streamed.has("s3")
	}, "deliveries after the restart")
	if n := excl.startCount(); n != 2 {
		t.Fatalf("OnStart was called %d times, want 2: once per subscription", n)
	}
	if got := streamed.bodies(); !slices.Equal(got, []string{"s1", "s2", "s3"}) {
		t.Fatalf("stream consumer got %q across the restart, want [s1 s2 s3]: it resumes after the last offset it handled", got)
	}
	if offs := streamed.offsets(); offs[0] >= offs[1] || offs[1] >= offs[2] {
		t.Fatalf("stream offsets across the restart: %v", offs)
	}
	if got := excl.bodies(); !slices.Equal(got, []string{"e-before", "e-after"}) {
		t.Fatalf("exclusive queue got %q: a binding made or removed during the outage leaked", got)
	}
	if got := held.bodies(); !slices.Equal(got, []string{"held", "held", "d-after"}) {
		t.Fatalf("durable queue got %q", got)
	}
}

// TestAMQPConcurrentPublish publishes from many goroutines at once on the
// shared confirm channel (run it with -race).
func TestAMQPConcurrentPublish(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })
	x := "hearth-test.pipelined." + time.Now().Format("150405.000000")
	t.Cleanup(func() { deleteTopology(t, []string{x}, nil) })
	if err := b.DeclareExchange(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: x, Exclusive: true, MaxLength: 100000}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, x, x, "#"); err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 64, 50
	var wg sync.WaitGroup
	var failed sync.Once
	for range goroutines {
		wg.Go(func() {
			for range each {
				if err := b.Publish(ctx, x, broker.Message{Key: "k", Body: []byte("m")}); err != nil {
					failed.Do(func() { t.Errorf("Publish: %v", err) })
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAMQPBlocked raises a memory alarm so that RabbitMQ blocks publishers
// (connection.blocked), and checks State().Blocked and that Publish fails
// fast with ErrUnavailable meanwhile. It does not run in parallel: the alarm
// blocks every publisher of the node (testenv.HoldBroker keeps other test
// processes off it).
func TestAMQPBlocked(t *testing.T) {
	const wait = 30 * time.Second
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })
	x := "hearth-test.blocked." + time.Now().Format("150405.000000")
	t.Cleanup(func() { deleteTopology(t, []string{x}, nil) })
	if err := b.DeclareExchange(ctx, x); err != nil {
		t.Fatal(err)
	}

	testenv.HoldBroker(t)
	restore := []string{"set_vm_memory_high_watermark", "0.4"} // RabbitMQ's default
	prev := strings.TrimSpace(testenv.Ctl(t, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
	if _, err := strconv.ParseFloat(prev, 64); err == nil {
		restore[1] = prev
	}
	testenv.Ctl(t, "set_vm_memory_high_watermark", "0.000001")
	t.Cleanup(func() { testenv.Ctl(t, restore...) })
	// RabbitMQ blocks a connection when it next publishes.
	testenv.WaitFor(t, wait, func() bool {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_ = b.Publish(pctx, x, broker.Message{Key: "k"})
		return b.State().Blocked
	}, "State().Blocked to turn true under a memory alarm")
	if !b.State().Connected {
		t.Fatal("State().Connected is false while only blocked")
	}
	start := time.Now()
	if err := b.Publish(ctx, x, broker.Message{Key: "k"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish while blocked: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Publish while blocked took %v", d)
	}

	testenv.Ctl(t, restore...)
	testenv.WaitFor(t, wait, func() bool { return !b.State().Blocked }, "State().Blocked to turn false")
	if err := b.Publish(ctx, x, broker.Message{Key: "k"}); err != nil {
		t.Fatalf("Publish after the alarm cleared: %v", err)
	}
}

// TestAMQPExchangeDeletedUnderneath deletes an exchange the broker
// declared: the next publish to it closes the shared confirm channel with a
// 404. Publish reports ErrNotFound, and the channel is reopened.
func TestAMQPExchangeDeletedUnderneath(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })
	suffix := time.Now().Format("150405.000000")
	gone, kept := "hearth-test.gone."+suffix, "hearth-test.kept."+suffix
	t.Cleanup(func() { deleteTopology(t, []string{kept}, nil) })
	for _, x := range []string{gone, kept} {
		if err := b.DeclareExchange(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	deleteTopology(t, []string{gone}, nil)

	err := b.Publish(ctx, gone, broker.Message{Key: "k"})
	if !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("Publish to a deleted exchange: got %v, want ErrNotFound", err)
	}
	testenv.WaitFor(t, 10*time.Second, func() bool { return b.State().Connected }, "the publish channel to reopen")
	if err := b.Publish(ctx, kept, broker.Message{Key: "k"}); err != nil {
		t.Fatalf("Publish after the channel exception: %v", err)
	}
	// The broker forgot the exchange: the next publish checks and fails alone.
	err = b.Publish(ctx, gone, broker.Message{Key: "k"})
	if !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("second Publish to a deleted exchange: got %v, want ErrNotFound", err)
	}
}

// TestAMQPQuorumQueue declares a bounded quorum queue and uses it.
func TestAMQPQuorumQueue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })
	name := "hearth-test.quorum." + time.Now().Format("150405.000000")
	t.Cleanup(func() { deleteTopology(t, []string{name}, []string{name}) })
	spec := broker.QueueSpec{Name: name, Quorum: true, MaxLength: 100, Overflow: broker.RejectPublish}
	if err := b.DeclareExchange(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, spec); err != nil {
		t.Fatalf("declaring a quorum queue: %v", err)
	}
	spec.Durable = true // implied: declaring again is the same
	if err := b.DeclareQueue(ctx, spec); err != nil {
		t.Fatalf("declaring a quorum queue again: %v", err)
	}
	if err := b.Bind(ctx, name, name, "#"); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, name, broker.Message{Key: "k", Body: []byte("q"), Persistent: true}); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	if err := b.Consume(ctx, broker.ConsumeSpec{Queue: name}, r.handle); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() bool { return r.has("q") }, "the message through the quorum queue")
}

// TestAMQPAckDelay consumes a quorum queue with acks held back for longer
// than the test runs: half the prefetch held must go at once (else the
// consumer stalls after Prefetch deliveries), a nack among held acks must
// not fail the channel, and stopping must send what is held (else the
// next consumer gets the processed messages again).
func TestAMQPAckDelay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newAMQP(t)
	t.Cleanup(func() { _ = b.Close() })
	name := "hearth-test.ackdelay." + time.Now().Format("150405.000000")
	t.Cleanup(func() { deleteTopology(t, []string{name}, []string{name}) })
	if err := b.DeclareExchange(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: name, Quorum: true, MaxLength: 1000, Overflow: broker.RejectPublish}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, name, name, "#"); err != nil {
		t.Fatal(err)
	}
	const n, nacked = 100, "m-37"
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{Key: "k", Body: []byte("m-" + strconv.Itoa(i)), Persistent: true}
	}
	if err := b.PublishBatch(ctx, name, msgs); err != nil {
		t.Fatal(err)
	}

	// First consumer: prefetch 8, acks held for an hour. It nacks nacked
	// once (requeued: it comes again, redelivered) and acks the rest.
	cctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	acked := 0
	all := make(chan struct{})
	err := b.Consume(cctx, broker.ConsumeSpec{Queue: name, Prefetch: 8, AckDelay: time.Hour, OnStop: func() { close(stopped) }},
		func(d *broker.Delivery) {
			body := string(d.Body)
			mu.Lock()
			defer mu.Unlock()
			seen[body]++
			if body == nacked && seen[body] == 1 {
				if err := d.Nack(true); err != nil {
					t.Errorf("nack: %v", err)
				}
				return
			}
			if err := d.Ack(); err != nil {
				t.Errorf("ack %s: %v", body, err)
			}
			if acked++; acked == n {
				close(all)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		mu.Lock()
		got, again := len(seen), seen[nacked]
		mu.Unlock()
		t.Fatalf("consumer stalled: %d of %d messages seen (%s seen %d times); held acks not sent at half the prefetch?", got, n, nacked, again)
	}
	if !b.State().Connected {
		t.Fatal("broker disconnected")
	}
	stop()
	<-stopped

	// Second consumer: the queue holds only what comes next, so its first
	// delivery is the marker, not a message the first consumer acked.
	if err := b.Publish(ctx, name, broker.Message{Key: "k", Body: []byte("marker"), Persistent: true}); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	if err := b.Consume(ctx, broker.ConsumeSpec{Queue: name}, func(d *broker.Delivery) {
		select {
		case first <- string(d.Body):
		default:
		}
		_ = d.Ack()
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-first:
		if got != "marker" {
			t.Fatalf("after the first consumer stopped, the next got %q first: held acks were not sent on stop", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("marker not delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	for body, c := range seen {
		if want := 1 + btoi(body == nacked); c != want {
			t.Errorf("%s delivered %d times, want %d", body, c, want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
