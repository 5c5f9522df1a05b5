// Package broker is Hearth's message-broker abstraction: topic exchanges,
// bounded queues, bindings and consumers, with two implementations that
// behave the same way:
//
//   - AMQP (broker_amqp.go): RabbitMQ through amqp091-go, the scale-out path.
//   - Local (broker_local.go): an in-process broker with RabbitMQ's topic
//     semantics, the embedded default for a single machine.
//
// The behaviour suite in package brokertest runs against both.
//
// Concurrency: every method of a Broker is safe for concurrent use. Handlers
// passed to Consume are called from one goroutine per consumer, in delivery
// order.
package broker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// Sentinel errors. Implementations wrap them with context.
var (
	// ErrUnavailable means the broker is not connected right now; the caller
	// may retry later. Topology already declared is restored on reconnect.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrNacked means the broker refused a publish (for example a full queue
	// with overflow "reject-publish").
	ErrNacked = errors.New("broker: publish not confirmed")
	// ErrUnroutable means a mandatory publish matched no queue.
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
type QueueSpec struct {
	// Name of the queue. Required.
	Name string
	// Durable queues survive a broker restart (RabbitMQ only).
	Durable bool
	// Exclusive queues belong to the connection that declared them and are
	// deleted when it closes; the AMQP broker re-declares them, with their
	// bindings, after a reconnect.
	Exclusive bool
	// Quorum selects a replicated quorum queue (RabbitMQ only; implies Durable).
	Quorum bool
	// MaxLength bounds the queue in messages. Zero value means unbounded,
	// which Hearth never uses.
	MaxLength int
	// MaxLengthBytes bounds the queue in body bytes. Zero value means no byte bound.
	MaxLengthBytes int
	// Overflow is the policy at the bound. Zero value means DropHead.
	Overflow Overflow
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
}

// Delivery is a received message. For consumers with manual
// acknowledgement, exactly one of Ack or Nack must be called.
type Delivery struct {
	Message
	// Exchange the message was published to.
	Exchange string
	// Redelivered is true when the broker delivered the message before.
	Redelivered bool

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
type ConsumeSpec struct {
	// Queue to consume from. Required.
	Queue string
	// AutoAck delivers without acknowledgement (at-most-once).
	AutoAck bool
	// Exclusive asks to be the queue's only consumer.
	Exclusive bool
	// Prefetch bounds unacknowledged deliveries. Zero value means 256.
	Prefetch int
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
	// it (publisher confirms), or with ErrNacked, ErrUnavailable or ctx's error.
	Publish(ctx context.Context, exchange string, m Message) error
	// Consume starts a consumer that calls h for each delivery until ctx is
	// done or Close is called. It survives reconnects: the consumer is
	// re-established after the broker comes back.
	Consume(ctx context.Context, spec ConsumeSpec, h Handler) error
	// State reports the connection state.
	State() State
	// Close stops consumers and closes connections. It is idempotent and
	// waits for the goroutines the broker started.
	Close() error
}

// normalize validates s and fills in its defaults: Overflow DropHead, and
// Durable for quorum queues.
func (s QueueSpec) normalize() (QueueSpec, error) {
	if s.Name == "" {
		return s, errors.New("broker: queue name is empty")
	}
	if s.MaxLength < 0 || s.MaxLengthBytes < 0 {
		return s, fmt.Errorf("broker: queue %q: negative length bound", s.Name)
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
	return s, nil
}

// defaultPrefetch is ConsumeSpec.Prefetch's zero-value meaning.
const defaultPrefetch = 256

func checkExchangeName(name string) error {
	if name == "" {
		return errors.New("broker: exchange name is empty (the default exchange cannot be declared or bound)")
	}
	return nil
}
