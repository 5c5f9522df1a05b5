package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
)

// delivered is one OnDeliver call.
type delivered struct {
	room      string
	seq       uint64
	recovered bool
}

// recorder collects the OnDeliver calls of a client.
type recorder struct {
	mu  sync.Mutex
	got []delivered
}

func (r *recorder) hook(f protocol.Frame, recovered bool) {
	if f.Type != protocol.TypeMessage {
		return
	}
	r.mu.Lock()
	r.got = append(r.got, delivered{f.Room, f.Seq, recovered})
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *recorder) of(room string) []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivered
	for _, d := range r.got {
		if d.room == room {
			out = append(out, d)
		}
	}
	return out
}

// dialRecorded dials with an OnDeliver recorder.
func dialRecorded(t *testing.T, e *fakeEdge, mod func(*Config)) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := dial(t, e, func(cfg *Config) {
		cfg.OnDeliver = rec.hook
		if mod != nil {
			mod(cfg)
		}
	})
	return c, rec
}

// readSeqs reads Messages until it has n messages of room, skipping other
// frames, and returns their seqs.
func readSeqs(t *testing.T, c *Client, room string, n int) []uint64 {
	t.Helper()
	out, err := collectSeqs(c, room, n, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// collectSeqs is readSeqs for any goroutine.
func collectSeqs(c *Client, room string, n int, timeout time.Duration) ([]uint64, error) {
	var out []uint64
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for len(out) < n {
		select {
		case f, ok := <-c.Messages():
			if !ok {
				return out, fmt.Errorf("messages closed after %v", out)
			}
			if f.Type == protocol.TypeMessage && f.Room == room {
				out = append(out, f.Seq)
			}
		case <-timer.C:
			return out, fmt.Errorf("timed out with %d of %d messages of %s: %v", len(out), n, room, out)
		}
	}
	return out, nil
}

// seqRange returns from, from+1, ..., to.
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func wantSeqs(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if want := seqRange(from, to); !slices.Equal(got, want) {
		t.Fatalf("seqs %v, want %d..%d", got, from, to)
	}
}

// wantRecovered checks which deliveries of room were recovered: those with
// seq in recovered, and no others.
func wantRecovered(t *testing.T, rec *recorder, room string, recovered ...uint64) {
	t.Helper()
	for _, d := range rec.of(room) {
		if d.recovered != slices.Contains(recovered, d.seq) {
			t.Fatalf("seq %d delivered with recovered=%v; deliveries %+v", d.seq, d.recovered, rec.of(room))
		}
	}
}

// noMoreMessages checks that nothing of room is buffered in Messages.
func noMoreMessages(t *testing.T, c *Client, room string) {
	t.Helper()
	for {
		select {
		case f := <-c.Messages():
			if f.Type == protocol.TypeMessage && f.Room == room {
				t.Fatalf("unexpected message %+v", f)
			}
		default:
			return
		}
	}
}

func injectN(e *fakeEdge, room string, n int) {
	for i := range n {
		e.inject(room, "bob", fmt.Sprint("m", i))
	}
}

// disconnect drops alice's connection and keeps her out until the returned
// function is called.
func disconnect(t *testing.T, e *fakeEdge, c *Client) (reconnect func()) {
	t.Helper()
	for drained := false; !drained; { // events of earlier disconnections
		select {
		case <-c.Events():
		default:
			drained = true
		}
	}
	e.setReject(503)
	e.dropUser("alice")
	nextEvent(t, c, EventDisconnected, nil)
	return func() { e.setReject(0) }
}

func TestFreshJoinDeliversRecentHistoryThenLive(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	injectN(e, "r", 60)
	c, rec := dialRecorded(t, e, nil)
	j, err := c.Join(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if j.Seq != 60 || len(j.History) != recentHistory {
		t.Fatalf("joined seq %d with %d history", j.Seq, len(j.History))
	}
	if seq, err := c.Publish(t.Context(), "r", []byte("live")); err != nil || seq != 61 {
		t.Fatalf("publish %d, %v", seq, err)
	}
	wantSeqs(t, readSeqs(t, c, "r", 51), 11, 61)
	wantRecovered(t, rec, "r", seqRange(11, 60)...)
	if s := c.Stats(); s.Recovered != 50 || s.Duplicates != 0 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDuplicateBroadcastsDeliveredOnce(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "r")
	injectN(e, "r", 2)
	e.rebroadcast("r")
	e.rebroadcast("r")
	waitFor(t, "two duplicates", func() bool { return c.Stats().Duplicates == 2 })
	e.inject("r", "bob", "three")
	wantSeqs(t, readSeqs(t, c, "r", 3), 1, 3)
	noMoreMessages(t, c, "r")
}

func TestGapFilledFromHistoryInOrder(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c, rec := dialRecorded(t, e, nil)
	mustJoin(t, c, "r")
	e.inject("r", "bob", "one")
	e.hideNext("r", 2)
	injectN(e, "r", 3) // 2 and 3 hidden; 4 reveals the gap
	wantSeqs(t, readSeqs(t, c, "r", 4), 1, 4)
	wantRecovered(t, rec, "r", 2, 3)
	if s := c.Stats(); s.Fetches != 1 || s.Recovered != 2 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}
	e.inject("r", "bob", "five")
	wantSeqs(t, readSeqs(t, c, "r", 1), 5, 5)
	noMoreMessages(t, c, "r")
}

// After 0, a history request cannot be said; the client re-joins with
// Since 0 instead.
func TestGapAfterZeroFilledByJoin(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c, rec := dialRecorded(t, e, nil)
	mustJoin(t, c, "r")
	e.hideNext("r", 1)
	injectN(e, "r", 2)
	wantSeqs(t, readSeqs(t, c, "r", 2), 1, 2)
	wantRecovered(t, rec, "r", 1)
	if n := e.joinCount("r"); n != 2 {
		t.Fatalf("%d joins", n)
	}
	if h, _ := e.counts(); h != 0 {
		t.Fatalf("%d history requests", h)
	}
}

// Beyond HoldLimit, later messages are discarded and fetched too; with a
// small page size the fetch pages.
func TestGapBeyondHoldLimitPages(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	e.setPage(3)
	c, rec := dialRecorded(t, e, func(cfg *Config) { cfg.HoldLimit = 2 })
	mustJoin(t, c, "r")
	e.inject("r", "bob", "one")
	release := e.gateHistory() // the fetch is answered once all are sent
	e.hideNext("r", 1)
	injectN(e, "r", 9) // 2 hidden; 3..10 live, of which 3 and 4 are held
	waitFor(t, "the fetch", func() bool { h, _ := e.counts(); return h == 1 })
	release()
	wantSeqs(t, readSeqs(t, c, "r", 10), 1, 10)
	// 3 and 4 were held and delivered as they came; 5..10 were discarded.
	wantRecovered(t, rec, "r", 2, 5, 6, 7, 8, 9, 10)
	if s := c.Stats(); s.Fetches != 3 || s.Resets != 0 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResumeDeliversExactlyWhatWasMissed(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c, rec := dialRecorded(t, e, nil)
	mustJoin(t, c, "r", "quiet")
	injectN(e, "r", 2)
	wantSeqs(t, readSeqs(t, c, "r", 2), 1, 2)

	reconnect := disconnect(t, e, c)
	injectN(e, "r", 5) // 3..7, missed
	reconnect()
	var seen []Event
	ev := nextEvent(t, c, EventRejoined, &seen)
	if ev.Room == "quiet" {
		ev = nextEvent(t, c, EventRejoined, &seen)
	}
	if ev.Room != "r" || ev.Frame.Seq != 7 || len(ev.Frame.History) != 5 {
		t.Fatalf("rejoined %+v", ev)
	}
	e.inject("r", "bob", "live")
	wantSeqs(t, readSeqs(t, c, "r", 6), 3, 8)
	wantRecovered(t, rec, "r", 3, 4, 5, 6, 7)
	for _, ev := range seen {
		if ev.Kind == EventReset {
			t.Fatalf("reset %+v", ev)
		}
	}
	if s := c.Stats(); s.Recovered != 5 || s.Duplicates != 0 || s.Resets != 0 || s.Fetches != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// More missed than one joined reply holds: the client pages with history
// requests until it reaches the joined reply's seq.
func TestResumePagesWhenFarBehind(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	e.setPage(3)
	c, rec := dialRecorded(t, e, nil)
	mustJoin(t, c, "r")
	injectN(e, "r", 2)
	wantSeqs(t, readSeqs(t, c, "r", 2), 1, 2)

	reconnect := disconnect(t, e, c)
	injectN(e, "r", 10) // 3..12
	reconnect()
	if ev := nextEvent(t, c, EventRejoined, nil); len(ev.Frame.History) != 3 || ev.Frame.Seq != 12 {
		t.Fatalf("rejoined %+v", ev)
	}
	e.inject("r", "bob", "live")
	wantSeqs(t, readSeqs(t, c, "r", 11), 3, 13)
	wantRecovered(t, rec, "r", seqRange(3, 12)...)
	if s := c.Stats(); s.Fetches != 3 || s.Recovered != 10 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Missed messages no longer retained: EventReset, then the retained ones.
func TestResumeResetWhenNotRetained(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	e.setPage(3)
	e.setRetain(5)
	c, rec := dialRecorded(t, e, nil)
	mustJoin(t, c, "r")
	injectN(e, "r", 2)
	wantSeqs(t, readSeqs(t, c, "r", 2), 1, 2)

	reconnect := disconnect(t, e, c)
	injectN(e, "r", 10) // 3..12; 8..12 retained
	reconnect()
	ev := nextEvent(t, c, EventReset, nil)
	if ev.Room != "r" || ev.Seq != 2 || !ev.Frame.Reset || ev.Frame.Type != protocol.TypeJoined || ev.Frame.History != nil {
		t.Fatalf("reset event %+v", ev)
	}
	e.inject("r", "bob", "live")
	wantSeqs(t, readSeqs(t, c, "r", 6), 8, 13)
	wantRecovered(t, rec, "r", seqRange(8, 12)...)
	if s := c.Stats(); s.Resets != 1 || s.Recovered != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// A hub that lost its state answers a resume with a lower seq: the client
// starts over, and says so.
func TestResumeAfterSequenceRestart(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, nil)
	mustJoin(t, c, "r")
	injectN(e, "r", 5)
	wantSeqs(t, readSeqs(t, c, "r", 5), 1, 5)
	reconnect := disconnect(t, e, c)
	e.restartRoom("r")
	reconnect()
	if ev := nextEvent(t, c, EventReset, nil); ev.Seq != 5 || ev.Frame.Seq != 0 {
		t.Fatalf("reset %+v", ev)
	}
	nextEvent(t, c, EventRejoined, nil)
	e.inject("r", "bob", "again")
	wantSeqs(t, readSeqs(t, c, "r", 1), 1, 1)
}

func TestJoinSince(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	injectN(e, "r", 60)
	c, rec := dialRecorded(t, e, nil)
	if _, err := c.JoinSince(t.Context(), "r", 55); err != nil {
		t.Fatal(err)
	}
	e.inject("r", "bob", "live")
	wantSeqs(t, readSeqs(t, c, "r", 6), 56, 61)
	wantRecovered(t, rec, "r", 56, 57, 58, 59, 60)

	// Persisted too long ago: reset to what is retained.
	e.setRetain(10)
	injectN(e, "old", 60)
	if _, err := c.JoinSince(t.Context(), "old", 5); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, c, EventReset, nil); ev.Room != "old" || ev.Seq != 5 {
		t.Fatalf("reset %+v", ev)
	}
	wantSeqs(t, readSeqs(t, c, "old", 10), 51, 60)
}

// Joining a room again resumes it: nothing is delivered twice.
func TestJoinTwiceDeliversNothingTwice(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	injectN(e, "r", 3)
	c := dial(t, e, nil)
	mustJoin(t, c, "r")
	wantSeqs(t, readSeqs(t, c, "r", 3), 1, 3)
	e.inject("r", "bob", "four")
	wantSeqs(t, readSeqs(t, c, "r", 1), 4, 4)
	j, err := c.Join(t.Context(), "r")
	if err != nil || j.Seq != 4 || len(j.History) != 0 {
		t.Fatalf("second join %+v, %v", j, err)
	}
	e.inject("r", "bob", "five")
	wantSeqs(t, readSeqs(t, c, "r", 1), 5, 5)
	noMoreMessages(t, c, "r")
	if s := c.Stats(); s.Duplicates != 0 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHistoryRequest(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	injectN(e, "r", 60)
	c := dial(t, e, nil)
	seqsOf := func(p HistoryPage) []uint64 {
		var out []uint64
		for _, f := range p.Messages {
			if f.Type != protocol.TypeMessage || f.Room != "r" {
				t.Fatalf("history entry %+v", f)
			}
			out = append(out, f.Seq)
		}
		return out
	}
	tests := []struct {
		q        HistoryQuery
		from, to uint64
	}{
		{HistoryQuery{After: 10, Limit: 5}, 11, 15},
		{HistoryQuery{Before: 10, Limit: 3}, 7, 9},
		{HistoryQuery{}, 11, 60},
		{HistoryQuery{After: 58}, 59, 60},
	}
	for _, tt := range tests {
		p, err := c.History(t.Context(), "r", tt.q)
		if err != nil || p.Seq != 60 || p.Reset {
			t.Fatalf("History(%+v) = %+v, %v", tt.q, p, err)
		}
		if got := seqsOf(p); !slices.Equal(got, seqRange(tt.from, tt.to)) {
			t.Fatalf("History(%+v) seqs %v", tt.q, got)
		}
	}
	e.setRetain(20)
	p, err := c.History(t.Context(), "r", HistoryQuery{After: 5, Limit: 3})
	if err != nil || !p.Reset || !slices.Equal(seqsOf(p), []uint64{41, 42, 43}) {
		t.Fatalf("beyond retention: %+v, %v", p, err)
	}
	if _, err := c.History(t.Context(), "r", HistoryQuery{Limit: protocol.MaxHistoryLimit + 1}); err == nil {
		t.Fatal("limit above the maximum accepted")
	}
	// History only reads: nothing was delivered.
	if len(c.Messages()) != 0 || c.Stats().Recovered != 0 {
		t.Fatalf("history delivered %d messages", len(c.Messages()))
	}
}

func TestTypingAndReceipts(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	alice := dial(t, e, nil)
	bob := dial(t, e, func(c *Config) { c.Token = mint(t, testSecret, "bob", time.Hour) })
	mustJoin(t, alice, "r")
	mustJoin(t, bob, "r")
	next := func(typ protocol.FrameType) protocol.Frame {
		t.Helper()
		for {
			if f := recvMessage(t, alice); f.Type == typ {
				return f
			}
		}
	}
	if err := bob.Typing(t.Context(), "r"); err != nil {
		t.Fatal(err)
	}
	if f := next(protocol.TypeTypingEvent); f.User != "bob" || f.Room != "r" {
		t.Fatalf("typing %+v", f)
	}
	if err := bob.MarkRead(t.Context(), "r", 7); err != nil {
		t.Fatal(err)
	}
	if f := next(protocol.TypeReceipt); f.User != "bob" || f.Room != "r" || f.Seq != 7 {
		t.Fatalf("receipt %+v", f)
	}
	if err := bob.MarkRead(t.Context(), "r", 0); err == nil {
		t.Fatal("read up to seq 0 accepted")
	}
	if err := bob.Typing(t.Context(), "bad.room"); err == nil {
		t.Fatal("invalid room accepted")
	}
	// Receipts carry a seq but no order: they are never de-duplicated.
	if err := bob.MarkRead(t.Context(), "r", 7); err != nil {
		t.Fatal(err)
	}
	next(protocol.TypeReceipt)
	if s := alice.Stats(); s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// The connection drops after the hub sequenced a publish but before its ack:
// the publish is sent again under the same cmid on the next connection and
// acknowledged once, with the original seq.
func TestPublishRetryAcrossReconnect(t *testing.T) {
	t.Parallel()
	e := newSerialFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, func(cfg *Config) { cfg.RetryPublish = true })
	mustJoin(t, c, "r")
	e.dropAckOnce()
	seq, err := c.Publish(t.Context(), "r", []byte("once"))
	if err != nil || seq != 1 {
		t.Fatalf("publish = %d, %v", seq, err)
	}
	if h, p := e.counts(); p != 2 || e.roomSeq("r") != 1 || h != 0 {
		t.Fatalf("%d publishes, room seq %d, %d history requests", p, e.roomSeq("r"), h)
	}
	if s := c.Stats(); s.Reconnects != 1 {
		t.Fatalf("stats %+v", s)
	}
	if seq, err := c.Publish(t.Context(), "r", []byte("two")); err != nil || seq != 2 {
		t.Fatalf("second publish = %d, %v", seq, err)
	}
	// The message arrived once: live before the drop, or through the resume.
	wantSeqs(t, readSeqs(t, c, "r", 2), 1, 2)
	noMoreMessages(t, c, "r")

	// Published while disconnected: it waits for the connection.
	reconnect := disconnect(t, e, c)
	res := make(chan error, 1)
	go func() {
		seq, err := c.Publish(t.Context(), "r", []byte("three"))
		if err == nil && seq != 3 {
			err = fmt.Errorf("seq %d", seq)
		}
		res <- err
	}()
	reconnect()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("publish never returned")
	}
	wantSeqs(t, readSeqs(t, c, "r", 1), 3, 3)

	// Only ctx ends the retries.
	disconnect(t, e, c)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Publish(ctx, "r", []byte("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with an expired ctx: %v", err)
	}
}

// A history request that gets no reply is sent again after RequestTimeout;
// a retryable refusal is retried after a backoff; a final refusal skips the
// gap with EventReset.
func TestFetchTimeoutAndErrors(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c, rec := dialRecorded(t, e, func(cfg *Config) { cfg.RequestTimeout = 300 * time.Millisecond })
	mustJoin(t, c, "r")
	e.inject("r", "bob", "one")
	wantSeqs(t, readSeqs(t, c, "r", 1), 1, 1)

	e.faultHistory(0, protocol.CodeUnavailable)
	e.hideNext("r", 1)
	injectN(e, "r", 2) // 2 hidden
	wantSeqs(t, readSeqs(t, c, "r", 2), 2, 3)
	wantRecovered(t, rec, "r", 2)
	if s := c.Stats(); s.Fetches != 3 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}

	e.faultHistory(protocol.CodeForbidden)
	e.hideNext("r", 1)
	injectN(e, "r", 2) // 4 hidden, and refused
	ev := nextEvent(t, c, EventReset, nil)
	if ev.Room != "r" || ev.Seq != 3 || ev.Frame.Code != protocol.CodeForbidden {
		t.Fatalf("reset %+v", ev)
	}
	wantSeqs(t, readSeqs(t, c, "r", 1), 5, 5)
}

// A consumer that does not read never holds up replies or the connection,
// and loses no room message: the first that does not fit is set aside, the
// following ones are held behind it, and all are delivered once it reads.
func TestSlowConsumerLosesNothing(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c, rec := dialRecorded(t, e, func(c *Config) { c.RecvBuffer = 4 })
	mustJoin(t, c, "a")
	for i := range 20 {
		if _, err := c.Publish(t.Context(), "a", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("publish %d with a full buffer: %v", i, err)
		}
	}
	// Each message reached the client before its ack.
	if s := c.Stats(); s.Refetched != 1 || len(c.Messages()) != 4 {
		t.Fatalf("stats %+v, %d buffered", s, len(c.Messages()))
	}
	if ev := nextEvent(t, c, EventOverflow, nil); ev.Dropped != 0 {
		t.Fatalf("overflow event %+v", ev)
	}
	wantSeqs(t, readSeqs(t, c, "a", 20), 1, 20)
	wantRecovered(t, rec, "a", 5)
	if _, err := c.Publish(t.Context(), "a", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if m := recvMessage(t, c); m.Seq != 21 || string(m.Body) != "again" {
		t.Fatalf("after drain %+v", m)
	}
	if s := c.Stats(); s.Dropped != 0 || s.Duplicates != 0 || s.Resets != 0 || s.Reconnects != 0 || e.acceptedCount() != 1 {
		t.Fatalf("stats %+v, %d connections", s, e.acceptedCount())
	}
}

// Frames without seq cannot be fetched again: they are dropped and counted
// when Messages is full.
func TestNoticesDroppedWhenFull(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, testSecret, time.Second)
	c := dial(t, e, func(c *Config) { c.RecvBuffer = 2 })
	for range 5 {
		e.sendAll(&protocol.Frame{Type: protocol.TypeMessage, Room: "news", From: "ops", Body: []byte("notice")})
	}
	waitFor(t, "3 drops", func() bool { return c.Stats().Dropped == 3 })
	if ev := nextEvent(t, c, EventOverflow, nil); ev.Dropped != 1 {
		t.Fatalf("overflow %+v", ev)
	}
	for range 2 {
		if f := recvMessage(t, c); f.Seq != 0 || f.Room != "news" {
			t.Fatalf("notice %+v", f)
		}
	}
}

// Chaos on one room: hidden broadcasts, re-broadcasts and dropped
// connections while messages flow. The consumer must see every seq once,
// in order, with no reset, whatever the buffer sizes.
func TestDeliveryUnderChaos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		hold, recv int
	}{
		{"defaults", 0, 0},
		{"small hold", 5, 16},
		{"tiny buffer", 0, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEdge(t, testSecret, time.Second)
			e.setPage(7)
			c, rec := dialRecorded(t, e, func(cfg *Config) { cfg.HoldLimit, cfg.RecvBuffer = tt.hold, tt.recv })
			mustJoin(t, c, "r")

			const n, window = 300, 20
			var got []uint64
			var readErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, readErr = collectSeqs(c, "r", n, 2*waitTimeout)
			}()
			rnd := rand.New(rand.NewPCG(uint64(i), 2))
			for i := 1; i <= n; i++ {
				// Keep within a window of what was delivered, so that live
				// traffic, gaps and reconnections interleave.
				waitFor(t, "the client to keep up", func() bool { return rec.count() >= i-window })
				switch x := rnd.IntN(40); {
				case x < 3:
					e.hideNext("r", 1+rnd.IntN(3))
				case x < 5:
					if i > 1 {
						e.rebroadcast("r")
					}
				case x == 5:
					e.dropUser("alice")
				}
				if i == n {
					e.hideNext("r", 0) // the last one must arrive to reveal any gap
				}
				e.inject("r", "bob", fmt.Sprint(i))
			}
			<-done
			if readErr != nil {
				t.Fatal(readErr)
			}
			wantSeqs(t, got, 1, n)
			if s := c.Stats(); s.Resets != 0 {
				t.Fatalf("stats %+v", s)
			}
			var last uint64
			for _, d := range rec.of("r") {
				if d.seq != last+1 {
					t.Fatalf("OnDeliver saw %d after %d", d.seq, last)
				}
				last = d.seq
			}
			t.Logf("stats %+v", c.Stats())
		})
	}
}

// BenchmarkReceive measures the reader's path for an in-order live message
// of a joined room, with and without an OnDeliver hook: it must not
// allocate.
func BenchmarkReceive(b *testing.B) {
	for _, hook := range []bool{false, true} {
		b.Run(fmt.Sprintf("hook=%v", hook), func(b *testing.B) {
			c := &Client{msgs: make(chan protocol.Frame, 1), kick: make(chan struct{}, 1),
				rooms: map[string]*room{"r": {name: "r", joined: true}}}
			if hook {
				c.cfg.OnDeliver = func(protocol.Frame, bool) {}
			}
			s := &session{c: c}
			f := protocol.Frame{Type: protocol.TypeMessage, Room: "r", From: "bob", CMID: "x", Body: []byte("hello")}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				f.Seq = uint64(i + 1)
				c.onMessage(s, f)
				<-c.msgs
			}
		})
	}
}
