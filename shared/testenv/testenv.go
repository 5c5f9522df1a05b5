// Package testenv holds the test helpers shared by the whole repository:
// where the test RabbitMQ is, how to stop and restart it, and waiting for a
// condition with a deadline.
//
// `make test` starts a private RabbitMQ node with deploy/local/rabbitmq.sh
// and exports its address:
//
//	HEARTH_TEST_AMQP_URL       amqp://guest:guest@127.0.0.1:5700/
//	HEARTH_TEST_RABBITMQ_NODE  hearth-test-5700@localhost (for rabbitmqctl -n)
//
// Without them, RabbitMQ tests are skipped on a developer's machine and fail
// in CI (where CI is set): broker tests are never silently skipped there.
//
// Tests of every package share the node. Stopping it (StopBroker,
// RestartBroker) would break the tests of other packages that run at the
// same time, so the helpers coordinate through a file lock next to the node:
// AMQPURL holds it shared until the test ends, StopBroker takes it
// exclusively (waiting for the other packages' RabbitMQ tests to finish)
// until StartBroker, and HoldBroker until its test ends. Within one package,
// call StopBroker, RestartBroker and HoldBroker only from tests that do not
// run in parallel with others using RabbitMQ (top-level tests without
// t.Parallel run before the parallel ones).
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Environment variables read by this package.
const (
	// EnvAMQPURL is the AMQP URL of the test RabbitMQ.
	EnvAMQPURL = "HEARTH_TEST_AMQP_URL"
	// EnvRabbitMQNode is the Erlang node name of the test RabbitMQ, for
	// rabbitmqctl -n.
	EnvRabbitMQNode = "HEARTH_TEST_RABBITMQ_NODE"
)

// How long the helpers wait for RabbitMQ and for each other.
const (
	ctlTimeout   = 60 * time.Second
	startTimeout = 60 * time.Second
	lockTimeout  = 5 * time.Minute
)

// AMQPURL returns the test RabbitMQ's URL. When it is not configured, the
// test is skipped, or fails when the CI environment variable is set. The
// test holds the shared broker lock (see the package doc) until it ends.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvAMQPURL)
	if u == "" {
		notConfigured(t, EnvAMQPURL)
	}
	holdShared(t)
	return u
}

func notConfigured(t testing.TB, env string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set: RabbitMQ tests must run in CI, never be skipped; "+
			"run them through `make test`, which starts a RabbitMQ with deploy/local/rabbitmq.sh", env)
	}
	t.Skipf("%s is not set: skipping a RabbitMQ test; run `make test` "+
		"(it starts a private RabbitMQ with deploy/local/rabbitmq.sh and sets %s and %s)",
		env, EnvAMQPURL, EnvRabbitMQNode)
}

// node returns the RabbitMQ node name, skipping or failing as AMQPURL does.
func node(t testing.TB) string {
	t.Helper()
	n := os.Getenv(EnvRabbitMQNode)
	if n == "" {
		notConfigured(t, EnvRabbitMQNode)
	}
	return n
}

// RestartBroker stops and starts the RabbitMQ application of the test node
// (rabbitmqctl stop_app, start_app: every connection is closed, exclusive
// and transient queues vanish, durable ones stay) and returns once RabbitMQ
// accepts AMQP connections again.
func RestartBroker(t testing.TB) {
	t.Helper()
	StopBroker(t)
	StartBroker(t)
}

// StopBroker stops the RabbitMQ application of the test node (rabbitmqctl
// stop_app); the Erlang node keeps running, so StartBroker can start it
// again. If the test does not call StartBroker, its cleanup does.
func StopBroker(t testing.TB) {
	t.Helper()
	n := node(t)
	AMQPURL(t)
	if !takeExclusive(t) {
		t.Fatalf("the test RabbitMQ is already stopped or held (StopBroker without StartBroker?)")
	}
	t.Cleanup(func() {
		if isExclusive() {
			start(t, n)
		}
	})
	ctl(t, n, "stop_app")
}

// HoldBroker gives the test node to this test alone until the test ends:
// it waits for other test processes' RabbitMQ tests to finish and makes new
// ones wait. Call it before changing the node's global state (Ctl
// set_vm_memory_high_watermark, ...), and restore that state in a cleanup
// registered after HoldBroker (cleanups run last-registered first).
func HoldBroker(t testing.TB) {
	t.Helper()
	node(t)
	AMQPURL(t)
	if !takeExclusive(t) {
		t.Fatalf("the test RabbitMQ is already stopped or held by this process")
	}
	t.Cleanup(func() { releaseExclusive(t) })
}

// Ctl runs rabbitmqctl -n NODE args against the test node and returns its
// output, failing the test when it fails. Commands that disturb other
// tests need StopBroker or HoldBroker first.
func Ctl(t testing.TB, args ...string) string {
	t.Helper()
	return ctl(t, node(t), args...)
}

// StartBroker starts the RabbitMQ application stopped by StopBroker and
// waits (up to a minute) until it accepts AMQP connections.
func StartBroker(t testing.TB) {
	t.Helper()
	start(t, node(t))
}

func start(t testing.TB, n string) {
	t.Helper()
	defer releaseExclusive(t)
	ctl(t, n, "start_app")
	u := os.Getenv(EnvAMQPURL)
	var last error
	ok := poll(startTimeout, func() bool {
		conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
		if err != nil {
			last = err
			return false
		}
		_ = conn.Close()
		return true
	})
	if !ok {
		t.Fatalf("RabbitMQ %s did not accept AMQP connections within %v after start_app: %v", n, startTimeout, last)
	}
}

// ctl runs rabbitmqctl -n node args. As root, Debian's rabbitmqctl wrapper
// runs it as user rabbitmq, whose Erlang cookie the node started by
// deploy/local/rabbitmq.sh shares.
func ctl(t testing.TB, node string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		bin = "/usr/sbin/rabbitmqctl"
	}
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-n", node}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -n %s %s: %v\n%s", bin, node, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// WaitFor polls cond until it returns true, and fails the test with the
// message msgf (formatted with args) when timeout passes first. Call it from
// the test's goroutine. It is the way to wait for something asynchronous in
// Hearth's tests: never time.Sleep.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, msgf string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %v: %s", timeout, fmt.Sprintf(msgf, args...))
	}
}

// poll calls cond until it returns true (reporting true) or timeout passes
// (reporting false), checking often at first and then every 25ms.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
		delay = min(2*delay, 25*time.Millisecond)
	}
}

// brokerLock is this process's hold on the lock file shared by every test
// process that uses the test node.
var brokerLock struct {
	mu        sync.Mutex // guards the fields below
	f         *os.File   // open while users > 0
	users     int
	exclusive bool // from StopBroker to StartBroker, or HoldBroker to the end of its test
}

func lockPath(n string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, n)
	return filepath.Join(os.TempDir(), "hearth-rabbitmq-"+safe+".lock")
}

// holdShared takes the shared lock for the test's duration. Without a node
// name (a RabbitMQ not managed by the tests) there is nothing to coordinate.
func holdShared(t testing.TB) {
	t.Helper()
	n := os.Getenv(EnvRabbitMQNode)
	if n == "" {
		return
	}
	brokerLock.mu.Lock()
	defer brokerLock.mu.Unlock()
	if brokerLock.f == nil {
		f, err := os.OpenFile(lockPath(n), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatalf("opening the RabbitMQ test lock: %v", err)
		}
		if !poll(lockTimeout, func() bool { return lockShared(f) == nil }) {
			_ = f.Close()
			t.Fatalf("timed out after %v waiting for another test process to start RabbitMQ again (lock %s)", lockTimeout, f.Name())
		}
		brokerLock.f = f
	}
	brokerLock.users++
	t.Cleanup(func() {
		brokerLock.mu.Lock()
		defer brokerLock.mu.Unlock()
		brokerLock.users--
		if brokerLock.users == 0 && brokerLock.f != nil {
			_ = unlock(brokerLock.f)
			_ = brokerLock.f.Close()
			brokerLock.f = nil
			brokerLock.exclusive = false
		}
	})
}

// takeExclusive turns this process's shared lock into an exclusive one,
// waiting for other processes to release theirs. It reports false if this
// process holds it already. The caller holds the shared lock (AMQPURL).
func takeExclusive(t testing.TB) bool {
	t.Helper()
	brokerLock.mu.Lock()
	defer brokerLock.mu.Unlock()
	if brokerLock.exclusive {
		return false
	}
	f := brokerLock.f
	if !poll(lockTimeout, func() bool { return lockExclusive(f) == nil }) {
		_ = lockShared(f)
		t.Fatalf("timed out after %v waiting for other test processes to stop using RabbitMQ (lock %s)", lockTimeout, f.Name())
	}
	brokerLock.exclusive = true
	return true
}

// isExclusive reports whether this process holds the lock exclusively.
func isExclusive() bool {
	brokerLock.mu.Lock()
	defer brokerLock.mu.Unlock()
	return brokerLock.exclusive
}

// releaseExclusive turns the exclusive lock back into a shared one.
func releaseExclusive(t testing.TB) {
	t.Helper()
	brokerLock.mu.Lock()
	defer brokerLock.mu.Unlock()
	if !brokerLock.exclusive {
		return
	}
	brokerLock.exclusive = false
	if err := lockShared(brokerLock.f); err != nil {
		t.Errorf("taking the RabbitMQ test lock back: %v", err)
	}
}
