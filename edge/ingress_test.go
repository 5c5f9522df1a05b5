package edge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// gateBroker records ingress publishes and confirms each only when the
// test releases it.
type gateBroker struct {
	broker.Broker
	mu    sync.Mutex
	msgs  []broker.Message
	gates []chan error
}

func (g *gateBroker) Publish(ctx context.Context, _ string, m broker.Message) error {
	gate := make(chan error, 1)
	g.mu.Lock()
	g.msgs = append(g.msgs, m)
	g.gates = append(g.gates, gate)
	g.mu.Unlock()
	select {
	case err := <-gate:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateBroker) published() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.msgs)
}

func (g *gateBroker) msg(i int) broker.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.msgs[i]
}

func (g *gateBroker) confirm(i int, err error) {
	g.mu.Lock()
	gate := g.gates[i]
	g.mu.Unlock()
	gate <- err
}

// envelopes returns the envelope bodies message m carries.
func envelopes(t *testing.T, m broker.Message) []string {
	t.Helper()
	if !protocol.IsEnvelopeBatch(m.Body) {
		return []string{string(m.Body)}
	}
	parts, err := protocol.SplitEnvelopeBatch(m.Body)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

func newTestIngress(t *testing.T, maxDelay time.Duration) (*ingress, *gateBroker, context.CancelFunc) {
	t.Helper()
	g := &gateBroker{}
	cfg := Config{IngressMaxDelay: maxDelay, IngressBatch: 256, RequestTimeout: 10 * time.Second}
	in := newIngress(g, &cfg, &stats{})
	ctx, cancel := context.WithCancel(context.Background())
	in.start(ctx)
	t.Cleanup(func() {
		cancel()
		in.wait()
	})
	return in, g, cancel
}

// submit hands body to the publisher as publish does, and returns the
// channel its result arrives on. The hand-over is synchronous: run has
// taken the envelope when submit returns, and handles it before anything
// it receives later, so envelopes submitted one after another are queued
// in that order.
func submit(in *ingress, key, body string) <-chan error {
	return submitAs(in, key, body, false)
}

func submitAs(in *ingress, key, body string, durable bool) <-chan error {
	r := &ingressReq{key: key, body: []byte(body), durable: durable, done: make(chan error, 1)}
	in.in <- r
	return r.done
}

func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no result in 10s")
		return nil
	}
}

// TestIngressBatchesWhileInFlight: the first envelope of an idle shard
// goes at once and alone; those that arrive while it is unconfirmed go
// together, in arrival order, once it is confirmed; another shard is not
// held up by the first.
func TestIngressBatchesWhileInFlight(t *testing.T) {
	t.Parallel()
	in, g, _ := newTestIngress(t, time.Hour) // the delay never fires here
	first := submit(in, "shard.1", "a")
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 1 }, "the first envelope published at once")
	var rest []<-chan error
	for i := 0; i < 5; i++ {
		rest = append(rest, submitAs(in, "shard.1", fmt.Sprint("b", i), i == 2))
	}
	other := submit(in, "shard.2", "c")
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 2 }, "another shard's envelope published at once")
	if got := envelopes(t, g.msg(1)); len(got) != 1 || got[0] != "c" || g.msg(1).Key != "shard.2" {
		t.Fatalf("second message %q to %s, want [c] to shard.2", got, g.msg(1).Key)
	}
	g.confirm(0, nil)
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 3 }, "the waiting envelopes published after the confirm")
	if got := envelopes(t, g.msg(2)); fmt.Sprint(got) != "[b0 b1 b2 b3 b4]" {
		t.Fatalf("batch %q, want [b0 b1 b2 b3 b4]", got)
	}
	if !g.msg(2).Persistent {
		t.Fatal("a batch with a durable envelope is not persistent")
	}
	if g.msg(0).Persistent || g.msg(1).Persistent {
		t.Fatal("a message without durable envelopes is persistent")
	}
	g.confirm(2, errors.New("nacked"))
	for i, ch := range rest {
		if err := result(t, ch); err == nil || err.Error() != "nacked" {
			t.Fatalf("envelope b%d: %v, want the batch's error", i, err)
		}
	}
	g.confirm(1, nil)
	if err := result(t, other); err != nil {
		t.Fatal(err)
	}
}

// TestIngressMaxDelay: an envelope waiting behind an unconfirmed message
// is published anyway once it waited MaxDelay.
func TestIngressMaxDelay(t *testing.T) {
	t.Parallel()
	in, g, _ := newTestIngress(t, 5*time.Millisecond)
	first := submit(in, "shard.1", "a")
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 1 }, "the first envelope")
	second := submit(in, "shard.1", "b")
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 2 }, "the second envelope published after MaxDelay while the first is unconfirmed")
	g.confirm(1, nil)
	g.confirm(0, nil)
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	if err := result(t, second); err != nil {
		t.Fatal(err)
	}
}

// TestIngressNoBatching: a negative MaxDelay publishes every envelope at
// once, alone, whatever is in flight.
func TestIngressNoBatching(t *testing.T) {
	t.Parallel()
	in, g, _ := newTestIngress(t, -1)
	var chs []<-chan error
	for i := 0; i < 3; i++ {
		chs = append(chs, submit(in, "shard.1", fmt.Sprint(i)))
	}
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 3 }, "three messages without any confirm")
	for i := 0; i < 3; i++ {
		if n := len(envelopes(t, g.msg(i))); n != 1 {
			t.Fatalf("message %d carries %d envelopes", i, n)
		}
		g.confirm(i, nil)
	}
	for _, ch := range chs {
		if err := result(t, ch); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIngressStop: envelopes waiting at stop are published; later ones
// are refused.
func TestIngressStop(t *testing.T) {
	t.Parallel()
	in, g, cancel := newTestIngress(t, time.Hour)
	first := submit(in, "shard.1", "a")
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 1 }, "the first envelope")
	second := submit(in, "shard.1", "b") // waits behind the first
	if n := g.published(); n != 1 {
		t.Fatalf("%d messages published, want 1 (the second envelope waits)", n)
	}
	cancel()
	testenv.WaitFor(t, 5*time.Second, func() bool { return g.published() == 2 }, "the waiting envelope published at stop")
	g.confirm(0, nil)
	g.confirm(1, nil)
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	if err := result(t, second); err != nil {
		t.Fatal(err)
	}
	in.wait()
	if err := in.publish(&ingressReq{key: "shard.1", body: []byte("late"), done: make(chan error, 1)}); !errors.Is(err, errIngressStopped) {
		t.Fatalf("publish after stop: %v", err)
	}
}

// TestEnvelopeDurable: only a client's publish and typing may be lost in a
// broker restart; everything else, above all a disconnect, is persistent.
func TestEnvelopeDurable(t *testing.T) {
	cases := []struct {
		kind protocol.EnvelopeKind
		typ  protocol.FrameType
		want bool
	}{
		{protocol.KindClient, protocol.TypePublish, false},
		{protocol.KindClient, protocol.TypeTyping, false},
		{protocol.KindClient, protocol.TypeJoin, true},
		{protocol.KindClient, protocol.TypeLeave, true},
		{protocol.KindClient, protocol.TypeRead, true},
		{protocol.KindClient, protocol.TypeHistory, true},
		{protocol.KindDisconnect, protocol.TypeLeave, true},
	}
	for _, c := range cases {
		if got := envelopeDurable(c.kind, &protocol.Frame{Type: c.typ}); got != c.want {
			t.Errorf("kind %d frame type %d: durable %v, want %v", c.kind, c.typ, got, c.want)
		}
	}
}
