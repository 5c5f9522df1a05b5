package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux this runs on (getconf CLK_TCK).
const clockTicks = 100

// procSample is one reading of a process's /proc files.
type procSample struct {
	At time.Time
	// CPU is user + system time consumed so far.
	CPU time.Duration
	// RSS is the resident set size in bytes.
	RSS int64
	// Threads is the number of OS threads.
	Threads int
}

var errProcFormat = errors.New("loadtest: unexpected /proc format")

// readProc samples /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.RSS, s.Threads = parseStatus(status)
	return s, nil
}

// parseStatCPU returns utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errProcFormat
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errProcFormat
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errProcFormat
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseStatus returns VmRSS in bytes and Threads from /proc/<pid>/status.
func parseStatus(b []byte) (rss int64, threads int) {
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			rss = n * 1024
		case "Threads":
			threads, _ = strconv.Atoi(v)
		}
	}
	return rss, threads
}

// watched is a process whose /proc the coordinator samples.
type watched struct {
	Name string
	PID  int
	Edge bool
}

// resolveWatched turns the config's edge PIDs, edge PID files and watch
// list into processes.
func resolveWatched(c *Config) ([]watched, error) {
	var out []watched
	for i, s := range c.EdgePIDs {
		pid, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%w: edge pid %q", ErrConfig, s)
		}
		out = append(out, watched{Name: fmt.Sprintf("edge-%d", i+1), PID: pid, Edge: true})
	}
	for _, f := range c.EdgePIDFiles {
		pid, err := readPIDFile(f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(baseName(f), ".pid")
		out = append(out, watched{Name: name, PID: pid, Edge: true})
	}
	for _, w := range c.Watch {
		name, ref, ok := strings.Cut(w, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: watch %q: want name=PID or name=@pidfile", ErrConfig, w)
		}
		var pid int
		var err error
		if f, isFile := strings.CutPrefix(ref, "@"); isFile {
			pid, err = readPIDFile(f)
		} else {
			pid, err = strconv.Atoi(ref)
			if err == nil && pid <= 0 {
				err = fmt.Errorf("%w: watch %q: bad pid", ErrConfig, w)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("watch %q: %w", w, err)
		}
		out = append(out, watched{Name: name, PID: pid})
	}
	for _, w := range out {
		if _, err := readProc(w.PID); err != nil {
			return nil, fmt.Errorf("%w: process %s (pid %d): %v", ErrConfig, w.Name, w.PID, err)
		}
	}
	return out, nil
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: pid file: %v", ErrConfig, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%w: pid file %s does not hold a pid", ErrConfig, path)
	}
	return pid, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// machineCPU reads the first line of /proc/stat: the CPU time of every core
// together, busy and total, in clock ticks.
func machineCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseMachineCPU(b)
}

func parseMachineCPU(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errProcFormat
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, errProcFormat
		}
		total += v
		// user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total, nil
}
