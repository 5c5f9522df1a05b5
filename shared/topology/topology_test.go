package topology

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/shared/broker"
)

// mismatchBroker refuses every queue declaration as RabbitMQ refuses one
// whose arguments differ from the existing queue's.
type mismatchBroker struct{ broker.Broker }

func (mismatchBroker) DeclareExchange(context.Context, string) error { return nil }
func (mismatchBroker) DeclareQueue(_ context.Context, q broker.QueueSpec) error {
	return fmt.Errorf("declaring queue %q: %w: inequivalent arg 'x-queue-type'", q.Name, broker.ErrMismatch)
}

// TestDeclareMismatchHint: shard queues that exist with another type (or
// bound) give an error that still wraps ErrMismatch and tells the operator
// which settings must match.
func TestDeclareMismatchHint(t *testing.T) {
	err := Declare(context.Background(), mismatchBroker{}, Config{Shards: 2})
	if !errors.Is(err, broker.ErrMismatch) {
		t.Fatalf("error %v does not wrap ErrMismatch", err)
	}
	for _, want := range []string{"HEARTH_QUORUM", "quorum=false", "adr/0004"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
