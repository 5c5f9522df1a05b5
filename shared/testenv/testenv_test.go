package testenv

import (
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	t.Parallel()
	n := 0
	if !poll(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("poll gave up on a condition that became true")
	}
	start := time.Now()
	if poll(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("poll reported a condition that never held")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Fatalf("poll with a 30ms timeout returned after %v", d)
	}
}

func TestLockPath(t *testing.T) {
	t.Parallel()
	got := lockPath("hearth-test-5700@localhost")
	if want := "hearth-rabbitmq-hearth-test-5700_localhost.lock"; len(got) < len(want) || got[len(got)-len(want):] != want {
		t.Fatalf("lockPath = %q, want a file named %q", got, want)
	}
}
