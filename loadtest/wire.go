package loadtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// The coordinator and its workers speak JSON lines: the coordinator writes
// a workerSpec and then commands to the worker's stdin; the worker writes
// workerMsgs to its stdout. Logs go to stderr.

// maxPhases bounds the phases (fan-out steps) of one run.
const maxPhases = 32

// workerSpec is the first line a worker reads: what it is to do.
type workerSpec struct {
	Config Config `json:"config"`
	RunID  string `json:"run_id"`
	Index  int    `json:"index"`
	Count  int    `json:"count"`
	// First and Last delimit the worker's global connection indices: [First, Last).
	First int `json:"first"`
	Last  int `json:"last"`
	// T0 is the run's epoch in Unix ns: progress tick k covers (T0+(k-1)s, T0+k s].
	T0 int64 `json:"t0"`
}

// Commands from the coordinator.
const (
	cmdStart  = "start"  // begin publishing (or holding) at At
	cmdStop   = "stop"   // stop publishing; keep connections and keep counting
	cmdFinish = "finish" // report the result, close connections and exit
)

type command struct {
	Cmd string `json:"cmd"`
	At  int64  `json:"at,omitempty"`
}

// Message types from a worker.
const (
	msgProgress = "progress"
	msgReady    = "ready"
	msgResult   = "result"
	msgError    = "error"
	// msgCheck carries event logs (Config.Check), after the last progress
	// and before the result.
	msgCheck = "check"
)

type workerMsg struct {
	Type     string        `json:"type"`
	Progress *progress     `json:"progress,omitempty"`
	Ready    *counters     `json:"ready,omitempty"`
	Result   *workerResult `json:"result,omitempty"`
	Check    *checkBatch   `json:"check,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// counters are a worker's event counts: interval deltas in a progress
// message, totals in a result.
type counters struct {
	Dials         uint64 `json:"dials,omitempty"`
	Connected     uint64 `json:"connected,omitempty"`
	ConnectErrors uint64 `json:"connect_errors,omitempty"`
	Joined        uint64 `json:"joined,omitempty"`
	JoinErrors    uint64 `json:"join_errors,omitempty"`
	Disconnects   uint64 `json:"disconnects,omitempty"`
	Sent          uint64 `json:"sent,omitempty"`
	SendErrors    uint64 `json:"send_errors,omitempty"`
	Skipped       uint64 `json:"skipped,omitempty"`
	Acked         uint64 `json:"acked,omitempty"`
	Failed        uint64 `json:"failed,omitempty"`
	Delivered     uint64 `json:"delivered,omitempty"`
	Duplicated    uint64 `json:"duplicated,omitempty"`
	Stale         uint64 `json:"stale,omitempty"`
	Corrupt       uint64 `json:"corrupt,omitempty"`
	Presence      uint64 `json:"presence,omitempty"`
	ErrorFrames   uint64 `json:"error_frames,omitempty"`
	BadFrames     uint64 `json:"bad_frames,omitempty"`
}

// add adds o to c.
func (c *counters) add(o counters) {
	c.Dials += o.Dials
	c.Connected += o.Connected
	c.ConnectErrors += o.ConnectErrors
	c.Joined += o.Joined
	c.JoinErrors += o.JoinErrors
	c.Disconnects += o.Disconnects
	c.Sent += o.Sent
	c.SendErrors += o.SendErrors
	c.Skipped += o.Skipped
	c.Acked += o.Acked
	c.Failed += o.Failed
	c.Delivered += o.Delivered
	c.Duplicated += o.Duplicated
	c.Stale += o.Stale
	c.Corrupt += o.Corrupt
	c.Presence += o.Presence
	c.ErrorFrames += o.ErrorFrames
	c.BadFrames += o.BadFrames
}

// sub returns c - o, field by field.
func (c counters) sub(o counters) counters {
	return counters{
		Dials: c.Dials - o.Dials, Connected: c.Connected - o.Connected, ConnectErrors: c.ConnectErrors - o.ConnectErrors,
		Joined: c.Joined - o.Joined, JoinErrors: c.JoinErrors - o.JoinErrors, Disconnects: c.Disconnects - o.Disconnects,
		Sent: c.Sent - o.Sent, SendErrors: c.SendErrors - o.SendErrors, Skipped: c.Skipped - o.Skipped,
		Acked: c.Acked - o.Acked, Failed: c.Failed - o.Failed, Delivered: c.Delivered - o.Delivered,
		Duplicated: c.Duplicated - o.Duplicated, Stale: c.Stale - o.Stale, Corrupt: c.Corrupt - o.Corrupt,
		Presence: c.Presence - o.Presence, ErrorFrames: c.ErrorFrames - o.ErrorFrames, BadFrames: c.BadFrames - o.BadFrames,
	}
}

// progress is one second of a worker's run.
type progress struct {
	// Tick k covers (T0+(k-1)s, T0+k s].
	Tick int      `json:"k"`
	C    counters `json:"c"`
	// Open, Joined and Inflight are gauges at the end of the tick.
	Open     int64 `json:"open"`
	Joined   int64 `json:"joined"`
	Inflight int64 `json:"inflight"`
	// PhaseAcked and PhaseDelivered are cumulative per phase (the phase is
	// the one the message was published in); PhaseDelivered counts first
	// arrivals only.
	PhaseAcked     []uint64 `json:"phase_acked,omitempty"`
	PhaseDelivered []uint64 `json:"phase_delivered,omitempty"`
	// Hists holds the tick's histograms, HdrHistogram V2 compressed:
	// "e2e/<phase>", "ack/<phase>", "connect", "join", "lag".
	Hists map[string][]byte `json:"hists,omitempty"`
	// CPU is the worker process's CPU time so far in seconds; RSS in bytes.
	CPU float64 `json:"cpu"`
	RSS int64   `json:"rss"`
}

// workerResult is what a worker reports at the end.
type workerResult struct {
	Totals counters `json:"totals"`
	// Members are the trackers of the worker's connections that joined.
	Members []memberReport `json:"members,omitempty"`
	// Acked maps a room index to the seqs acknowledged to this worker's publishers.
	Acked   map[int][]seqRange `json:"acked,omitempty"`
	DupAcks uint64             `json:"dup_acks,omitempty"`
	// ErrorCodes counts error frames by code; CloseCodes counts close
	// codes of connections the server closed (1006: no close frame).
	ErrorCodes map[string]uint64 `json:"error_codes,omitempty"`
	CloseCodes map[string]uint64 `json:"close_codes,omitempty"`
	// ConnectErrorSamples are the first few connect errors, verbatim.
	ConnectErrorSamples []string `json:"connect_error_samples,omitempty"`
	// FirstDial and LastConnect are Unix ns (0 when none).
	FirstDial   int64 `json:"first_dial,omitempty"`
	LastConnect int64 `json:"last_connect,omitempty"`
	// CheckEvents is the number of events the worker shipped in check
	// lines before this result; CheckOverflow is set when it recorded more
	// than maxCheckEvents and stopped.
	CheckEvents   uint64 `json:"check_events,omitempty"`
	CheckOverflow bool   `json:"check_overflow,omitempty"`
}

// lineWriter writes JSON lines, one value per line, from many goroutines.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{enc: json.NewEncoder(w)} }

func (l *lineWriter) write(v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(v)
}

// maxLine bounds one JSON line: a result with tens of thousands of member
// trackers is a few MB.
const maxLine = 256 << 20

// newLineScanner reads JSON lines of up to maxLine bytes.
func newLineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	return sc
}

// readLine decodes the next line of sc into v.
func readLine(sc *bufio.Scanner, v any) error {
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	if err := json.Unmarshal(sc.Bytes(), v); err != nil {
		return fmt.Errorf("decoding line: %w", err)
	}
	return nil
}
