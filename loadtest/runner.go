package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// Runner runs one load test: it starts the workers, steers the scenario,
// merges what they report and writes the result files.
type Runner struct {
	cfg      Config
	stderr   io.Writer
	launcher launcher
	watched  []watched
	// Command is recorded in the result, so a run can be repeated.
	Command string
}

// New validates cfg and resolves the processes to sample. Progress lines
// and notes go to stderr.
func New(cfg Config, stderr io.Writer) (*Runner, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	w, err := resolveWatched(&cfg)
	if err != nil {
		return nil, err
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return &Runner{cfg: cfg, stderr: stderr, launcher: execLauncher{stderr: stderr}, watched: w}, nil
}

// Config returns the normalized configuration.
func (r *Runner) Config() Config { return r.cfg }

// Run runs the scenario, bounded by the config's hard deadline, and writes
// <out>.json and <out>.html. It returns the result even when the run was
// cut short (Result.Aborted), the files could not be written, or the -check
// verdict is not OK (an error wrapping ErrCheckFailed).
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.hardTimeout())
	defer cancel()
	res := &Result{
		Name:     r.cfg.Name,
		Scenario: r.cfg.Scenario,
		RunID:    randomHex(3),
		Started:  time.Now(),
		Command:  r.Command,
		Config:   r.cfg,
		Host:     hostInfo(),
		Latency:  map[string]Summary{},
	}
	// Never write the secret into a result.
	res.Config.Secret = ""
	res.LoadAvg[0] = loadAvg()
	var err error
	if r.cfg.Scenario == ScenarioAMQPBaseline {
		err = r.runAMQP(ctx, res)
	} else {
		err = r.runWS(ctx, res)
	}
	res.Elapsed = time.Since(res.Started).Seconds()
	res.LoadAvg[1] = loadAvg()
	res.noteMachine()
	if err != nil {
		res.Aborted = true
		res.Problems = append(res.Problems, err.Error())
	}
	res.checkTargets()
	if werr := res.writeFiles(r.cfg.Out); werr != nil {
		return res, fmt.Errorf("loadtest: writing results: %w", werr)
	}
	fmt.Fprintf(r.stderr, "hearth-load: wrote %s.json and %s.html\n", r.cfg.Out, r.cfg.Out)
	if err == nil && res.Check != nil && !res.Check.OK {
		err = fmt.Errorf("%w: %s", ErrCheckFailed, res.Check.failures())
	}
	return res, err
}

func (r *Runner) runWS(ctx context.Context, res *Result) error {
	c := newCoord(r, res)
	return c.run(ctx)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// progressLine formats the live status of one second.
func progressLine(t float64, stage string, p *Point, tot counters, procs map[string]float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%4.0fs] %-7s conns %d", t, stage, p.Open)
	if p.Joined > 0 {
		fmt.Fprintf(&b, " joined %d", p.Joined)
	}
	if p.Connects > 0 {
		fmt.Fprintf(&b, " +%d/s", p.Connects)
	}
	if tot.Sent > 0 {
		fmt.Fprintf(&b, " | pub %d/s ack %d/s", p.Sent, p.Acked)
		if p.Ack != nil {
			fmt.Fprintf(&b, " p99 %.1fms", p.Ack.P99)
		}
	}
	if tot.Delivered > 0 {
		fmt.Fprintf(&b, " | deliv %s/s", thousands(float64(p.Delivered)))
		if p.E2E != nil {
			fmt.Fprintf(&b, " e2e p50 %.1f p99 %.1f ms", p.E2E.P50, p.E2E.P99)
		}
	}
	fmt.Fprintf(&b, " | err %d disc %d", tot.ErrorFrames+tot.ConnectErrors+tot.SendErrors, tot.Disconnects)
	if tot.Duplicated > 0 {
		fmt.Fprintf(&b, " dup %d", tot.Duplicated)
	}
	if len(procs) > 0 {
		b.WriteString(" | cpu")
		for _, k := range sortedKeys(procs) {
			fmt.Fprintf(&b, " %s %.0f%%", k, procs[k])
		}
	}
	return b.String()
}
