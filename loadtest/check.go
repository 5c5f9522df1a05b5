package loadtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/hearth-gateway/hearth/shared/checker"
)

// With Config.Check, every connection keeps a compact log of what it did and
// saw — publishes, acks, its joined reply, deliveries, and a server-side
// disconnect — and at the end each worker ships its logs to the coordinator
// over the JSON-lines link, in order per connection, before its result. The
// coordinator replays them into one checker.Checker; its Report (lost,
// duplicated, reordered, recovered, diverged) goes into the JSON result and
// the summary, and a verdict that is not OK makes Run fail with
// ErrCheckFailed.
//
// The log is kept next to the tool's own range accounting, not instead of it:
// the range accounting costs a few words per member and scales to any run,
// the checker keeps every delivery and so is bounded by maxCheckEvents.

// maxCheckEvents bounds the events one checked run may record. A worker's
// log costs about 6 bytes an event, but the coordinator's Checker keeps
// every delivery in its maps: about 70 bytes an event, so some 350 MB and
// 10–15 s of replay at the bound (measured on the 2-core bench machine).
// Config.normalize refuses a run whose estimate is larger; a worker that
// records more (which only a misbehaving server can cause) stops recording
// and the check is reported incomplete.
const maxCheckEvents = 5_000_000

// ErrCheckFailed is wrapped by Run's error when the -check verdict is not OK.
var ErrCheckFailed = errors.New("loadtest: check failed")

// Event kinds of a connection's log. Each event is its kind byte followed by
// uvarints; the connection (and so its room) is implied by the log.
const (
	evSent      byte = iota + 1 // counter: the connection published its message #counter
	evAcked                     // seq, pub, counter: the ack gave message pub/counter seq
	evJoined                    // seq: the joined reply's snapshot
	evLive                      // seq, pub, counter: a broadcast delivery
	evRecovered                 // seq, pub, counter: a message in the joined reply's history
	evForeign                   // seq: a delivery whose cmid is not the tool's
	evLeft                      // seq: the server closed the connection; seq is the last it delivered
)

// checkBlock is the size at which a connection's log starts a new block,
// and so the largest piece of one connection's log in one line.
const checkBlock = 64 << 10

// checkLine bounds the raw event bytes of one check line.
const checkLine = 1 << 20

// eventLog is one connection's history, appended by the goroutine that saw
// the event with the connection's mu held.
type eventLog struct {
	blocks [][]byte
	n      uint64 // events recorded
	maxSeq uint64 // the highest seq delivered
	sealed bool   // shipped: later events are not part of the run
}

// put appends one event.
func (l *eventLog) put(kind byte, vals ...uint64) {
	n := len(l.blocks)
	if n == 0 || len(l.blocks[n-1]) >= checkBlock {
		l.blocks = append(l.blocks, make([]byte, 0, 64))
		n++
	}
	b := append(l.blocks[n-1], kind)
	for _, v := range vals {
		b = binary.AppendUvarint(b, v)
	}
	l.blocks[n-1] = b
	l.n++
}

// workerCheck is a worker's share of the check: the bound on its events.
type workerCheck struct {
	events   atomic.Uint64 // recorded or refused
	overflow atomic.Bool
}

// record appends an event to c's log. c.mu held on entry.
func (c *lconn) record(kind byte, vals ...uint64) {
	ck := c.w.ck
	if ck == nil || c.ck.sealed {
		return
	}
	if ck.events.Add(1) > maxCheckEvents {
		ck.overflow.Store(true)
		return
	}
	c.ck.put(kind, vals...)
}

// recordDelivery logs the delivery of a message frame with seq. c.mu held
// on entry.
func (c *lconn) recordDelivery(kind byte, seq uint64, cmid string) {
	if seq == 0 {
		return // an unsequenced notice, not a room message
	}
	c.ck.maxSeq = max(c.ck.maxSeq, seq)
	if h, ok := parseCMID(cmid); ok {
		c.record(kind, seq, uint64(h.pub), h.counter)
	} else {
		c.record(evForeign, seq)
	}
}

// connLog is a piece of one connection's log on the wire; the pieces of one
// connection arrive in order.
type connLog struct {
	Conn   int    `json:"c"`
	Events []byte `json:"e"`
}

// checkBatch is one check line: pieces of one or more connections' logs.
type checkBatch struct {
	Logs []connLog `json:"logs"`
}

// shipCheck seals every connection's log and writes them as check lines of
// at most about checkLine bytes. It returns the number of events shipped.
func (w *worker) shipCheck() (uint64, error) {
	var n uint64
	var batch checkBatch
	size := 0
	flush := func() error {
		if len(batch.Logs) == 0 {
			return nil
		}
		err := w.out.write(workerMsg{Type: msgCheck, Check: &batch})
		batch, size = checkBatch{}, 0
		return err
	}
	for _, c := range w.conns {
		c.mu.Lock()
		c.ck.sealed = true
		blocks := c.ck.blocks
		n += c.ck.n
		c.ck.blocks = nil
		c.mu.Unlock()
		for _, b := range blocks {
			batch.Logs = append(batch.Logs, connLog{Conn: c.g, Events: b})
			if size += len(b); size >= checkLine {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
	}
	return n, flush()
}

// CheckResult is the verdict of a -check run.
type CheckResult struct {
	// OK is the checker's verdict on a complete history.
	OK bool `json:"ok"`
	// Events is the number of events the coordinator replayed.
	Events uint64 `json:"events"`
	// Incomplete says why the history is partial (a worker without a
	// result, a worker over the event bound, an undecodable log); a check
	// with an incomplete history is not OK.
	Incomplete []string `json:"incomplete,omitempty"`
	// Report is the checker's report.
	Report checker.Report `json:"report"`
}

// Verdict is "OK" or "FAILED: " and a short list of what failed.
func (r *CheckResult) Verdict() string {
	if r.OK {
		return "OK"
	}
	return "FAILED: " + r.failures()
}

// failures lists what failed, e.g. "2 lost, 1 duplicated; incomplete history".
func (r *CheckResult) failures() string {
	var s string
	add := func(n int, what string) {
		if n == 0 {
			return
		}
		if s != "" {
			s += ", "
		}
		s += strconv.Itoa(n) + " " + what
	}
	add(r.Report.Lost, "lost")
	add(r.Report.Duplicated, "duplicated")
	add(r.Report.Reordered, "reordered")
	add(len(r.Report.Diverged), "diverged")
	if len(r.Incomplete) > 0 {
		if s != "" {
			s += "; "
		}
		s += "incomplete history"
	}
	return s
}

// WriteTable prints the verdict and the checker's table.
func (r *CheckResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "check: %s (%d events)\n", r.Verdict(), r.Events)
	r.Report.WriteTable(w)
	for _, s := range r.Incomplete {
		fmt.Fprintf(w, "  incomplete: %s\n", s)
	}
}

// msgKey names a message of the run: its publisher and counter.
type msgKey struct {
	pub     uint32
	counter uint64
}

// checkRun replays the workers' logs into one Checker. Only the
// coordinator's run goroutine uses it.
type checkRun struct {
	cfg    *Config
	ck     *checker.Checker
	rooms  []string
	ids    map[msgKey]checker.MsgID // interned: one MsgID per message, not per delivery
	events uint64
	// got counts the events replayed per worker, to be matched against the
	// count in its result.
	got        []uint64
	full       bool
	incomplete []string
}

func newCheckRun(cfg *Config, runID string, workers int) *checkRun {
	r := &checkRun{
		cfg:   cfg,
		ck:    checker.New(),
		rooms: make([]string, cfg.Rooms),
		ids:   make(map[msgKey]checker.MsgID),
		got:   make([]uint64, workers),
	}
	for i := range r.rooms {
		r.rooms[i] = roomName(runID, i)
	}
	return r
}

func clientName(g int) string { return "c" + strconv.Itoa(g) }

func (r *checkRun) id(pub uint32, counter uint64) checker.MsgID {
	k := msgKey{pub, counter}
	id, ok := r.ids[k]
	if !ok {
		id = checker.MsgID{From: clientName(int(pub)), CMID: strconv.FormatUint(counter, 10)}
		r.ids[k] = id
	}
	return id
}

// errBadLog reports an undecodable event log.
var errBadLog = errors.New("undecodable event")

// feed replays worker w's batch.
func (r *checkRun) feed(w int, b *checkBatch) {
	for _, l := range b.Logs {
		if err := r.replay(w, l); err != nil {
			r.incomplete = append(r.incomplete, fmt.Sprintf("worker %d, connection %d: %v", w, l.Conn, err))
		}
	}
}

// replay replays one piece of a connection's log.
func (r *checkRun) replay(w int, l connLog) error {
	if l.Conn < 0 || l.Conn >= r.cfg.Conns {
		return fmt.Errorf("%w: no connection %d", errBadLog, l.Conn)
	}
	client, room := clientName(l.Conn), r.rooms[r.cfg.room(l.Conn)]
	b := l.Events
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	for len(b) > 0 {
		if r.events >= maxCheckEvents {
			if !r.full {
				r.full = true
				r.incomplete = append(r.incomplete, fmt.Sprintf("more than %d events: the rest were not checked", maxCheckEvents))
			}
			return nil
		}
		kind := b[0]
		b = b[1:]
		var v [3]uint64
		args := 0
		switch kind {
		case evSent, evJoined, evForeign, evLeft:
			args = 1
		case evAcked, evLive, evRecovered:
			args = 3
		default:
			return fmt.Errorf("%w: kind %d", errBadLog, kind)
		}
		for i := 0; i < args; i++ {
			var ok bool
			if v[i], ok = next(); !ok {
				return fmt.Errorf("%w: truncated kind %d", errBadLog, kind)
			}
		}
		if (kind == evAcked || kind == evLive || kind == evRecovered) && v[1] > 1<<32-1 {
			return fmt.Errorf("%w: publisher %d", errBadLog, v[1])
		}
		r.events++
		r.got[w]++
		switch kind {
		case evSent:
			r.ck.Sent(room, r.id(uint32(l.Conn), v[0]))
		case evAcked:
			r.ck.Acked(room, r.id(uint32(v[1]), v[2]), v[0])
		case evJoined:
			r.ck.Joined(client, room, v[0])
		case evLive:
			r.ck.Delivered(client, room, v[0], r.id(uint32(v[1]), v[2]), checker.Live)
		case evRecovered:
			r.ck.Delivered(client, room, v[0], r.id(uint32(v[1]), v[2]), checker.Recovered)
		case evForeign:
			r.ck.Delivered(client, room, v[0], checker.MsgID{From: "?", CMID: "?"}, checker.Live)
		case evLeft:
			r.ck.Left(client, room, v[0])
		}
	}
	return nil
}

// result computes the verdict once every worker has reported (or is gone).
func (r *checkRun) result(workers []*workerResult) *CheckResult {
	inc := append([]string(nil), r.incomplete...)
	for i, wr := range workers {
		switch {
		case wr == nil:
			inc = append(inc, fmt.Sprintf("worker %d sent no result", i))
		case wr.CheckOverflow:
			inc = append(inc, fmt.Sprintf("worker %d recorded more than %d events and stopped recording", i, maxCheckEvents))
		case wr.CheckEvents != r.got[i] && !r.full:
			inc = append(inc, fmt.Sprintf("worker %d shipped %d events, %d arrived", i, wr.CheckEvents, r.got[i]))
		}
	}
	rep := r.ck.Report()
	return &CheckResult{OK: rep.OK() && len(inc) == 0, Events: r.events, Incomplete: inc, Report: rep}
}

// checkEvents estimates the events a checked run records: a send and an ack
// per message, a delivery per message and member of its room, and a join
// and at most one disconnect per connection.
func (c *Config) checkEvents() float64 {
	var msgs float64
	for p := 0; p < c.steps(); p++ {
		msgs += c.phaseRate(p) * c.phaseLen().Seconds()
	}
	return msgs*float64(2+c.Members) + 2*float64(c.Conns)
}
