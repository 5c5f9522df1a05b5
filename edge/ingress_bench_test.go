package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// BenchmarkIngressAMQP measures the broker hop alone on a real RabbitMQ:
// 256 connections, each with one frame in flight as an edge's connections
// have, forward 200-byte envelopes to 8 persistent quorum shard queues,
// with the ingress batching on (the default 1 ms bound) and off. ns/op is
// per frame; frames/s and frames/msg say what batching buys. It needs
// HEARTH_TEST_AMQP_URL (make test's RabbitMQ, or deploy/local/rabbitmq.sh)
// and is skipped without it; HEARTH_TEST_RABBITMQ_NODE lets it delete its
// queues afterwards.
//
//	go test -run '^$' -bench IngressAMQP -benchtime 20000x ./edge/
func BenchmarkIngressAMQP(b *testing.B) {
	url := testenv.AMQPURL(b)
	ctx := context.Background()
	br, err := broker.NewAMQP(ctx, broker.AMQPConfig{URLs: []string{url}, Name: "bench-ingress", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	x := "hearth-bench.ingress." + hex.EncodeToString(suffix)
	if err := br.DeclareExchange(ctx, x); err != nil {
		b.Fatal(err)
	}
	const shards, conns = 8, 256
	for i := 0; i < shards; i++ {
		q := x + ".shard." + strconv.Itoa(i)
		spec := broker.QueueSpec{Name: q, Quorum: true, MaxLength: 200000, Overflow: broker.DropHead}
		if err := br.DeclareQueue(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := br.Bind(ctx, q, x, "shard."+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		if os.Getenv(testenv.EnvRabbitMQNode) != "" {
			b.Cleanup(func() { testenv.Ctl(b, "delete_queue", q) })
		}
	}
	body := make([]byte, 200)
	for _, mode := range []struct {
		name  string
		delay time.Duration
	}{{"batched", time.Millisecond}, {"unbatched", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			st := &stats{}
			cfg := Config{IngressMaxDelay: mode.delay, IngressBatch: 256, RequestTimeout: 30 * time.Second}
			in := newIngress(br, &cfg, st)
			in.exchange = x
			ictx, stop := context.WithCancel(ctx)
			in.start(ictx)
			defer func() { stop(); in.wait() }()
			var wg sync.WaitGroup
			var failed sync.Once
			b.ResetTimer()
			for g := 0; g < conns; g++ {
				n := b.N / conns
				if g < b.N%conns {
					n++
				}
				wg.Add(1)
				go func(g, n int) {
					defer wg.Done()
					r := &ingressReq{key: "shard." + strconv.Itoa(g%shards), done: make(chan error, 1)}
					for i := 0; i < n; i++ {
						r.body = body
						if err := in.publish(r); err != nil {
							failed.Do(func() { b.Error(err) })
							return
						}
					}
				}(g, n)
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
			b.ReportMetric(float64(b.N)/float64(st.ingressMessages.Load()), "frames/msg")
		})
	}
}
