package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// launcher starts workers. The coordinator writes the spec and commands
// to in and reads JSON lines from out.
type launcher interface {
	launch(ctx context.Context, index int) (*workerProc, error)
}

// workerProc is one running worker.
type workerProc struct {
	in  io.WriteCloser
	out io.ReadCloser
	// wait waits for the worker to end; kill ends it at once.
	wait func() error
	kill func()
	pid  int
}

// execLauncher re-executes this binary as `<exe> worker`. Workers die with
// the coordinator (PDEATHSIG) and write their logs to stderr.
type execLauncher struct {
	exe    string
	stderr io.Writer
}

func (l execLauncher) launch(_ context.Context, index int) (*workerProc, error) {
	exe := l.exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("loadtest: finding own executable: %w", err)
		}
	}
	cmd := exec.Command(exe, "worker")
	cmd.Stderr = l.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: starting worker %d: %w", index, err)
	}
	return &workerProc{
		in:   in,
		out:  out,
		wait: cmd.Wait,
		kill: func() { _ = cmd.Process.Kill() },
		pid:  cmd.Process.Pid,
	}, nil
}

// inProcessLauncher runs workers as goroutines of this process, over pipes:
// the same code and the same protocol, for tests.
type inProcessLauncher struct{}

func (inProcessLauncher) launch(ctx context.Context, _ int) (*workerProc, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		err := RunWorker(ctx, inR, outW)
		_ = outW.CloseWithError(io.EOF)
		_ = inR.Close()
		done <- err
	}()
	var werr error
	waited := false
	return &workerProc{
		in:  inW,
		out: outR,
		wait: func() error {
			if !waited {
				werr, waited = <-done, true
			}
			return werr
		},
		kill: cancel,
		pid:  os.Getpid(),
	}, nil
}
