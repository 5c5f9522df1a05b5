package broker

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/shared/testenv"
)

// fakeClock is a settable clock for stream retention by age.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestLocalStreamRetention checks the local broker's exact retention,
// which the shared suite cannot assert because RabbitMQ's works by segment.
func TestLocalStreamRetention(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration // before publishing body
		body    string
	}
	cases := []struct {
		name     string
		spec     QueueSpec
		steps    []step
		later    time.Duration // clock advance before consuming
		want     []string
		wantBase int64
	}{
		{
			name:  "bytes",
			spec:  QueueSpec{MaxLengthBytes: 10},
			steps: []step{{0, "aaaa"}, {0, "bbbb"}, {0, "cccc"}, {0, "dddd"}},
			want:  []string{"cccc", "dddd"}, wantBase: 2,
		},
		{
			name:  "bytes exactly at the bound",
			spec:  QueueSpec{MaxLengthBytes: 8},
			steps: []step{{0, "aaaa"}, {0, "bbbb"}},
			want:  []string{"aaaa", "bbbb"}, wantBase: 0,
		},
		{
			name:  "the newest stays even when larger than the bound",
			spec:  QueueSpec{MaxLengthBytes: 3},
			steps: []step{{0, "aaaa"}, {0, "bbbbbb"}},
			want:  []string{"bbbbbb"}, wantBase: 1,
		},
		{
			name:  "age on append",
			spec:  QueueSpec{MaxAge: time.Minute},
			steps: []step{{0, "a"}, {30 * time.Second, "b"}, {31 * time.Second, "c"}},
			want:  []string{"b", "c"}, wantBase: 1,
		},
		{
			name:  "age when a consumer starts",
			spec:  QueueSpec{MaxAge: time.Minute},
			steps: []step{{0, "a"}, {time.Second, "b"}, {time.Second, "c"}},
			later: time.Hour,
			want:  []string{"c"}, wantBase: 2,
		},
		{
			name:  "no bound",
			spec:  QueueSpec{},
			steps: []step{{0, "a"}, {time.Hour, "b"}},
			later: 24 * time.Hour,
			want:  []string{"a", "b"}, wantBase: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			clock := &fakeClock{now: time.Unix(1700000000, 0)}
			l := NewLocal(LocalConfig{})
			l.now = clock.Now
			t.Cleanup(func() { _ = l.Close() })
			spec := tc.spec
			spec.Name, spec.Stream = "s", true
			if err := l.DeclareQueue(ctx, spec); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.steps {
				clock.Add(st.advance)
				if err := l.Publish(ctx, "", Message{Key: "s", Body: []byte(st.body)}); err != nil {
					t.Fatal(err)
				}
			}
			clock.Add(tc.later)
			var mu sync.Mutex
			var got []string
			var offs []int64
			err := l.Consume(ctx, ConsumeSpec{Queue: "s", StreamOffset: OffsetFirst}, func(d *Delivery) {
				mu.Lock()
				got = append(got, string(d.Body))
				offs = append(offs, d.Offset)
				mu.Unlock()
				_ = d.Ack()
			})
			if err != nil {
				t.Fatal(err)
			}
			last := tc.steps[len(tc.steps)-1].body
			testenv.WaitFor(t, 5*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Contains(got, last)
			}, "waiting for the newest message")
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("retained %q, want %q", got, tc.want)
			}
			for i, off := range offs {
				if off != tc.wantBase+int64(i) {
					t.Fatalf("offsets %v, want consecutive from %d", offs, tc.wantBase)
				}
			}
		})
	}
}

// TestLocalStreamStart checks where each StreamOffset starts, on an empty
// and on a filled stream.
func TestLocalStreamStart(t *testing.T) {
	t.Parallel()
	st := &localStream{now: time.Now}
	spec := QueueSpec{Name: "s", Stream: true}
	for _, o := range []StreamOffset{OffsetFirst, OffsetLast, OffsetNext, {}, OffsetAt(0), OffsetAt(7)} {
		want := int64(0)
		if o == OffsetAt(7) {
			want = 7
		}
		if got := st.start(spec, o); got != want {
			t.Errorf("empty stream, %q: starts at %d, want %d", o, got, want)
		}
	}
	for range 5 {
		st.append(spec, &localMessage{})
	}
	st.base = 3 // offsets 3..7, as after a retention
	cases := []struct {
		o    StreamOffset
		want int64
	}{
		{OffsetFirst, 3}, {OffsetLast, 7}, {OffsetNext, 8}, {StreamOffset{}, 8},
		{OffsetAt(0), 3}, {OffsetAt(5), 5}, {OffsetAt(100), 100},
	}
	for _, tc := range cases {
		if got := st.start(spec, tc.o); got != tc.want {
			t.Errorf("offsets 3..7, %q: starts at %d, want %d", tc.o, got, tc.want)
		}
	}
}

func TestQueueSpecNormalize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      QueueSpec
		want    QueueSpec
		wantErr bool
	}{
		{in: QueueSpec{Name: "q"}, want: QueueSpec{Name: "q", Overflow: DropHead}},
		{in: QueueSpec{Name: "q", Quorum: true}, want: QueueSpec{Name: "q", Quorum: true, Durable: true, Overflow: DropHead}},
		{in: QueueSpec{Name: "s", Stream: true}, want: QueueSpec{Name: "s", Stream: true, Durable: true}},
		{
			in:   QueueSpec{Name: "s", Stream: true, MaxAge: 1500 * time.Millisecond, MaxLengthBytes: 10, SegmentBytes: 5},
			want: QueueSpec{Name: "s", Stream: true, Durable: true, MaxAge: 2 * time.Second, MaxLengthBytes: 10, SegmentBytes: 5},
		},
		{in: QueueSpec{Name: "s", Stream: true, Exclusive: true}, wantErr: true},
		{in: QueueSpec{Name: "s", Stream: true, Quorum: true}, wantErr: true},
		{in: QueueSpec{Name: "s", Stream: true, MaxLength: 1}, wantErr: true},
		{in: QueueSpec{Name: "s", Stream: true, Overflow: RejectPublish}, wantErr: true},
		{in: QueueSpec{Name: "s", Stream: true, SegmentBytes: -1}, wantErr: true},
		{in: QueueSpec{Name: "q", MaxAge: time.Second}, wantErr: true},
		{in: QueueSpec{Name: "q", SegmentBytes: 1}, wantErr: true},
		{in: QueueSpec{}, wantErr: true},
	}
	for _, tc := range cases {
		got, err := tc.in.normalize()
		if (err != nil) != tc.wantErr {
			t.Errorf("normalize(%+v): error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("normalize(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestConsumeSpecNormalize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      ConsumeSpec
		wantErr bool
	}{
		{in: ConsumeSpec{Queue: "q"}},
		{in: ConsumeSpec{Queue: "s", StreamOffset: OffsetAt(0)}},
		{in: ConsumeSpec{Queue: "s", StreamOffset: OffsetAt(-1)}, wantErr: true},
		{in: ConsumeSpec{Queue: "s", StreamOffset: OffsetFirst, AutoAck: true}, wantErr: true},
		{in: ConsumeSpec{Queue: "q", Prefetch: -1}, wantErr: true},
		{in: ConsumeSpec{}, wantErr: true},
	}
	for _, tc := range cases {
		got, err := tc.in.normalize()
		if (err != nil) != tc.wantErr {
			t.Errorf("normalize(%+v): error %v, want error %v", tc.in, err, tc.wantErr)
		}
		if err == nil && got.Prefetch != defaultPrefetch {
			t.Errorf("normalize(%+v): Prefetch %d, want %d", tc.in, got.Prefetch, defaultPrefetch)
		}
	}
}

func TestStreamOffset(t *testing.T) {
	t.Parallel()
	cases := []struct {
		o    StreamOffset
		str  string
		arg  any
		zero bool
	}{
		{StreamOffset{}, "", "", true},
		{OffsetFirst, "first", "first", false},
		{OffsetLast, "last", "last", false},
		{OffsetNext, "next", "next", false},
		{OffsetAt(42), "42", int64(42), false},
	}
	for _, tc := range cases {
		if got := tc.o.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
		if got := streamOffsetArg(tc.o); got != tc.arg {
			t.Errorf("streamOffsetArg(%q) = %#v, want %#v", tc.o, got, tc.arg)
		}
		if got := tc.o.IsZero(); got != tc.zero {
			t.Errorf("%q.IsZero() = %v", tc.o, got)
		}
	}
}

func TestStreamQueueArgs(t *testing.T) {
	t.Parallel()
	spec, err := QueueSpec{Name: "s", Stream: true, MaxLengthBytes: 1000, MaxAge: 90 * time.Minute, SegmentBytes: 100}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	args := queueArgs(spec)
	want := map[string]any{
		"x-queue-type":                    "stream",
		"x-max-length-bytes":              int64(1000),
		"x-max-age":                       "5400s",
		"x-stream-max-segment-size-bytes": int64(100),
	}
	if len(args) != len(want) {
		t.Fatalf("queueArgs = %v, want %v", args, want)
	}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("queueArgs[%q] = %#v, want %#v", k, args[k], v)
		}
	}
	if args := queueArgs(QueueSpec{Name: "s", Stream: true, Durable: true}); len(args) != 1 {
		t.Errorf("queueArgs of an unbounded stream = %v, want only x-queue-type", args)
	}
}
