package loadtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPResult is the amqp-baseline scenario's outcome: RabbitMQ's own
// publish → consume rate on this machine, with no Hearth process involved.
type AMQPResult struct {
	QueueType  string `json:"queue_type"`
	Persistent bool   `json:"persistent"`
	Publishers int    `json:"publishers"`
	Window     int    `json:"window"`
	Payload    int    `json:"payload"`
	Published  uint64 `json:"published"`
	Confirmed  uint64 `json:"confirmed"`
	Nacked     uint64 `json:"nacked"`
	Consumed   uint64 `json:"consumed"`
	// Seconds is the publishing time; the rates are over it.
	Seconds      float64 `json:"seconds"`
	PublishRate  float64 `json:"confirmed_per_s"`
	ConsumeRate  float64 `json:"consumed_per_s"`
	ConfirmP99Ms float64 `json:"confirm_p99_ms"`
}

// runAMQP publishes to a temporary topic exchange bound to a temporary
// queue for Duration, from AMQPPublishers confirm-mode channels with at
// most AMQPWindow unconfirmed publishes each, and consumes with auto-ack on
// a second connection. The body starts with the send time, so the result
// has an end-to-end latency histogram like the WebSocket scenarios.
func (r *Runner) runAMQP(ctx context.Context, res *Result) error {
	cfg := &r.cfg
	c := newCoord(r, res)
	c.t0 = time.Now().Truncate(time.Millisecond)
	c.tool = &procTrack{w: watched{Name: "hearth-load"}, pids: []int{os.Getpid()}, samples: make(map[int]procSample)}
	for _, p := range append(c.procs, c.tool) {
		c.sample(p, 0)
	}
	c.sampleMachine(0)
	name := "hearth-load.baseline." + res.RunID
	ar := &AMQPResult{QueueType: cfg.AMQPQueueType, Persistent: cfg.AMQPPersistent, Publishers: cfg.AMQPPublishers, Window: cfg.AMQPWindow, Payload: cfg.Payload}
	res.AMQP = ar

	consConn, err := amqp.DialConfig(cfg.AMQPURL, amqp.Config{Properties: amqp.Table{"connection_name": "hearth-load consumer"}})
	if err != nil {
		return fmt.Errorf("loadtest: amqp dial: %w", err)
	}
	defer consConn.Close()
	pubConn, err := amqp.DialConfig(cfg.AMQPURL, amqp.Config{Properties: amqp.Table{"connection_name": "hearth-load publisher"}})
	if err != nil {
		return fmt.Errorf("loadtest: amqp dial: %w", err)
	}
	defer pubConn.Close()
	ch, err := consConn.Channel()
	if err != nil {
		return err
	}
	args := amqp.Table{"x-max-length": int64(1_000_000), "x-overflow": "reject-publish", "x-queue-type": cfg.AMQPQueueType}
	quorum := cfg.AMQPQueueType == "quorum"
	if err := ch.ExchangeDeclare(name, "topic", false, true, false, false, nil); err != nil {
		return fmt.Errorf("loadtest: declaring exchange: %w", err)
	}
	if _, err := ch.QueueDeclare(name, quorum, !quorum, false, false, args); err != nil {
		return fmt.Errorf("loadtest: declaring queue: %w", err)
	}
	defer func() {
		if dch, err := consConn.Channel(); err == nil {
			_, _ = dch.QueueDelete(name, false, false, false)
			_ = dch.ExchangeDelete(name, false, false)
			_ = dch.Close()
		}
	}()
	if err := ch.QueueBind(name, "bench.#", name, false, nil); err != nil {
		return fmt.Errorf("loadtest: binding queue: %w", err)
	}
	if err := ch.Qos(2000, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(name, "hearth-load", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("loadtest: consuming: %w", err)
	}

	e2e, confirm := newRecorder(), newRecorder()
	var published, confirmed, nacked, consumed atomic.Uint64
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range deliveries {
			consumed.Add(1)
			if len(d.Body) >= 8 {
				sent := int64(binary.BigEndian.Uint64(d.Body))
				e2e.record(0, (time.Now().UnixNano()-sent)/1000)
			}
		}
	}()

	c.logf("amqp-baseline: %s queue, %d publishers × window %d, persistent=%v, %d-byte bodies, %v",
		cfg.AMQPQueueType, cfg.AMQPPublishers, cfg.AMQPWindow, cfg.AMQPPersistent, cfg.Payload, cfg.Duration)
	c.stage = stageRun
	c.startAt = c.tickTime(1)
	stopAt := c.startAt.Add(cfg.Duration)
	pubCtx, stopPub := context.WithDeadline(ctx, stopAt)
	defer stopPub()
	var wg sync.WaitGroup
	var pubErr error
	var errOnce sync.Once
	for i := 0; i < cfg.AMQPPublishers; i++ {
		pch, err := pubConn.Channel()
		if err != nil {
			return err
		}
		if err := pch.Confirm(false); err != nil {
			return err
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer pch.Close()
			sleepCtx(ctx, time.Until(c.startAt))
			err := amqpPublish(pubCtx, ctx, pch, name, cfg, i, confirm, &published, &confirmed, &nacked)
			if err != nil {
				errOnce.Do(func() { pubErr = err })
			}
		}(i)
	}
	pubDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(pubDone)
	}()

	// Ticks: sample, record a point, print progress; then drain.
	var last counters
	drainEnd := time.Time{}
	for k := 1; ; k++ {
		if !sleepCtx(ctx, time.Until(c.tickTime(k))) {
			stopPub()
			break
		}
		for _, p := range append(c.procs, c.tool) {
			c.sample(p, k)
		}
		c.sampleMachine(k)
		cur := counters{Sent: published.Load(), Acked: confirmed.Load() + nacked.Load(), Delivered: consumed.Load(), ErrorFrames: nacked.Load()}
		t := &tickAgg{c: cur.sub(last), stage: c.stage}
		last = cur
		if h := e2e.swap(); h != nil {
			t.e2e = h
			c.addHist("e2e/0", h)
		}
		if h := confirm.swap(); h != nil {
			t.ack = h
			c.addHist("ack/0", h)
		}
		c.ticks[k] = t
		if !cfg.Quiet {
			p := c.point(k)
			fmt.Fprintln(r.stderr, progressLine(p.T, t.stage, &p, cur, p.CPU))
		}
		select {
		case <-pubDone:
			if drainEnd.IsZero() {
				c.stage = stageDrain
				drainEnd = time.Now().Add(5 * time.Second)
			}
		default:
		}
		if !drainEnd.IsZero() && (consumed.Load() >= confirmed.Load() || time.Now().After(drainEnd) || ctx.Err() != nil) {
			break
		}
	}
	_ = ch.Cancel("hearth-load", false)
	select {
	case <-consumerDone:
	case <-time.After(5 * time.Second):
	}
	ar.Published, ar.Confirmed, ar.Nacked, ar.Consumed = published.Load(), confirmed.Load(), nacked.Load(), consumed.Load()
	ar.Seconds = cfg.Duration.Seconds()
	ar.PublishRate = float64(ar.Confirmed) / ar.Seconds
	ar.ConsumeRate = float64(ar.Consumed) / ar.Seconds
	c.finishResult()
	ar.ConfirmP99Ms = res.Latency["ack"].P99
	res.Totals = last
	if pubErr != nil {
		return pubErr
	}
	return ctx.Err()
}

// amqpPublish publishes on ch until pubCtx ends, keeping at most
// cfg.AMQPWindow publishes unconfirmed, then waits (bounded by ctx) for
// the rest of the confirms.
func amqpPublish(pubCtx, ctx context.Context, ch *amqp.Channel, exchange string, cfg *Config, i int,
	confirm *recorder, published, confirmed, nacked *atomic.Uint64) error {
	type pending struct {
		dc   *amqp.DeferredConfirmation
		sent int64
	}
	window := make([]pending, 0, cfg.AMQPWindow)
	settle := func(p pending, wctx context.Context) error {
		select {
		case <-p.dc.Done():
		case <-wctx.Done():
			return wctx.Err()
		}
		if p.dc.Acked() {
			confirmed.Add(1)
		} else {
			nacked.Add(1)
		}
		confirm.record(i, (time.Now().UnixNano()-p.sent)/1000)
		return nil
	}
	mode := amqp.Transient
	if cfg.AMQPPersistent {
		mode = amqp.Persistent
	}
	body := make([]byte, cfg.Payload)
	for pubCtx.Err() == nil {
		if len(window) == cfg.AMQPWindow {
			if err := settle(window[0], ctx); err != nil {
				return err
			}
			window = window[1:]
		}
		sent := time.Now().UnixNano()
		binary.BigEndian.PutUint64(body, uint64(sent))
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "bench.k", false, false,
			amqp.Publishing{Body: append([]byte(nil), body...), DeliveryMode: mode})
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				break
			}
			return fmt.Errorf("loadtest: publishing: %w", err)
		}
		published.Add(1)
		window = append(window, pending{dc, sent})
	}
	drainCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, p := range window {
		if err := settle(p, drainCtx); err != nil {
			return fmt.Errorf("loadtest: waiting for confirms: %w", err)
		}
	}
	return nil
}
