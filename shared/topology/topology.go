// Package topology declares the broker objects every Hearth process relies
// on: the ingress and egress exchanges and the per-shard ingress queues with
// their bindings. Declaring is idempotent, so every edge and hub declares the
// whole topology at start and nothing depends on start order.
package topology

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
)

// Config is the part of the topology operators choose. Every process of a
// deployment must use the same values: RabbitMQ refuses to re-declare a
// queue with different arguments.
type Config struct {
	// Shards is the number of ingress shards. Zero value means protocol.DefaultShards.
	Shards int `flag:"shards" env:"HEARTH_SHARDS" default:"64" usage:"number of ingress shards; identical on every edge, hub and integrator"`
	// ShardQueueMax bounds each shard queue in messages; publishes beyond it
	// are refused (overflow reject-publish) and the client gets "unavailable".
	// Zero value means 100000.
	ShardQueueMax int `flag:"shard-queue-max" env:"HEARTH_SHARD_QUEUE_MAX" default:"100000" usage:"length limit of each shard queue (overflow: reject-publish)"`
	// Quorum makes shard queues replicated quorum queues (RabbitMQ only):
	// for a RabbitMQ cluster. Off, they are durable classic queues, the
	// right choice on one RabbitMQ node (ADR 0004).
	Quorum bool `flag:"quorum" env:"HEARTH_QUORUM" default:"false" usage:"declare shard queues as quorum queues (for a RabbitMQ cluster; classic queues otherwise)"`
}

func (c *Config) normalize() {
	if c.Shards <= 0 {
		c.Shards = protocol.DefaultShards
	}
	if c.ShardQueueMax <= 0 {
		c.ShardQueueMax = 100000
	}
}

// Validate reports a config no deployment can run with.
func (c Config) Validate() error {
	if c.Shards > 4096 {
		return fmt.Errorf("topology: %d shards is more than 4096", c.Shards)
	}
	return nil
}

// ShardQueue returns the spec of shard n's queue.
func (c Config) ShardQueue(n int) broker.QueueSpec {
	c.normalize()
	return broker.QueueSpec{
		Name:      protocol.ShardQueue(n),
		Durable:   true,
		Quorum:    c.Quorum,
		MaxLength: c.ShardQueueMax,
		Overflow:  broker.RejectPublish,
		// One hub at a time processes a shard, enforced by RabbitMQ
		// (docs/adr/0001-shard-ownership-and-durable-state.md).
		SingleActiveConsumer: true,
	}
}

// NumShards returns the effective shard count.
func (c Config) NumShards() int {
	c.normalize()
	return c.Shards
}

// Declare declares the three exchanges and every shard queue with its binding.
func Declare(ctx context.Context, b broker.Broker, c Config) error {
	for _, ex := range []string{protocol.ExchangeIngress, protocol.ExchangeEgress, protocol.ExchangeControl} {
		if err := b.DeclareExchange(ctx, ex); err != nil {
			return fmt.Errorf("declaring exchange %s: %w", ex, err)
		}
	}
	for n := 0; n < c.NumShards(); n++ {
		q := c.ShardQueue(n)
		if err := b.DeclareQueue(ctx, q); err != nil {
			if errors.Is(err, broker.ErrMismatch) {
				return fmt.Errorf("declaring queue %s: %w (the shard queues exist with other arguments: "+
					"-quorum/HEARTH_QUORUM and -shard-queue-max/HEARTH_SHARD_QUEUE_MAX must match them on every process; "+
					"quorum=%v here; see docs/adr/0004-shard-queues-and-broker-operations.md)", q.Name, err, c.Quorum)
			}
			return fmt.Errorf("declaring queue %s: %w", q.Name, err)
		}
		if err := b.Bind(ctx, q.Name, protocol.ExchangeIngress, protocol.ShardKey(n)); err != nil {
			return fmt.Errorf("binding queue %s: %w", q.Name, err)
		}
	}
	return nil
}
