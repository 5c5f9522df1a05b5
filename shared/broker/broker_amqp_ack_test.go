package broker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeAckChannel settles deliveries the way RabbitMQ's channel does
// (rabbit_channel:collect_acks): a multiple ack settles every outstanding
// tag up to its own, which must be outstanding, else the channel fails.
type fakeAckChannel struct {
	mu          sync.Mutex
	outstanding []uint64 // delivered, not settled, ascending
	acked       map[uint64]bool
	nacked      map[uint64]bool
	calls       []string
	err         error         // the first protocol error: the channel is closed
	sent        chan struct{} // signalled after every Ack call
}

func newFakeAckChannel(n int) *fakeAckChannel {
	f := &fakeAckChannel{acked: map[uint64]bool{}, nacked: map[uint64]bool{}, sent: make(chan struct{}, 1024)}
	for t := uint64(1); t <= uint64(n); t++ {
		f.outstanding = append(f.outstanding, t)
	}
	return f
}

func (f *fakeAckChannel) settle(tag uint64, multiple bool, op string) error {
	if f.err != nil {
		return f.err
	}
	i := slices.Index(f.outstanding, tag)
	if i < 0 {
		f.err = fmt.Errorf("PRECONDITION_FAILED - unknown delivery tag %d (%s)", tag, op)
		return f.err
	}
	from := i
	if multiple {
		from = 0
	}
	for _, t := range f.outstanding[from : i+1] {
		if op == "ack" {
			f.acked[t] = true
		} else {
			f.nacked[t] = true
		}
	}
	f.outstanding = slices.Delete(f.outstanding, from, i+1)
	return nil
}

func (f *fakeAckChannel) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("ack %d %v", tag, multiple))
	defer func() { f.sent <- struct{}{} }()
	return f.settle(tag, multiple, "ack")
}

func (f *fakeAckChannel) Nack(tag uint64, multiple, requeue bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("nack %d %v", tag, multiple))
	return f.settle(tag, multiple, "nack")
}

func (f *fakeAckChannel) IsClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err != nil
}

func (f *fakeAckChannel) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func TestAckerImmediateWithoutDelay(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(3)
	a := newAMQPAcker(f, false, 0, 64)
	for _, tag := range []uint64{2, 1} {
		if err := a.ack(tag); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.nack(3, true); err != nil {
		t.Fatal(err)
	}
	if got, want := f.log(), []string{"ack 2 false", "ack 1 false", "nack 3 false"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestAckerHoldsAndSendsOneMultipleAck(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(5)
	a := newAMQPAcker(f, false, time.Hour, 64)
	for tag := uint64(1); tag <= 4; tag++ {
		if err := a.ack(tag); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.log(); len(got) != 0 {
		t.Fatalf("acks sent before the flush: %q", got)
	}
	if err := a.flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.log(), []string{"ack 4 true"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if !slices.Equal(f.outstanding, []uint64{5}) {
		t.Fatalf("outstanding %v, want [5]", f.outstanding)
	}
}

func TestAckerOutOfOrder(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(4)
	a := newAMQPAcker(f, false, time.Hour, 64)
	// 1 is not settled: 3 and 2 must not go as a multiple ack, which
	// would settle 1 too.
	_ = a.ack(3)
	_ = a.ack(2)
	if err := a.flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.log(), []string{"ack 3 false", "ack 2 false"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	// Now the frontier passes 3: 1 and 4 go as one multiple ack on 4.
	_ = a.ack(1)
	_ = a.ack(4)
	if err := a.flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.log()[2:], []string{"ack 4 true"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if len(f.outstanding) != 0 || f.err != nil {
		t.Fatalf("outstanding %v, err %v", f.outstanding, f.err)
	}
}

func TestAckerNackSendsHeldAcksFirst(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(4)
	a := newAMQPAcker(f, false, time.Hour, 64)
	_ = a.ack(1)
	_ = a.ack(2)
	if err := a.nack(3, true); err != nil {
		t.Fatal(err)
	}
	_ = a.ack(4)
	if err := a.flush(); err != nil {
		t.Fatal(err)
	}
	// The multiple ack on 4 must not name 3 (settled by the nack): it
	// names 4, which is held, and skips 3, which is no longer outstanding.
	if got, want := f.log(), []string{"ack 2 true", "nack 3 false", "ack 4 true"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if !f.acked[1] || !f.acked[2] || !f.nacked[3] || !f.acked[4] || f.err != nil {
		t.Fatalf("acked %v nacked %v err %v", f.acked, f.nacked, f.err)
	}
}

func TestAckerSendsAtHalfThePrefetch(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(5)
	a := newAMQPAcker(f, false, time.Hour, 4)
	_ = a.ack(1)
	if got := f.log(); len(got) != 0 {
		t.Fatalf("calls %q, want none yet", got)
	}
	_ = a.ack(2)
	if got, want := f.log(), []string{"ack 2 true"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestAckerSendsAfterTheDelay(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(2)
	a := newAMQPAcker(f, false, 5*time.Millisecond, 64)
	_ = a.ack(1)
	_ = a.ack(2)
	select {
	case <-f.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("held acks not sent after the delay")
	}
	if got, want := f.log(), []string{"ack 2 true"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestAckerStreamIgnoresDelay(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(2)
	a := newAMQPAcker(f, true, time.Hour, 64)
	_ = a.ack(1)
	_ = a.nack(2, true) // a stream's nack is an ack
	if got, want := f.log(), []string{"ack 1 false", "ack 2 false"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestAckerClosedChannel(t *testing.T) {
	t.Parallel()
	f := newFakeAckChannel(1)
	f.err = errors.New("closed")
	a := newAMQPAcker(f, false, time.Hour, 64)
	if err := a.ack(1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ack on a closed channel: %v, want ErrUnavailable", err)
	}
}

// TestAckerRandomOrders settles deliveries in shuffled orders, with nacks
// and flushes at random points, against a channel that fails like
// RabbitMQ's on a multiple ack naming a settled tag: every delivery must
// end settled as asked, with no channel error.
func TestAckerRandomOrders(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(60)
		f := newFakeAckChannel(n)
		a := newAMQPAcker(f, false, time.Hour, 2+rng.IntN(40))
		order := make([]uint64, n)
		for i := range order {
			order[i] = uint64(i + 1)
		}
		// Mostly in order, as a consumer settles; some swaps.
		for range rng.IntN(n/2 + 1) {
			i, j := rng.IntN(n), rng.IntN(n)
			order[i], order[j] = order[j], order[i]
		}
		want := map[uint64]bool{} // true: acked
		for _, tag := range order {
			if rng.IntN(10) == 0 {
				want[tag] = false
				if err := a.nack(tag, true); err != nil {
					t.Fatalf("seed %d: nack %d: %v (calls %q)", seed, tag, err, f.log())
				}
			} else {
				want[tag] = true
				if err := a.ack(tag); err != nil {
					t.Fatalf("seed %d: ack %d: %v (calls %q)", seed, tag, err, f.log())
				}
			}
			if rng.IntN(8) == 0 {
				if err := a.flush(); err != nil {
					t.Fatalf("seed %d: flush: %v (calls %q)", seed, err, f.log())
				}
			}
		}
		if err := a.flush(); err != nil {
			t.Fatalf("seed %d: final flush: %v (calls %q)", seed, err, f.log())
		}
		if f.err != nil || len(f.outstanding) != 0 {
			t.Fatalf("seed %d: err %v, outstanding %v (order %v, calls %q)", seed, f.err, f.outstanding, order, f.log())
		}
		for tag, ack := range want {
			if f.acked[tag] != ack || f.nacked[tag] == ack {
				t.Fatalf("seed %d: tag %d acked %v nacked %v, want acked %v (calls %q)", seed, tag, f.acked[tag], f.nacked[tag], ack, f.log())
			}
		}
	}
}
