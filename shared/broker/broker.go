// Package broker is Hearth's message-broker abstraction: topic exchanges,
// bounded queues, append-only streams, bindings and consumers, with two
// implementations that behave the same way:
//
//   - AMQP (broker_amqp.go): RabbitMQ through amqp091-go, the scale-out path.
//   - Local (broker_local.go): an in-process broker with RabbitMQ's topic
//     semantics, the embedded default for a single machine.
//
// The behaviour suite in package brokertest runs against both.
//
// Concurrency: every method of a Broker is safe for concurrent use. Handlers
// passed to Consume are called from one goroutine per consumer, in delivery
// order, one at a time; the consumer's OnStart and OnStop hooks run on that
// goroutine too. A consumer holds its subscription (and the exclusivity of
// an exclusive consumer) until the handler call in progress when its ctx
// ends has returned.
//
// Publishing to the default exchange "" routes by queue name: the message
// goes to the queue named by its key, and Publish (or PublishBatch) fails
// with ErrUnroutable when it reaches none. It is how Hearth appends to a
// stream.
package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Sentinel errors. Implementations wrap them with context.
var (
	// ErrUnavailable means the broker is not connected right now; the caller
	// may retry later. Topology already declared is restored on reconnect.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrNacked means the broker refused a publish (for example a full queue
	// with overflow "reject-publish").
	ErrNacked = errors.New("broker: publish not confirmed")
	// ErrUnroutable means a publish to the default exchange "" reached no
	// queue: none has the name given as key, or (RabbitMQ) it is not
	// available right now, as a stream is for a moment after a node
	// restart. The message was not stored; the caller may retry.
	ErrUnroutable = errors.New("broker: message unroutable")
	// ErrClosed means the broker was closed by its owner.
	ErrClosed = errors.New("broker: closed")
	// ErrNotFound means a queue or exchange named in a call does not exist.
	ErrNotFound = errors.New("broker: not found")
	// ErrInUse means a queue is used exclusively by someone else: a second
	// consumer on a queue with an exclusive consumer, an exclusive consumer on
	// a queue that has consumers, or (RabbitMQ) an exclusive queue owned by
	// another connection.
	ErrInUse = errors.New("broker: queue in exclusive use")
	// ErrMismatch means a queue or exchange already exists with different
	// properties (RabbitMQ's PRECONDITION_FAILED, "inequivalent arg").
	ErrMismatch = errors.New("broker: declaration differs from the existing one")
)

// errSettled is returned by a second Ack or Nack of the same delivery. The
// second call never reaches the broker: RabbitMQ would close the channel for
// an unknown delivery tag, dropping every other unacknowledged delivery.
var errSettled = errors.New("broker: delivery already acknowledged or rejected")

// Overflow is a queue's policy when it reaches its length limit.
type Overflow string

// Overflow policies, as RabbitMQ names them.
const (
	// DropHead discards the oldest message to make room.
	DropHead Overflow = "drop-head"
	// RejectPublish refuses the new message; the publisher gets ErrNacked.
	RejectPublish Overflow = "reject-publish"
)

// QueueSpec describes a queue. Declaring the same spec twice is a no-op;
// declaring an existing queue with a different spec fails with ErrMismatch.
//
// A queue is either an ordinary queue, from which acknowledged messages are
// removed, or (Stream) an append-only log that consumers read from an offset
// of their choosing, each at its own pace, and that only retention shortens.
type QueueSpec struct {
	// Name of the queue. Required.
	Name string
	// Durable queues survive a broker restart (RabbitMQ only).
	Durable bool
	// Exclusive queues belong to the connection that declared them and are
	// deleted when it closes; the AMQP broker re-declares them, with their
	// bindings, after a reconnect. Not for streams.
	Exclusive bool
	// Quorum selects a replicated quorum queue (RabbitMQ only; implies
	// Durable). Not for streams.
	Quorum bool
	// SingleActiveConsumer delivers to one consumer at a time, the oldest
	// subscribed; the others stand by and the next takes over, with the
	// unacknowledged messages of the previous one returned in order, when
	// it stops (x-single-active-consumer). Unlike exclusive consumers,
	// which RabbitMQ 3.10 does not enforce on quorum queues, it works for
	// every queue type. Not for streams.
	SingleActiveConsumer bool
	// Stream declares a stream (RabbitMQ's x-queue-type "stream"; implies
	// Durable): an append-only log whose messages carry increasing offsets
	// (Delivery.Offset) and are not removed by acknowledgement, only by
	// retention (MaxLengthBytes, MaxAge). A stream cannot be Exclusive or
	// Quorum, and has no MaxLength or Overflow. Its consumers need manual
	// acknowledgement and choose where they start (ConsumeSpec.StreamOffset).
	Stream bool
	// MaxLength bounds the queue in messages. Zero value means unbounded,
	// which Hearth never uses for ordinary queues. Not for streams.
	MaxLength int
	// MaxLengthBytes bounds the queue in body bytes. For a stream it is the
	// retention by size: RabbitMQ deletes whole segments (SegmentBytes), the
	// oldest first, once the stream exceeds it, so a stream holds somewhat
	// more; the local broker drops single messages, the oldest first, but
	// never the newest. Zero value means no byte bound.
	MaxLengthBytes int
	// Overflow is the policy at the bound. Zero value means DropHead for
	// ordinary queues; streams have none.
	Overflow Overflow
	// MaxAge is a stream's retention by age (RabbitMQ's x-max-age, in whole
	// seconds, rounded up): messages older than that are dropped, by segment
	// in RabbitMQ, and never the newest message in the local broker. Zero
	// value means no age limit. Streams only.
	MaxAge time.Duration
	// SegmentBytes is the size of a stream's segment files, the unit of
	// RabbitMQ's retention (x-stream-max-segment-size-bytes). The local
	// broker records it and otherwise ignores it. Keep MaxLengthBytes several
	// segments large: with a byte bound of two segments, RabbitMQ 3.10 kept
	// no message at all, not even the newest. Keep segments from being tiny
	// too: RabbitMQ evaluates retention at every new segment, and deleting a
	// stream while evaluations are queued crashes its retention process
	// (osiris_retention, missing_file), which upsets every stream of the
	// node for a moment. Zero value means RabbitMQ's default (500 MB).
	// Streams only.
	SegmentBytes int
}

// Message is what is published and what a consumer receives.
type Message struct {
	// Key is the routing key.
	Key string
	// Body is the payload. Receivers must not modify it.
	Body []byte
	// Persistent asks the broker to write the message to disk (delivery mode 2).
	Persistent bool
	// Type is the AMQP "type" property; Hearth uses it on messages addressed
	// to one edge to tell the edge what the body is (see PROTOCOL.md).
	Type string
	// Conn is the "hearth-conn" header: the connection a message is for.
	Conn string
	// Room is the "hearth-room" header: the room a control message concerns.
	Room string
	// CC are further routing keys on the same exchange: the message goes to
	// every queue Key or any of them matches, once per queue. RabbitMQ's
	// sender-selected distribution: sent as the BCC header, which RabbitMQ
	// removes before delivery, so consumers never see CC.
	CC []string
	// Reply is the "hearth-reply" header: a client frame for the
	// connection Conn that rides with a room broadcast (PROTOCOL.md §9.4).
	Reply []byte
}

// Delivery is a received message. For consumers with manual
// acknowledgement, exactly one of Ack or Nack must be called.
type Delivery struct {
	Message
	// Exchange the message was published to ("" for the default exchange).
	Exchange string
	// Redelivered is true when the broker delivered the message before.
	// Always false for stream deliveries.
	Redelivered bool
	// Offset is a stream delivery's position in the stream (RabbitMQ's
	// x-stream-offset header). Offsets increase with every message but
	// need not be consecutive: RabbitMQ gives offsets to records of its own
	// (at the start of each segment, for example) that are never delivered.
	// Zero for deliveries from other queues.
	Offset int64

	ack     acker
	tag     uint64
	settled uint32 // set by the first Ack or Nack (atomic)
}

type acker interface {
	ack(tag uint64) error
	nack(tag uint64, requeue bool) error
}

// Ack acknowledges the delivery. It is a no-op for auto-ack consumers.
// It returns an error wrapping ErrUnavailable when the consumer that received
// the delivery is gone (stopped, or its channel was lost in a reconnect): the
// broker then delivers the message again. Acknowledging twice returns an
// error and does nothing.
//
// On a stream, acknowledging removes nothing: it only frees the prefetch
// slot the delivery held, so that the consumer reads on.
func (d *Delivery) Ack() error {
	if d.ack == nil {
		return nil
	}
	if !atomic.CompareAndSwapUint32(&d.settled, 0, 1) {
		return errSettled
	}
	return d.ack.ack(d.tag)
}

// Nack rejects the delivery, returning it to its queue when requeue is true
// (it is then delivered again with Redelivered set) and dropping it
// otherwise. It is a no-op for auto-ack consumers and has the same error
// cases as Ack.
//
// On a stream, Nack is Ack whatever requeue says: the message stays in the
// stream, and this consumer reads on. (RabbitMQ answers basic.nack and
// basic.reject on a stream with a connection error, so the AMQP broker
// sends basic.ack.)
func (d *Delivery) Nack(requeue bool) error {
	if d.ack == nil {
		return nil
	}
	if !atomic.CompareAndSwapUint32(&d.settled, 0, 1) {
		return errSettled
	}
	return d.ack.nack(d.tag, requeue)
}

// ConsumeSpec describes a consumer.
//
// A consumer's life, on its own goroutine: it subscribes (the first time
// within Consume), calls OnStart, then the handler for each delivery, one at
// a time; after a lost connection (AMQP) or a failed OnStart it subscribes
// again and calls OnStart again; once its ctx is done or the broker is
// closed, it lets the handler call in progress return, unsubscribes (AMQP:
// closes its channel, so RabbitMQ requeues what it had not acknowledged) and
// calls OnStop. At most one handler call is in flight; after ctx is
// cancelled the subscription ends (AMQP: the channel is closed) once the
// current handler returns, so exclusivity moves to another consumer only
// after that, and OnStop tells when it has.
type ConsumeSpec struct {
	// Queue to consume from. Required.
	Queue string
	// AutoAck delivers without acknowledgement (at-most-once). Not for
	// streams.
	AutoAck bool
	// Exclusive asks to be the queue's only consumer: Consume fails with
	// ErrInUse while the queue has another consumer, and others fail while
	// this one is subscribed.
	Exclusive bool
	// Prefetch bounds unacknowledged deliveries. On a stream it is the
	// consumer's credit: it reads on as it acknowledges. Zero value means 256.
	Prefetch int
	// AckDelay lets the AMQP broker hold a queue consumer's acknowledgements
	// back for up to this long and send those that are in order as one
	// multiple ack: on a quorum queue every ack sent is a Raft command of
	// its own (a log write, fsync'd), so a consumer that gets a few messages
	// per second per queue costs RabbitMQ much less when its acks travel
	// together. Held acks are sent at once when half the prefetch is held,
	// before any Nack of the same consumer, and before the consumer stops;
	// a held ack that never reached RabbitMQ (the connection was lost
	// first) is a delivery RabbitMQ delivers again, with Redelivered set,
	// exactly as if it had not been acknowledged. Ack cannot report that
	// loss: it returns nil once it holds the ack. Zero value sends every ack
	// at once. Ignored by the local broker and for streams and AutoAck.
	AckDelay time.Duration
	// StreamOffset is where a stream consumer starts reading: OffsetFirst,
	// OffsetLast, OffsetNext or OffsetAt(n). After a reconnect or a failed
	// OnStart, a stream consumer that delivered something resumes just after
	// the last offset it delivered, so its handler sees each message once.
	// Setting it for a queue that is not a stream is an error (AMQP: when
	// this broker declared the queue; RabbitMQ itself ignores it). Set it
	// when consuming a stream this broker did not declare, so that the AMQP
	// broker knows it is one. Zero value means OffsetNext, RabbitMQ's
	// default.
	StreamOffset StreamOffset
	// OnStart, if set, is called on the consumer's goroutine each time the
	// consumer has subscribed (after the first subscription and after every
	// new one following a reconnect), before the first delivery of that
	// subscription is handled; an exclusive consumer is then already the
	// queue's only consumer. When it returns an error the subscription is
	// dropped (RabbitMQ requeues whatever it had sent) and made again after
	// a backoff (the reconnect backoff with AMQP; 10ms to 1s locally), with
	// OnStart called again; an exclusive consumer whose queue another
	// consumer took meanwhile keeps trying (ErrInUse) until its ctx ends.
	// Hearth's hubs rebuild a shard's state here: after a reconnect another
	// hub may have owned the shard meanwhile.
	OnStart func() error
	// OnStop, if set, is called once on the consumer's goroutine when the
	// consumer has stopped for good (ctx done or the broker closed): after
	// the last handler call returned and the subscription ended (AMQP: its
	// channel closed), so that an exclusive consumer's queue is free for
	// another. It is called if and only if Consume returned nil.
	OnStop func()
	// OnIdle, if set, is called on the consumer's goroutine after one or
	// more handler calls when no further delivery is waiting, and before
	// the subscription ends (ctx done, broker closed, connection lost) if
	// a handler call happened since the last OnIdle. A handler can collect
	// the deliveries that arrive together and finish them here as one
	// batch — write to many sockets once, commit many records at once —
	// without adding delay when deliveries arrive one by one. Whether a
	// delivery is "waiting" is best effort: a burst may be split into
	// several batches, never held back.
	OnIdle func()
}

// StreamOffset is where a stream consumer starts reading (ConsumeSpec). The
// zero value means "not set".
type StreamOffset struct {
	kind offsetKind
	n    int64 // offsetAt's offset
}

type offsetKind uint8

const (
	offsetUnset offsetKind = iota
	offsetFirst
	offsetLast
	offsetNext
	offsetAt
)

// Stream starting points.
var (
	// OffsetFirst starts at the oldest message the stream retains.
	OffsetFirst = StreamOffset{kind: offsetFirst}
	// OffsetLast starts at the newest message. (RabbitMQ starts at the
	// beginning of its newest chunk, a batch of messages written together,
	// so a consumer may see a few messages before the newest; the local
	// broker starts at the newest message.)
	OffsetLast = StreamOffset{kind: offsetLast}
	// OffsetNext delivers only messages appended after the consumer
	// subscribed.
	OffsetNext = StreamOffset{kind: offsetNext}
)

// OffsetAt starts at offset n (a Delivery.Offset), or at the oldest message
// retained when n is older, or waits for n when it is not written yet. n
// must not be negative.
func OffsetAt(n int64) StreamOffset {
	return StreamOffset{kind: offsetAt, n: n}
}

// IsZero reports whether o is the zero value (not set).
func (o StreamOffset) IsZero() bool { return o.kind == offsetUnset }

// String returns "first", "last", "next", the offset in decimal, or "" for
// the zero value.
func (o StreamOffset) String() string {
	switch o.kind {
	case offsetFirst:
		return "first"
	case offsetLast:
		return "last"
	case offsetNext:
		return "next"
	case offsetAt:
		return strconv.FormatInt(o.n, 10)
	}
	return ""
}

// Handler processes one delivery. It runs on the consumer's goroutine;
// deliveries of one consumer are handled one at a time, in order.
type Handler func(d *Delivery)

// State is a snapshot of the broker connection, for readiness checks.
type State struct {
	// Connected is true while the broker can publish and consume.
	Connected bool
	// Blocked is true while RabbitMQ has blocked publishing (connection.blocked,
	// for example on a memory or disk alarm).
	Blocked bool
}

// Broker is the interface edges and hubs use. Topology calls are recorded and
// restored after every reconnect, so callers declare once.
type Broker interface {
	// DeclareExchange declares a durable topic exchange.
	DeclareExchange(ctx context.Context, name string) error
	// DeclareQueue declares a queue.
	DeclareQueue(ctx context.Context, spec QueueSpec) error
	// Bind routes messages published to exchange with a key matching pattern
	// ("*" one word, "#" zero or more words) to queue.
	Bind(ctx context.Context, queue, exchange, pattern string) error
	// Unbind removes a binding made by Bind. Removing an absent binding is a no-op.
	Unbind(ctx context.Context, queue, exchange, pattern string) error
	// Publish sends m to exchange and returns once the broker has confirmed
	// it (publisher confirms), or with ErrNacked, ErrUnavailable or ctx's
	// error. The default exchange "" delivers to the queue named m.Key, or
	// fails with ErrUnroutable; other exchanges drop what matches no binding.
	Publish(ctx context.Context, exchange string, m Message) error
	// PublishBatch sends msgs to exchange, in order, and returns once the
	// broker has confirmed every one of them; each message is routed as
	// Publish routes it. The messages reach each queue in the order given
	// (other publishers' messages may come between them). The AMQP broker
	// sends them one after another on its publish channel without waiting
	// in between, so a batch costs about one round trip, not one per
	// message. The error is that of the first message, in msgs' order, that
	// failed, with Publish's sentinels (ErrNacked, ErrUnroutable on the
	// default exchange, ErrUnavailable, ErrNotFound) or ctx's error. On an
	// error, messages other than the failed one may or may not have been
	// published: those after it usually were, having been sent before its
	// answer came, so a caller that publishes the batch again must tolerate
	// duplicates. An empty batch is a no-op and returns nil.
	PublishBatch(ctx context.Context, exchange string, msgs []Message) error
	// Consume starts a consumer that calls h for each delivery until ctx is
	// done or Close is called. It survives reconnects: the consumer is
	// re-established after the broker comes back. See ConsumeSpec for its
	// life and hooks.
	Consume(ctx context.Context, spec ConsumeSpec, h Handler) error
	// State reports the connection state.
	State() State
	// Close stops consumers and closes connections. It is idempotent and
	// waits for the goroutines the broker started.
	Close() error
}

// normalize validates s and fills in its defaults: Overflow DropHead for
// ordinary queues, Durable for quorum queues and streams, MaxAge rounded up
// to whole seconds.
func (s QueueSpec) normalize() (QueueSpec, error) {
	if s.Name == "" {
		return s, errors.New("broker: queue name is empty")
	}
	if s.MaxLength < 0 || s.MaxLengthBytes < 0 || s.MaxAge < 0 || s.SegmentBytes < 0 {
		return s, fmt.Errorf("broker: queue %q: negative length, age or segment bound", s.Name)
	}
	if s.Stream {
		switch {
		case s.Exclusive:
			return s, fmt.Errorf("broker: stream %q cannot be exclusive", s.Name)
		case s.Quorum:
			return s, fmt.Errorf("broker: stream %q cannot be a quorum queue", s.Name)
		case s.MaxLength != 0:
			return s, fmt.Errorf("broker: stream %q cannot have MaxLength (use MaxLengthBytes or MaxAge)", s.Name)
		case s.Overflow != "":
			return s, fmt.Errorf("broker: stream %q cannot have an overflow policy", s.Name)
		case s.SingleActiveConsumer:
			return s, fmt.Errorf("broker: stream %q cannot be single-active-consumer", s.Name)
		}
		s.Durable = true
		if r := s.MaxAge % time.Second; r != 0 {
			s.MaxAge += time.Second - r
		}
		return s, nil
	}
	if s.MaxAge != 0 || s.SegmentBytes != 0 {
		return s, fmt.Errorf("broker: queue %q: MaxAge and SegmentBytes are for streams only", s.Name)
	}
	switch s.Overflow {
	case "":
		s.Overflow = DropHead
	case DropHead, RejectPublish:
	default:
		return s, fmt.Errorf("broker: queue %q: unknown overflow policy %q", s.Name, s.Overflow)
	}
	if s.Quorum {
		if s.Exclusive {
			return s, fmt.Errorf("broker: queue %q: a quorum queue cannot be exclusive", s.Name)
		}
		s.Durable = true
	}
	return s, nil
}

// normalize validates s and fills in its defaults.
// start calls OnStart, if set.
func (s *ConsumeSpec) start() error {
	if s.OnStart == nil {
		return nil
	}
	return s.OnStart()
}

// stopped calls OnStop, if set, once a consumer has stopped for good.
func (s *ConsumeSpec) stopped(log zerolog.Logger) {
	log.Debug().Msg("broker: consumer stopped")
	if s.OnStop != nil {
		s.OnStop()
	}
}

func (s ConsumeSpec) normalize() (ConsumeSpec, error) {
	if s.Queue == "" {
		return s, errors.New("broker: consume: queue name is empty")
	}
	if s.Prefetch < 0 {
		return s, fmt.Errorf("broker: consume %q: negative prefetch", s.Queue)
	}
	if s.Prefetch == 0 {
		s.Prefetch = defaultPrefetch
	}
	if s.AckDelay < 0 {
		return s, fmt.Errorf("broker: consume %q: negative AckDelay %v", s.Queue, s.AckDelay)
	}
	if s.StreamOffset.kind == offsetAt && s.StreamOffset.n < 0 {
		return s, fmt.Errorf("broker: consume %q: negative stream offset %d", s.Queue, s.StreamOffset.n)
	}
	if !s.StreamOffset.IsZero() && s.AutoAck {
		return s, errStreamAutoAck(s.Queue)
	}
	return s, nil
}

// checkStream checks s against the type of its queue, once known: a stream
// consumer needs manual acknowledgement (RabbitMQ refuses an auto-ack one
// with a connection error, which would drop every consumer of the
// connection), and only stream consumers have a StreamOffset.
func (s ConsumeSpec) checkStream(stream bool) error {
	if stream && s.AutoAck {
		return errStreamAutoAck(s.Queue)
	}
	if !stream && !s.StreamOffset.IsZero() {
		return fmt.Errorf("broker: consume %q: StreamOffset %s is set but the queue is not a stream", s.Queue, s.StreamOffset)
	}
	return nil
}

func errStreamAutoAck(queue string) error {
	return fmt.Errorf("broker: consume %q: a stream consumer needs manual acknowledgement (AutoAck false) and a prefetch", queue)
}

// defaultPrefetch is ConsumeSpec.Prefetch's zero-value meaning.
const defaultPrefetch = 256

// backoffDelay is the capped full-jitter delay before attempt n (n ≥ 1): a
// random time in (0, min(ceiling, base·2ⁿ⁻¹)].
func backoffDelay(base, ceiling time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return time.Duration(rand.Int64N(int64(d))) + 1
}

func checkExchangeName(name string) error {
	if name == "" {
		return errors.New("broker: exchange name is empty (the default exchange cannot be declared or bound)")
	}
	return nil
}
