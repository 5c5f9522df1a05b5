package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

// worker runs one share of a run's connections.
type worker struct {
	spec   workerSpec
	cfg    *Config
	out    *lineWriter
	dialer *dialer
	rooms  []string
	conns  []*lconn

	ctr struct {
		dials, connected, connectErrors, joined, joinErrors, disconnects atomic.Uint64
		sent, sendErrors, skipped, acked, failed, delivered, duplicated  atomic.Uint64
		stale, corrupt, presence, errorFrames, badFrames                 atomic.Uint64
	}
	open, joinedNow atomic.Int64

	e2e, ack           [maxPhases]*recorder
	connect, join, lag *recorder
	phaseAcked         [maxPhases]atomic.Uint64
	phaseDelivered     [maxPhases]atomic.Uint64

	ackMu   sync.Mutex // guards acked and dupAcks
	acked   map[int]*rangeSet
	dupAcks uint64

	errMu      sync.Mutex // guards the maps and samples below
	errCodes   map[string]uint64
	closeCodes map[string]uint64
	connErrs   []string

	firstDial, lastConnect atomic.Int64

	ck *workerCheck // nil unless Config.Check

	readers sync.WaitGroup // the connections' gws read loops
	last    counters       // owned by the progress emitter
}

// RunWorker is `hearth-load worker`: it reads a workerSpec and then
// commands from in, runs its share of the connections, and writes progress
// and its result to out as JSON lines. It returns when the result is
// written, or when ctx ends or the spec's hard deadline passes.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	sc := newLineScanner(in)
	var spec workerSpec
	if err := readLine(sc, &spec); err != nil {
		return fmt.Errorf("loadtest: reading worker spec: %w", err)
	}
	lw := newLineWriter(out)
	w, err := newWorker(spec, lw)
	if err != nil {
		_ = lw.write(workerMsg{Type: msgError, Error: err.Error()})
		return err
	}
	cmds := make(chan command, 8)
	go func() {
		// Ends with the input: EOF (the coordinator is gone) means finish.
		defer close(cmds)
		for {
			var c command
			if err := readLine(sc, &c); err != nil {
				return
			}
			cmds <- c
		}
	}()
	return w.run(ctx, cmds)
}

func newWorker(spec workerSpec, out *lineWriter) (*worker, error) {
	cfg := spec.Config
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if spec.First < 0 || spec.Last > cfg.Conns || spec.First > spec.Last {
		return nil, fmt.Errorf("%w: worker range [%d, %d) of %d connections", ErrConfig, spec.First, spec.Last, cfg.Conns)
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return nil, err
	}
	w := &worker{
		spec:       spec,
		cfg:        &cfg,
		out:        out,
		dialer:     d,
		connect:    newRecorder(),
		join:       newRecorder(),
		lag:        newRecorder(),
		acked:      make(map[int]*rangeSet),
		errCodes:   make(map[string]uint64),
		closeCodes: make(map[string]uint64),
	}
	if cfg.Check {
		w.ck = &workerCheck{}
	}
	for p := 0; p < cfg.steps(); p++ {
		w.e2e[p], w.ack[p] = newRecorder(), newRecorder()
	}
	for p := cfg.steps(); p < maxPhases; p++ {
		// Frames claiming a phase beyond the schedule still have somewhere to go.
		w.e2e[p], w.ack[p] = w.e2e[0], w.ack[0]
	}
	w.rooms = make([]string, cfg.Rooms)
	for r := range w.rooms {
		w.rooms[r] = roomName(spec.RunID, r)
	}
	w.conns = make([]*lconn, spec.Last-spec.First)
	for i := range w.conns {
		g := spec.First + i
		w.conns[i] = &lconn{w: w, g: g, room: cfg.room(g), pub: cfg.isPublisher(g)}
	}
	return w, nil
}

func (w *worker) run(parent context.Context, cmds <-chan command) error {
	deadline := time.Unix(0, w.spec.T0).Add(w.cfg.hardTimeout())
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()

	tickStop := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		w.tickLoop(tickStop)
	}()

	w.connectAll(ctx)
	if w.cfg.joins() {
		w.waitJoins(ctx)
	}
	ready := w.totals()
	_ = w.out.write(workerMsg{Type: msgReady, Ready: &ready})

	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	close(pubDone) // replaced when publishing starts
wait:
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				break wait
			}
			switch c.Cmd {
			case cmdStart:
				if w.cfg.publishes() {
					pubDone = make(chan struct{})
					go func(done chan struct{}) {
						defer close(done)
						w.publishLoop(pubCtx, time.Unix(0, c.At))
					}(pubDone)
				}
			case cmdStop:
				stopPub()
			case cmdFinish:
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	stopPub()
	<-pubDone
	close(tickStop)
	<-tickDone
	// The last, partial tick, then the connections close and the result goes.
	w.emitProgress(w.tickOf(time.Now()) + 1)
	w.closeAll(10 * time.Second)
	res := w.result()
	if w.ck != nil {
		// The logs go first: the coordinator matches their count against
		// the result's.
		n, err := w.shipCheck()
		if err != nil {
			return fmt.Errorf("loadtest: shipping check events: %w", err)
		}
		res.CheckEvents, res.CheckOverflow = n, w.ck.overflow.Load()
	}
	return w.out.write(workerMsg{Type: msgResult, Result: res})
}

// tickOf returns the tick whose interval ends at or after t.
func (w *worker) tickOf(t time.Time) int {
	d := t.UnixNano() - w.spec.T0
	if d <= 0 {
		return 0
	}
	return int(d / int64(time.Second))
}

// tickLoop emits a progress message at T0 + k seconds until stop is closed.
func (w *worker) tickLoop(stop <-chan struct{}) {
	k := w.tickOf(time.Now()) + 1
	for {
		at := time.Unix(0, w.spec.T0+int64(k)*int64(time.Second))
		t := time.NewTimer(time.Until(at))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		w.emitProgress(k)
		k = max(k+1, w.tickOf(time.Now())+1)
	}
}

// connectAll dials the worker's connections, paced over the ramp, with at
// most DialConcurrency attempts in flight. It returns when every attempt
// has finished or ctx ends.
func (w *worker) connectAll(ctx context.Context) {
	n := len(w.conns)
	if n == 0 {
		return
	}
	sem := make(chan struct{}, w.cfg.DialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	step := time.Duration(0)
	if w.cfg.Ramp > 0 {
		step = w.cfg.Ramp / time.Duration(n)
	}
	for i, c := range w.conns {
		if step > 0 {
			if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
				if !sleepCtx(ctx, d) {
					break
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(c *lconn) {
			defer wg.Done()
			defer func() { <-sem }()
			w.dial(ctx, c)
		}(c)
	}
	wg.Wait()
}

// dial opens one connection, waits for its welcome and sends its join.
func (w *worker) dial(ctx context.Context, c *lconn) {
	start := time.Now()
	w.firstDial.CompareAndSwap(0, start.UnixNano())
	w.ctr.dials.Add(1)
	tok, err := w.dialer.token(userName(w.spec.RunID, c.g/w.cfg.ConnsPerUser))
	if err != nil {
		w.connectFailed(err.Error())
		return
	}
	c.welcome = make(chan struct{})
	c.done = make(chan struct{})
	ws, resp, err := gws.NewClient(c, w.dialer.option(c.g, tok))
	if err != nil {
		msg := err.Error()
		if resp != nil {
			msg = fmt.Sprintf("HTTP %d: %v", resp.StatusCode, err)
		}
		w.connectFailed(msg)
		return
	}
	c.ws = ws
	w.open.Add(1)
	w.readers.Add(1)
	go func() {
		defer w.readers.Done()
		ws.ReadLoop()
	}()
	t := time.NewTimer(w.cfg.ConnectTimeout - time.Since(start))
	defer t.Stop()
	select {
	case <-c.welcome:
	case <-c.done:
		w.connectFailed("closed before the welcome")
		return
	case <-t.C:
		w.connectFailed("no welcome in time")
		c.close()
		return
	case <-ctx.Done():
		c.close()
		return
	}
	now := time.Now()
	w.connect.record(c.g, now.Sub(start).Microseconds())
	w.ctr.connected.Add(1)
	for {
		last := w.lastConnect.Load()
		if now.UnixNano() <= last || w.lastConnect.CompareAndSwap(last, now.UnixNano()) {
			break
		}
	}
	if !w.cfg.joins() {
		return
	}
	c.joinSent.Store(time.Now().UnixNano())
	b, err := protocol.EncodeFrame(&protocol.Frame{Type: protocol.TypeJoin, ID: joinID, Room: w.rooms[c.room]})
	if err == nil {
		err = c.write(b)
	}
	if err != nil {
		w.ctr.joinErrors.Add(1)
	}
}

func (w *worker) connectFailed(msg string) {
	w.ctr.connectErrors.Add(1)
	w.errMu.Lock()
	if len(w.connErrs) < 10 {
		w.connErrs = append(w.connErrs, msg)
	}
	w.errMu.Unlock()
}

// waitJoins waits until every open connection has its join answered, or
// JoinTimeout passes.
func (w *worker) waitJoins(ctx context.Context) {
	deadline := time.Now().Add(w.cfg.JoinTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending := 0
		for _, c := range w.conns {
			if c.state.Load() == stateOpen {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// publishLoop publishes from the worker's publishing connections on the
// phase schedule that starts at start, until the schedule ends or ctx is
// done. Each message goes out at its planned time; when the loop falls more
// than a second behind it skips (and counts) what it missed rather than
// bursting.
func (w *worker) publishLoop(ctx context.Context, start time.Time) {
	var pubs []*lconn
	for _, c := range w.conns {
		if c.pub {
			pubs = append(pubs, c)
		}
	}
	if len(pubs) == 0 || w.cfg.Publishers == 0 {
		return
	}
	share := float64(len(pubs)) / float64(w.cfg.Publishers)
	phaseLen := w.cfg.phaseLen()
	next := start
	rr := 0
	for p := 0; p < w.cfg.steps(); p++ {
		pStart := start.Add(time.Duration(p) * phaseLen)
		pEnd := pStart.Add(phaseLen)
		rate := w.cfg.phaseRate(p) * share
		if next.Before(pStart) {
			next = pStart
		}
		if rate <= 0 {
			if !sleepCtx(ctx, time.Until(pEnd)) {
				return
			}
			continue
		}
		interval := time.Duration(float64(time.Second) / rate)
		for next.Before(pEnd) {
			if d := time.Until(next); d > 0 {
				if !sleepCtx(ctx, d) {
					return
				}
			} else if ctx.Err() != nil {
				return
			}
			if behind := time.Since(next); behind > time.Second {
				missed := uint64(behind / interval)
				w.ctr.skipped.Add(missed)
				next = next.Add(time.Duration(missed) * interval)
			}
			// The next publisher that is in its room.
			var c *lconn
			for range pubs {
				cand := pubs[rr%len(pubs)]
				rr++
				if cand.state.Load() == stateJoined {
					c = cand
					break
				}
			}
			if c == nil {
				w.ctr.skipped.Add(1)
			} else {
				w.publish(c, uint16(p), next)
			}
			next = next.Add(interval)
		}
	}
}

// publish sends one message from c. Called by the pacing goroutine only.
func (w *worker) publish(c *lconn, phase uint16, planned time.Time) {
	c.counter++
	c.reqID++
	if c.reqID < firstPublishID {
		c.reqID = firstPublishID
	}
	now := time.Now()
	w.lag.record(c.g, now.Sub(planned).Microseconds())
	h := msgHeader{sent: now.UnixNano(), phase: phase, pub: uint32(c.g), counter: c.counter}
	body := make([]byte, w.cfg.Payload)
	h.putBody(body)
	b, err := protocol.EncodeFrame(&protocol.Frame{
		Type: protocol.TypePublish, ID: c.reqID, Room: w.rooms[c.room], CMID: h.cmid(), Body: body,
	})
	if err == nil {
		if w.ck != nil {
			c.mu.Lock()
			c.record(evSent, c.counter)
			c.mu.Unlock()
		}
		err = c.write(b)
	}
	if err != nil {
		w.ctr.sendErrors.Add(1)
		return
	}
	w.ctr.sent.Add(1)
}

// writeTimeout bounds every write of the tool.
const writeTimeout = 2 * time.Second

// write sends one binary message with a bounded wait.
func (c *lconn) write(b []byte) error {
	_ = c.ws.NetConn().SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.ws.WriteMessage(gws.OpcodeBinary, b)
}

// close ends the connection from the tool's side.
func (c *lconn) close() {
	if c.ws == nil {
		return
	}
	c.closing.Store(true)
	_ = c.ws.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.ws.WriteClose(1000, nil)
	_ = c.ws.NetConn().Close()
}

// closeAll closes every connection and waits up to limit for the read
// loops to end.
func (w *worker) closeAll(limit time.Duration) {
	for _, c := range w.conns {
		if c.ws != nil && c.state.Load() != stateClosed {
			c.close()
		}
	}
	done := make(chan struct{})
	go func() {
		w.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
		fmt.Fprintf(os.Stderr, "hearth-load worker %d: read loops still running after %v\n", w.spec.Index, limit)
	}
}

// totals snapshots the counters.
func (w *worker) totals() counters {
	c := &w.ctr
	return counters{
		Dials: c.dials.Load(), Connected: c.connected.Load(), ConnectErrors: c.connectErrors.Load(),
		Joined: c.joined.Load(), JoinErrors: c.joinErrors.Load(), Disconnects: c.disconnects.Load(),
		Sent: c.sent.Load(), SendErrors: c.sendErrors.Load(), Skipped: c.skipped.Load(),
		Acked: c.acked.Load(), Failed: c.failed.Load(), Delivered: c.delivered.Load(),
		Duplicated: c.duplicated.Load(), Stale: c.stale.Load(), Corrupt: c.corrupt.Load(),
		Presence: c.presence.Load(), ErrorFrames: c.errorFrames.Load(), BadFrames: c.badFrames.Load(),
	}
}

// emitProgress writes tick k's progress. Called by one goroutine at a time.
func (w *worker) emitProgress(k int) {
	cur := w.totals()
	p := &progress{
		Tick:   k,
		C:      cur.sub(w.last),
		Open:   w.open.Load(),
		Joined: w.joinedNow.Load(),
		Hists:  make(map[string][]byte),
	}
	w.last = cur
	p.Inflight = int64(cur.Sent) - int64(cur.Acked) - int64(cur.Failed)
	n := w.cfg.steps()
	p.PhaseAcked = make([]uint64, n)
	p.PhaseDelivered = make([]uint64, n)
	for i := 0; i < n; i++ {
		p.PhaseAcked[i] = w.phaseAcked[i].Load()
		p.PhaseDelivered[i] = w.phaseDelivered[i].Load()
	}
	put := func(name string, r *recorder) {
		if b, err := encodeHist(r.swap()); err == nil && b != nil {
			p.Hists[name] = b
		}
	}
	for i := 0; i < n; i++ {
		put("e2e/"+strconv.Itoa(i), w.e2e[i])
		put("ack/"+strconv.Itoa(i), w.ack[i])
	}
	put("connect", w.connect)
	put("join", w.join)
	put("lag", w.lag)
	if s, err := readProc(os.Getpid()); err == nil {
		p.CPU, p.RSS = s.CPU.Seconds(), s.RSS
	}
	_ = w.out.write(workerMsg{Type: msgProgress, Progress: p})
}

// result builds the final report. The read loops have ended (or the
// trackers are read under their locks anyway).
func (w *worker) result() *workerResult {
	r := &workerResult{
		Totals:      w.totals(),
		FirstDial:   w.firstDial.Load(),
		LastConnect: w.lastConnect.Load(),
	}
	if w.cfg.publishes() {
		for _, c := range w.conns {
			c.mu.Lock()
			t := c.trk
			t.Missing = append([]seqRange(nil), c.trk.Missing...)
			c.mu.Unlock()
			if !t.Started && t.Stale == 0 {
				continue
			}
			// Live: still connected when the run finished (closed by the
			// tool, never by the server).
			live := !c.disconnected.Load()
			r.Members = append(r.Members, memberReport{Room: c.room, Conn: c.g, Live: live, T: t})
		}
		w.ackMu.Lock()
		r.Acked = make(map[int][]seqRange, len(w.acked))
		for room, s := range w.acked {
			r.Acked[room] = s.ranges()
		}
		r.DupAcks = w.dupAcks
		w.ackMu.Unlock()
	}
	w.errMu.Lock()
	r.ErrorCodes = w.errCodes
	r.CloseCodes = w.closeCodes
	r.ConnectErrorSamples = w.connErrs
	w.errMu.Unlock()
	return r
}

func (w *worker) countError(code uint16) {
	w.errMu.Lock()
	w.errCodes[strconv.Itoa(int(code))]++
	w.errMu.Unlock()
}

func (w *worker) countClose(code int) {
	w.errMu.Lock()
	w.closeCodes[strconv.Itoa(code)]++
	w.errMu.Unlock()
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
