package hub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/broker"
)

// stateLog keeps each shard's records in a broker stream,
// "hearth.state.<n>": appends are confirmed before they take effect, and a
// new owner replays the stream to rebuild the shard.
type stateLog struct {
	log      zerolog.Logger
	b        broker.Broker
	maxBytes int
	segment  int
}

func stateQueue(n int) string { return "hearth.state." + strconv.Itoa(n) }

func (l *stateLog) declare(ctx context.Context, n int) error {
	return l.b.DeclareQueue(ctx, broker.QueueSpec{
		Name:           stateQueue(n),
		Stream:         true,
		MaxLengthBytes: l.maxBytes,
		SegmentBytes:   l.segment,
	})
}

// append makes rec durable in shard n's stream.
func (l *stateLog) append(ctx context.Context, n int, rec *record) error {
	body, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	msg := [1]broker.Message{{Key: stateQueue(n), Body: body, Persistent: true}}
	return l.appendBatch(ctx, n, msg[:])
}

// appendBatch makes msgs, encoded records addressed to shard n's stream,
// durable there, in order, with one confirmed publish.
//
// The default exchange routes by queue name. Right after a broker restart
// RabbitMQ briefly returns stream publishes as unroutable: the batch is
// published again, whole, within ctx. The stream may then hold a part of
// it twice, which replays the same: applying again records that were
// applied just before, in the same order, changes nothing (a message's seq
// is already taken, a member already joined or gone, a read position
// already reached).
func (l *stateLog) appendBatch(ctx context.Context, n int, msgs []broker.Message) error {
	for attempt := 0; ; attempt++ {
		err := l.b.PublishBatch(ctx, "", msgs)
		if err == nil {
			return nil
		}
		if !errors.Is(err, broker.ErrUnroutable) || attempt >= 20 {
			return fmt.Errorf("appending %d records to %s: %w", len(msgs), stateQueue(n), err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("appending %d records to %s: %w", len(msgs), stateQueue(n), err)
		}
	}
}

// replay reads shard n's stream from its oldest retained record up to a
// marker it appends first, so it stops exactly at the end as of now.
func (l *stateLog) replay(ctx context.Context, n int, apply func(*record)) (records int, err error) {
	mark := randomHex(8)
	if err := l.append(ctx, n, &record{K: recMarker, Mark: mark}); err != nil {
		return 0, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reached := make(chan struct{})
	stopped := make(chan struct{})
	var once sync.Once
	var corrupt int
	var lastErr error
	done := false
	err = l.b.Consume(cctx, broker.ConsumeSpec{
		Queue:        stateQueue(n),
		Prefetch:     1000,
		StreamOffset: broker.OffsetFirst,
		OnStop:       func() { close(stopped) },
	}, func(d *broker.Delivery) {
		_ = d.Ack()
		if done {
			return
		}
		rec, err := decodeRecord(d.Body)
		if err != nil {
			corrupt++ // skipped: one bad record must not stall the shard
			lastErr = err
			return
		}
		if rec.K == recMarker {
			if rec.Mark == mark {
				done = true
				once.Do(func() { close(reached) })
			}
			return
		}
		records++
		apply(rec)
	})
	if err != nil {
		return 0, fmt.Errorf("replaying %s: %w", stateQueue(n), err)
	}
	select {
	case <-reached:
	case <-ctx.Done():
		cancel()
		<-stopped
		return records, fmt.Errorf("replaying %s: %w", stateQueue(n), ctx.Err())
	}
	cancel()
	<-stopped
	if corrupt > 0 {
		l.log.Error().Err(lastErr).Int("shard", n).Int("skipped", corrupt).Msg("replay skipped undecodable state records")
	}
	return records, nil
}
