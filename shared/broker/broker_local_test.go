package broker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/broker/brokertest"
)

func newLocal(t *testing.T) broker.Broker {
	return broker.NewLocal(broker.LocalConfig{Logger: zerolog.New(zerolog.NewTestWriter(t))})
}

func TestLocal(t *testing.T) {
	brokertest.Run(t, newLocal, brokertest.Options{})
}

// BenchmarkLocalPublish measures routing on an exchange shaped like
// Hearth's egress: many exact room bindings and a few wildcard ones.
func BenchmarkLocalPublish(b *testing.B) {
	ctx := context.Background()
	l := broker.NewLocal(broker.LocalConfig{})
	defer l.Close()
	if err := l.DeclareExchange(ctx, "egress"); err != nil {
		b.Fatal(err)
	}
	if err := l.DeclareQueue(ctx, broker.QueueSpec{Name: "edge", MaxLength: 1000}); err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		if err := l.Bind(ctx, "edge", "egress", fmt.Sprintf("room.r%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range []string{"edge.e1.#", "user.*.dm", "#.broadcast"} {
		if err := l.Bind(ctx, "edge", "egress", p); err != nil {
			b.Fatal(err)
		}
	}
	m := broker.Message{Key: "room.r4242", Body: []byte("frame")}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Publish(ctx, "egress", m); err != nil {
			b.Fatal(err)
		}
	}
}
