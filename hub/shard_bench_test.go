package hub

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// benchRooms is how many rooms the benchmarks publish to, round robin.
const benchRooms = 16

// newBenchShard returns shard 0 of a worker on a fresh in-process broker
// (one shard, so every room is in it), with the topology and the shard's
// stream declared and one member, "u", joined to each benchmark room. The
// egress exchange has no queue bound: a broadcast costs the hub its encoding
// and a routing lookup, not a consumer.
func newBenchShard(tb testing.TB) *shard {
	tb.Helper()
	b := broker.NewLocal(broker.LocalConfig{})
	tb.Cleanup(func() { _ = b.Close() })
	// Prefetch 128: batches of up to 64 envelopes. No snapshots: their
	// cost grows with the history retained, so it would depend on b.N.
	w, err := New(Config{ID: "hub-bench", ListenAdmin: "-", Prefetch: 128, SnapshotEvery: 1 << 40,
		Topology: topology.Config{Shards: 1}},
		Hooks{}, b, zerolog.Nop(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if err := topology.Declare(ctx, b, w.cfg.Topology); err != nil {
		tb.Fatal(err)
	}
	if err := w.state.declare(ctx, 0); err != nil {
		tb.Fatal(err)
	}
	sh := newShard(w, 0)
	for r := range benchRooms {
		body, err := protocol.EncodeEnvelope(&protocol.Envelope{
			V: protocol.EnvelopeVersion, Kind: protocol.KindClient, Edge: "e1", Conn: "c1", User: "u",
			Frame: protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: benchRoom(r)},
		})
		if err != nil {
			tb.Fatal(err)
		}
		sh.handle(&broker.Delivery{Message: broker.Message{Body: body}})
		sh.flush()
	}
	if n := len(sh.st.rooms); n != benchRooms {
		tb.Fatalf("%d rooms joined, want %d", n, benchRooms)
	}
	return sh
}

func benchRoom(r int) string { return fmt.Sprintf("bench-%02d", r) }

// publishBodies encodes one publish envelope per room, each with a
// fixed-width CMID that stamp overwrites in place, so the benchmark loop
// makes a fresh message without encoding or allocating.
type publishBodies struct {
	bodies [][]byte
	cmidAt []int // offset of the CMID's digits in each body
}

const cmidDigits = 12

func newPublishBodies(tb testing.TB, n int) *publishBodies {
	tb.Helper()
	p := &publishBodies{}
	for i := range n {
		placeholder := bytes.Repeat([]byte{'0'}, cmidDigits)
		body, err := protocol.EncodeEnvelope(&protocol.Envelope{
			V: protocol.EnvelopeVersion, Kind: protocol.KindClient, Edge: "e1", Conn: "c1", User: "u",
			Frame: protocol.Frame{Type: protocol.TypePublish, ID: 7, Room: benchRoom(i % benchRooms),
				CMID: string(placeholder), Body: []byte("hello, a message of modest size")},
		})
		if err != nil {
			tb.Fatal(err)
		}
		at := bytes.Index(body, placeholder)
		if at < 0 {
			tb.Fatal("CMID placeholder not found in the encoded envelope")
		}
		p.bodies = append(p.bodies, body)
		p.cmidAt = append(p.cmidAt, at)
	}
	return p
}

// stamp writes n as the CMID of body i and returns a delivery of it.
func (p *publishBodies) stamp(d *broker.Delivery, i int, n uint64) *broker.Delivery {
	b := p.bodies[i]
	for j := p.cmidAt[i] + cmidDigits - 1; j >= p.cmidAt[i]; j-- {
		b[j] = byte('0' + n%10)
		n /= 10
	}
	*d = broker.Delivery{Message: broker.Message{Body: b}}
	return d
}

// benchmarkShardPublish pushes b.N publish envelopes through the shard
// pipeline, batch envelopes per OnIdle.
func benchmarkShardPublish(b *testing.B, batch int) {
	sh := newBenchShard(b)
	p := newPublishBodies(b, max(batch, benchRooms))
	ds := make([]broker.Delivery, len(p.bodies))
	msgs := sh.w.stats.messages.Load()
	b.ReportAllocs()
	b.ResetTimer()
	var n uint64
	for n < uint64(b.N) {
		for i := 0; i < batch && n < uint64(b.N); i++ {
			n++
			k := int(n % uint64(len(ds))) // distinct within a batch
			sh.handle(p.stamp(&ds[k], k, n))
		}
		sh.flush()
	}
	b.StopTimer()
	if got := sh.w.stats.messages.Load() - msgs; got != uint64(b.N) {
		b.Fatalf("%d messages sequenced, want %d", got, b.N)
	}
}

// BenchmarkShardPublish measures the sequence-and-publish path per
// envelope: decode, dedup check, append to the shard's stream, broadcast,
// ack, on the in-process broker. Envelopes arrive one at a time (an OnIdle
// after each) or in bursts of 64 handled as one batch.
func BenchmarkShardPublish(b *testing.B) {
	b.Run("batch=1", func(b *testing.B) { benchmarkShardPublish(b, 1) })
	b.Run("batch=64", func(b *testing.B) { benchmarkShardPublish(b, 64) })
}
