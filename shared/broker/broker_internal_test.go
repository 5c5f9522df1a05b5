package broker

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := &AMQP{cfg: AMQPConfig{ReconnectMin: 100 * time.Millisecond, ReconnectMax: 5 * time.Second}}
	for n := 1; n < 100; n++ {
		ceiling := 5 * time.Second
		if n <= 6 {
			ceiling = 100 * time.Millisecond << (n - 1) // 100ms, 200ms, ..., 3.2s
		}
		for range 50 {
			if d := b.backoff(n); d <= 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want in (0, %v]", n, d, ceiling)
			}
		}
	}
}

func TestNextWord(t *testing.T) {
	t.Parallel()
	var words []string
	for pos := 0; pos != noWords; {
		var w string
		w, pos = nextWord("a..bc.", pos)
		words = append(words, w)
	}
	if got := len(words); got != 4 || words[0] != "a" || words[1] != "" || words[2] != "bc" || words[3] != "" {
		t.Fatalf("words of %q: %q", "a..bc.", words)
	}
}
