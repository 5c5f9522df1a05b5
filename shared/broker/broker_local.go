package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// LocalConfig configures the in-process broker.
type LocalConfig struct {
	// Logger receives the broker's few log lines (consumers starting and
	// stopping, at debug level). Zero value means no logging.
	Logger zerolog.Logger
}

// Local is an in-process Broker with RabbitMQ's topic-exchange semantics:
// durable topic exchanges, the default exchange "" routing by queue name,
// bounded queues with RabbitMQ's length and overflow rules, streams, prefetch,
// acknowledgements, requeueing and exclusive consumers. It is the embedded
// default for a single machine.
//
// Differences from RabbitMQ, none of which Hearth relies on: nothing
// survives the process; Durable, Quorum, Persistent and exclusive queues'
// ownership are accepted and ignored. Streams (broker_local_stream.go) are
// in memory; their retention drops single messages rather than segments
// (SegmentBytes is ignored), their offsets are consecutive, and OffsetLast
// starts at the newest message rather than at the newest chunk.
//
// Publish does not copy message bodies: a body must not be modified after
// it was published (consumers share it, read-only).
//
// Locking: Local.mu guards the exchange and queue maps; each exchange's mu
// guards its bindings; each queue's mu guards its messages and consumers.
// Locks are taken in that order and never the other way round.
type Local struct {
	log zerolog.Logger
	now func() time.Time // the clock of stream retention by age

	mu        sync.RWMutex // guards exchanges, queues and closed
	exchanges map[string]*localExchange
	queues    map[string]*localQueue
	closed    bool

	done      chan struct{} // closed by Close: consumers stop
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Broker = (*Local)(nil)

// NewLocal returns an empty in-process broker.
func NewLocal(cfg LocalConfig) *Local {
	return &Local{
		log:       cfg.Logger,
		now:       time.Now,
		exchanges: make(map[string]*localExchange),
		queues:    make(map[string]*localQueue),
		done:      make(chan struct{}),
	}
}

// DeclareExchange declares a topic exchange. Declaring it again is a no-op.
func (l *Local) DeclareExchange(ctx context.Context, name string) error {
	if err := checkExchangeName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.exchanges[name] == nil {
		l.exchanges[name] = &localExchange{
			bindings: make(map[localBinding]struct{}),
			exact:    make(map[string][]*localQueue),
		}
	}
	return nil
}

// DeclareQueue declares a queue. Declaring an existing queue with a
// different spec fails with ErrMismatch, as with RabbitMQ.
func (l *Local) DeclareQueue(ctx context.Context, spec QueueSpec) error {
	spec, err := spec.normalize()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if q := l.queues[spec.Name]; q != nil {
		if q.spec != spec {
			return fmt.Errorf("declaring queue %q: %w (have %+v, want %+v)", spec.Name, ErrMismatch, q.spec, spec)
		}
		return nil
	}
	q := &localQueue{spec: spec}
	if spec.Stream {
		q.stream = &localStream{now: l.now}
	}
	l.queues[spec.Name] = q
	return nil
}

// lookup returns the named queue and exchange; either may be nil.
func (l *Local) lookup(queue, exchange string) (*localQueue, *localExchange, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	return l.queues[queue], l.exchanges[exchange], nil
}

// Bind routes messages published to exchange with a key matching pattern to
// queue. Binding twice is a no-op.
func (l *Local) Bind(ctx context.Context, queue, exchange, pattern string) error {
	if err := checkExchangeName(exchange); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q, ex, err := l.lookup(queue, exchange)
	if err != nil {
		return err
	}
	if ex == nil {
		return fmt.Errorf("binding %q to exchange %q: %w", queue, exchange, ErrNotFound)
	}
	if q == nil {
		return fmt.Errorf("binding queue %q: %w", queue, ErrNotFound)
	}
	ex.bind(q, pattern)
	return nil
}

// Unbind removes a binding. Removing an absent binding is a no-op.
func (l *Local) Unbind(ctx context.Context, queue, exchange, pattern string) error {
	if err := checkExchangeName(exchange); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q, ex, err := l.lookup(queue, exchange)
	if err != nil {
		return err
	}
	if ex != nil && q != nil {
		ex.unbind(q, pattern)
	}
	return nil
}

// Publish routes m to every queue bound to exchange with a pattern matching
// m.Key or one of m.CC (once per queue, however many match), or, for the
// default exchange "", to the queues named m.Key and m.CC. It returns an error wrapping
// ErrNotFound for a missing exchange and ErrNacked when any target queue
// refused the message (overflow reject-publish); as with RabbitMQ, the
// queues that accepted it keep it. A message no queue matches is dropped
// and Publish returns nil, except on the default exchange, where it returns
// ErrUnroutable.
func (l *Local) Publish(ctx context.Context, exchange string, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf [8]*localQueue
	targets := buf[:0]
	l.mu.RLock()
	closed, ex := l.closed, l.exchanges[exchange]
	if exchange == "" {
		if q := l.queues[m.Key]; q != nil {
			targets = append(targets, q)
		}
		for _, k := range m.CC {
			if q := l.queues[k]; q != nil {
				targets = addQueue(targets, q)
			}
		}
	}
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if exchange != "" {
		if ex == nil {
			return fmt.Errorf("publishing to exchange %q: %w", exchange, ErrNotFound)
		}
		ex.mu.RLock()
		targets = ex.route(m.Key, targets)
		for _, k := range m.CC {
			targets = ex.route(k, targets)
		}
		ex.mu.RUnlock()
	}
	if len(targets) == 0 {
		if exchange == "" {
			return fmt.Errorf("publishing to queue %q through the default exchange: %w", m.Key, ErrUnroutable)
		}
		return nil
	}
	m.CC = nil // as RabbitMQ removes BCC: consumers never see it
	msg := &localMessage{Message: m, exchange: exchange}
	rejected := false
	for _, q := range targets {
		if !q.push(msg) {
			rejected = true
		}
	}
	if rejected {
		return fmt.Errorf("publishing to exchange %q with key %q: %w", exchange, m.Key, ErrNacked)
	}
	return nil
}

// PublishBatch publishes msgs in order, as Publish does each. As with
// RabbitMQ, where the messages after a refused one are already on their
// way, a message refused by a queue (ErrNacked) or unroutable on the default
// exchange (ErrUnroutable) does not stop the rest; any other error (a
// missing exchange, the broker closed, ctx done) does. It returns the first
// error.
func (l *Local) PublishBatch(ctx context.Context, exchange string, msgs []Message) error {
	var first error
	for i := range msgs {
		err := l.Publish(ctx, exchange, msgs[i])
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, ErrNacked) && !errors.Is(err, ErrUnroutable) {
			break
		}
	}
	return first
}

// Consume starts a consumer on queue. It fails with ErrNotFound for a
// missing queue and ErrInUse when the queue's exclusivity forbids it. The
// consumer runs until ctx is done or Close is called; its unacknowledged
// deliveries then go back to the head of the queue, marked Redelivered (see
// ConsumeSpec for its life and hooks). A consumer whose OnStart fails leaves
// the queue the same way and joins it again after a backoff.
func (l *Local) Consume(ctx context.Context, spec ConsumeSpec, h Handler) error {
	spec, err := spec.normalize()
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("consuming %q: nil handler", spec.Queue)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	q := l.queues[spec.Queue]
	if q == nil {
		return fmt.Errorf("consuming queue %q: %w", spec.Queue, ErrNotFound)
	}
	if err := spec.checkStream(q.spec.Stream); err != nil {
		return err
	}
	c := &localConsumer{
		q:    q,
		ctx:  ctx,
		done: l.done,
		spec: spec,
		h:    h,
		log:  l.log.With().Str("queue", spec.Queue).Logger(),
	}
	s := c.newSub()
	if err := q.attach(s); err != nil {
		return err
	}
	// wg.Add under mu: Close sets closed under mu before it waits.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.run(s)
	}()
	c.log.Debug().Msg("broker: consumer started")
	return nil
}

// State reports the broker as connected until it is closed.
func (l *Local) State() State {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return State{Connected: !l.closed}
}

// Close stops every consumer, waiting for running handlers to return (so it
// must not be called from a Handler), and makes every later call fail with
// ErrClosed. It is idempotent.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		l.mu.Unlock()
		l.wg.Wait()
	})
	return nil
}

// localMessage is one published message, shared read-only by every queue it
// was routed to.
type localMessage struct {
	Message
	exchange string
}

// localBinding identifies one binding of an exchange.
type localBinding struct {
	queue   *localQueue
	pattern string
}

// localExchange is a topic exchange. Patterns without wildcards live in an
// exact-match map; the others in a trie of words. Both are built at bind
// time, so routing does no parsing beyond walking the key's words.
type localExchange struct {
	mu       sync.RWMutex // guards the fields below
	bindings map[localBinding]struct{}
	exact    map[string][]*localQueue // pattern without wildcards → queues
	wild     topicNode                // patterns with '*' or '#'
}

// hasWildcard reports whether pattern has a '*' or '#' word.
func hasWildcard(pattern string) bool {
	for w := range strings.SplitSeq(pattern, ".") {
		if w == "*" || w == "#" {
			return true
		}
	}
	return false
}

// bind adds a binding; ex.mu must not be held.
func (ex *localExchange) bind(q *localQueue, pattern string) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	b := localBinding{queue: q, pattern: pattern}
	if _, ok := ex.bindings[b]; ok {
		return
	}
	ex.bindings[b] = struct{}{}
	if !hasWildcard(pattern) {
		ex.exact[pattern] = append(ex.exact[pattern], q)
		return
	}
	ex.wild.insert(pattern, q)
}

// unbind removes a binding; ex.mu must not be held.
func (ex *localExchange) unbind(q *localQueue, pattern string) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	b := localBinding{queue: q, pattern: pattern}
	if _, ok := ex.bindings[b]; !ok {
		return
	}
	delete(ex.bindings, b)
	if !hasWildcard(pattern) {
		qs := removeQueue(ex.exact[pattern], q)
		if len(qs) == 0 {
			delete(ex.exact, pattern)
		} else {
			ex.exact[pattern] = qs
		}
		return
	}
	ex.wild.remove(pattern, q)
}

// route appends to out the queues whose bindings match key, each once.
// ex.mu must be held (read).
func (ex *localExchange) route(key string, out []*localQueue) []*localQueue {
	for _, q := range ex.exact[key] {
		out = addQueue(out, q)
	}
	if !ex.wild.empty() {
		pos := 0
		if key == "" {
			pos = noWords
		}
		out = ex.wild.match(key, pos, out)
	}
	return out
}

func addQueue(qs []*localQueue, q *localQueue) []*localQueue {
	if slices.Contains(qs, q) {
		return qs
	}
	return append(qs, q)
}

func removeQueue(qs []*localQueue, q *localQueue) []*localQueue {
	if i := slices.Index(qs, q); i >= 0 {
		return slices.Delete(qs, i, i+1)
	}
	return qs
}

// noWords is the key position meaning "every word consumed". As with
// RabbitMQ, the empty key has no words (it matches "#" and "" only).
const noWords = -1

// nextWord returns the word of key starting at pos and the position of the
// word after it (noWords after the last word).
func nextWord(key string, pos int) (word string, next int) {
	if i := strings.IndexByte(key[pos:], '.'); i >= 0 {
		return key[pos : pos+i], pos + i + 1
	}
	return key[pos:], noWords
}

// topicNode is a node of a trie of binding patterns, one level per word.
type topicNode struct {
	words  map[string]*topicNode
	star   *topicNode // "*": exactly one word
	hash   *topicNode // "#": zero or more words
	queues []*localQueue
}

func (n *topicNode) empty() bool {
	return len(n.words) == 0 && n.star == nil && n.hash == nil && len(n.queues) == 0
}

func (n *topicNode) child(word string, create bool) *topicNode {
	switch word {
	case "*":
		if n.star == nil && create {
			n.star = &topicNode{}
		}
		return n.star
	case "#":
		if n.hash == nil && create {
			n.hash = &topicNode{}
		}
		return n.hash
	}
	c := n.words[word]
	if c == nil && create {
		if n.words == nil {
			n.words = make(map[string]*topicNode)
		}
		c = &topicNode{}
		n.words[word] = c
	}
	return c
}

func (n *topicNode) insert(pattern string, q *localQueue) {
	node := n
	for w := range strings.SplitSeq(pattern, ".") {
		node = node.child(w, true)
	}
	node.queues = append(node.queues, q)
}

// remove deletes q's binding with pattern (the rest of it, below n) and
// prunes the nodes it empties.
func (n *topicNode) remove(pattern string, q *localQueue) {
	w, after, more := strings.Cut(pattern, ".")
	c := n.child(w, false)
	if c == nil {
		return
	}
	if more {
		c.remove(after, q)
	} else {
		c.queues = removeQueue(c.queues, q)
	}
	if !c.empty() {
		return
	}
	switch w {
	case "*":
		n.star = nil
	case "#":
		n.hash = nil
	default:
		delete(n.words, w)
	}
}

// match appends the queues of every pattern below n that matches key from
// pos on (noWords: nothing left).
func (n *topicNode) match(key string, pos int, out []*localQueue) []*localQueue {
	if pos == noWords {
		for _, q := range n.queues {
			out = addQueue(out, q)
		}
		if n.hash != nil {
			out = n.hash.match(key, noWords, out)
		}
		return out
	}
	word, next := nextWord(key, pos)
	if c := n.words[word]; c != nil {
		out = c.match(key, next, out)
	}
	if n.star != nil {
		out = n.star.match(key, next, out)
	}
	if n.hash != nil {
		// '#' takes zero words, then one, two, ... up to all of them.
		for p := pos; ; {
			out = n.hash.match(key, p, out)
			if p == noWords {
				break
			}
			_, p = nextWord(key, p)
		}
	}
	return out
}

// localEntry is a message in a queue, or delivered and not yet settled.
type localEntry struct {
	msg         *localMessage
	redelivered bool
	tag         uint64
	offset      int64 // in a stream
}

// localQueue is a bounded FIFO queue, or a stream, with its consumers. Like
// RabbitMQ, the length bounds of a queue count only ready messages (not
// those delivered and unacknowledged), and messages go straight to a
// consumer with spare prefetch when there is one.
type localQueue struct {
	spec QueueSpec // normalized; immutable

	mu         sync.Mutex // guards the fields below, and those of stream
	ready      ring[localEntry]
	readyBytes int
	stream     *localStream // non-nil for a stream, which has no ready messages
	consumers  []*localSub
	exclusive  bool // the queue's only consumer is exclusive
	next       int  // round-robin position in consumers
	tags       uint64
}

// push adds a published message; it reports false when the queue rejects
// it (overflow reject-publish at the bound).
func (q *localQueue) push(m *localMessage) bool {
	size := len(m.Body)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stream != nil {
		q.stream.append(q.spec, m)
		q.dispatch()
		return true
	}
	if q.spec.Overflow == RejectPublish && q.overBy(1, size) {
		return false
	}
	q.ready.pushBack(localEntry{msg: m})
	q.readyBytes += size
	q.dispatch()
	if q.spec.Overflow == DropHead {
		for q.overBy(0, 0) {
			e := q.ready.popFront()
			q.readyBytes -= len(e.msg.Body)
		}
	}
	return true
}

// overBy reports whether the ready messages plus n more messages of size
// bytes exceed the queue's bounds. q.mu held.
func (q *localQueue) overBy(n, size int) bool {
	return (q.spec.MaxLength > 0 && q.ready.len()+n > q.spec.MaxLength) ||
		(q.spec.MaxLengthBytes > 0 && q.readyBytes+size > q.spec.MaxLengthBytes)
}

// requeue puts entries (in delivery order) back at the head of the queue,
// marked redelivered. Length bounds do not apply: nothing is lost. q.mu held.
func (q *localQueue) requeue(es []localEntry) {
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		e.redelivered = true
		e.tag = 0
		q.ready.pushFront(e)
		q.readyBytes += len(e.msg.Body)
	}
	q.dispatch()
}

// dispatch hands ready messages to consumers with spare prefetch, round
// robin; in a stream, every consumer reads on from its own offset. q.mu held.
func (q *localQueue) dispatch() {
	if q.stream != nil {
		q.stream.dispatch(q)
		return
	}
	for q.ready.len() > 0 {
		var s *localSub
		if q.spec.SingleActiveConsumer {
			// Only the oldest subscription receives; the others stand by.
			if len(q.consumers) > 0 && q.consumers[0].inFlight() < q.consumers[0].c.spec.Prefetch {
				s = q.consumers[0]
			}
		} else {
			s = q.pick()
		}
		if s == nil {
			return
		}
		e := q.ready.popFront()
		q.readyBytes -= len(e.msg.Body)
		q.tags++
		e.tag = q.tags
		s.give(e)
	}
}

// pick chooses the next consumer with spare prefetch, round robin. q.mu held.
func (q *localQueue) pick() *localSub {
	for i := range q.consumers {
		cand := q.consumers[(q.next+i)%len(q.consumers)]
		if cand.inFlight() < cand.c.spec.Prefetch {
			q.next = (q.next + i + 1) % len(q.consumers)
			return cand
		}
	}
	return nil
}

// attach adds a subscription, enforcing exclusivity, and places a stream
// consumer at its starting offset.
func (q *localQueue) attach(s *localSub) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	spec := s.c.spec
	if q.exclusive || (spec.Exclusive && len(q.consumers) > 0) {
		return fmt.Errorf("consuming queue %q: %w", q.spec.Name, ErrInUse)
	}
	q.exclusive = spec.Exclusive
	if q.stream != nil {
		s.offset = q.stream.start(q.spec, s.c.startOffset())
	}
	q.consumers = append(q.consumers, s)
	q.dispatch()
	return nil
}

// detach removes a subscription that ended and requeues what it had not
// settled (nothing, in a stream: its messages stay where they are).
func (q *localQueue) detach(s *localSub) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.consumers, s); i >= 0 {
		q.consumers = slices.Delete(q.consumers, i, i+1)
	}
	if s.c.spec.Exclusive {
		q.exclusive = false
	}
	s.stopped = true
	if q.stream != nil {
		s.unacked = nil
		s.inbox = ring[localEntry]{}
		return
	}
	pending := make([]localEntry, 0, len(s.unacked)+s.inbox.len())
	for _, e := range s.unacked {
		pending = append(pending, e)
	}
	if s.c.spec.AutoAck {
		// Auto-ack deliveries the handler never saw are not lost.
		for s.inbox.len() > 0 {
			pending = append(pending, s.inbox.popFront())
		}
	}
	s.unacked = nil
	s.inbox = ring[localEntry]{}
	slices.SortFunc(pending, func(a, b localEntry) int {
		switch {
		case a.tag < b.tag:
			return -1
		case a.tag > b.tag:
			return 1
		}
		return 0
	})
	q.requeue(pending)
}

// Backoff between a local consumer's attempts to subscribe again after a
// failed OnStart.
const (
	localRetryMin = 10 * time.Millisecond
	localRetryMax = time.Second
)

// localConsumer is one Consume call: a goroutine calling its handler for the
// deliveries of its current subscription, in order. It outlives the
// subscriptions that a failed OnStart drops.
type localConsumer struct {
	q    *localQueue
	ctx  context.Context
	done <-chan struct{} // closed by Local.Close
	spec ConsumeSpec
	h    Handler
	log  zerolog.Logger

	// Used by the consumer's goroutine only (and by Consume before it starts).
	delivered bool  // a stream delivery was handed to h
	last      int64 // the offset of the last one
}

// localSub is one subscription of a consumer to its queue.
type localSub struct {
	c    *localConsumer
	wake chan struct{} // capacity 1: the inbox got something

	// Guarded by c.q.mu.
	inbox   ring[localEntry]
	unacked map[uint64]localEntry // manual ack: delivered and not settled (includes inbox)
	stopped bool
	offset  int64 // stream: the next offset to deliver
}

func (c *localConsumer) newSub() *localSub {
	return &localSub{c: c, wake: make(chan struct{}, 1)}
}

// startOffset is where a stream subscription starts: just after the last
// offset delivered, if any, else where the spec says.
func (c *localConsumer) startOffset() StreamOffset {
	if c.delivered {
		return OffsetAt(c.last + 1)
	}
	return c.spec.StreamOffset
}

// inFlight counts deliveries that hold a prefetch slot. q.mu held.
func (s *localSub) inFlight() int {
	if s.c.spec.AutoAck {
		return s.inbox.len()
	}
	return len(s.unacked)
}

// give hands e to the subscription. q.mu held.
func (s *localSub) give(e localEntry) {
	if !s.c.spec.AutoAck {
		if s.unacked == nil {
			s.unacked = make(map[uint64]localEntry)
		}
		s.unacked[e.tag] = e
	}
	s.inbox.pushBack(e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run delivers until the consumer stops, subscribing again after a failed
// OnStart, then calls OnStop.
func (c *localConsumer) run(s *localSub) {
	// OnStop runs once the consumer left its queue.
	defer c.spec.stopped(c.log)
	for failures := 0; ; {
		if c.stopping() {
			c.q.detach(s)
			return
		}
		err := c.spec.start()
		if err == nil {
			c.deliver(s) // returns once the consumer stops
			c.q.detach(s)
			return
		}
		c.q.detach(s)
		failures++
		delay := backoffDelay(localRetryMin, localRetryMax, failures)
		c.log.Warn().Err(err).Int("attempt", failures).Dur("delay", delay).
			Msg("broker: consumer OnStart failed; subscribing again")
		if !c.sleep(delay) {
			return
		}
		for attempt := 1; ; attempt++ {
			s = c.newSub()
			err := c.q.attach(s)
			if err == nil {
				break
			}
			delay := backoffDelay(localRetryMin, localRetryMax, attempt)
			c.log.Warn().Err(err).Int("attempt", attempt).Dur("delay", delay).
				Msg("broker: subscribing again failed")
			if !c.sleep(delay) {
				return
			}
		}
	}
}

func (c *localConsumer) stopping() bool {
	select {
	case <-c.ctx.Done():
		return true
	case <-c.done:
		return true
	default:
		return false
	}
}

// sleep waits d; it reports false when the consumer must stop meanwhile.
func (c *localConsumer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	case <-c.done:
		return false
	}
}

// deliver calls the handler for each delivery of s until the consumer
// stops.
func (c *localConsumer) deliver(s *localSub) {
	q := c.q
	busy := false // a handler call happened since the last OnIdle
	defer func() {
		if busy {
			c.spec.OnIdle()
		}
	}()
	for !c.stopping() {
		q.mu.Lock()
		if s.inbox.len() == 0 {
			q.mu.Unlock()
			if busy {
				busy = false
				c.spec.OnIdle()
				continue
			}
			select {
			case <-s.wake:
				continue
			case <-c.ctx.Done():
				return
			case <-c.done:
				return
			}
		}
		e := s.inbox.popFront()
		q.mu.Unlock()

		d := &Delivery{
			Message:     e.msg.Message,
			Exchange:    e.msg.exchange,
			Redelivered: e.redelivered,
			Offset:      e.offset,
		}
		if q.stream != nil {
			c.delivered, c.last = true, e.offset
		}
		if !c.spec.AutoAck {
			d.ack = s
			d.tag = e.tag
		}
		c.h(d)
		busy = c.spec.OnIdle != nil
	}
}

func (s *localSub) ack(tag uint64) error {
	return s.settle(tag, false, false)
}

func (s *localSub) nack(tag uint64, requeue bool) error {
	return s.settle(tag, true, requeue)
}

func (s *localSub) settle(tag uint64, reject, requeue bool) error {
	q := s.c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := s.unacked[tag]
	if !ok {
		if s.stopped {
			return fmt.Errorf("settling delivery from %q: consumer stopped, message requeued: %w", q.spec.Name, ErrUnavailable)
		}
		return fmt.Errorf("settling delivery from %q: unknown delivery tag %d", q.spec.Name, tag)
	}
	delete(s.unacked, tag)
	if reject && requeue && q.stream == nil {
		q.requeue([]localEntry{e})
		return nil
	}
	q.dispatch()
	return nil
}

// ring is a growable FIFO ring buffer.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th element from the front (0 ≤ i < len).
func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)%len(r.buf)] }

func (r *ring[T]) grow() {
	size := 2 * len(r.buf)
	if size == 0 {
		size = 8
	}
	buf := make([]T, size)
	for i := 0; i < r.n; i++ {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}

func (r *ring[T]) pushBack(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
}

func (r *ring[T]) pushFront(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = v
	r.n++
}

func (r *ring[T]) popFront() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > 1024 {
			r.buf = nil // let a burst's buffer go
		}
	}
	return v
}
