package protocol_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// TestEnvelopeBatchRoundTrip covers every array and bin header width.
func TestEnvelopeBatchRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"one", []int{10}},
		{"fixarray-15", repeat(15, 3)},
		{"array16", repeat(16, 1)},
		{"max-envelopes", repeat(protocol.MaxBatchEnvelopes, 0)},
		{"bin-widths", []int{0, 255, 256, 65535, 65536}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			envs := make([][]byte, len(tc.sizes))
			for i, n := range tc.sizes {
				envs[i] = bytes.Repeat([]byte{byte(i)}, n)
			}
			b := protocol.AppendEnvelopeBatch([]byte{}, envs)
			if !protocol.IsEnvelopeBatch(b) {
				t.Fatal("not recognised as a batch")
			}
			got, err := protocol.SplitEnvelopeBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(envs) {
				t.Fatalf("%d elements, want %d", len(got), len(envs))
			}
			for i := range envs {
				if !bytes.Equal(got[i], envs[i]) {
					t.Fatalf("element %d differs", i)
				}
			}
		})
	}
}

func repeat(n, size int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = size
	}
	return out
}

func TestEnvelopeBatchLimits(t *testing.T) {
	t.Parallel()
	tooMany := protocol.AppendEnvelopeBatch(nil, make([][]byte, protocol.MaxBatchEnvelopes+1))
	tooBig := protocol.AppendEnvelopeBatch(nil, [][]byte{make([]byte, protocol.MaxBatchBytes)})
	for name, b := range map[string][]byte{
		"too many":       tooMany,
		"too big":        tooBig,
		"a map":          {0x80},
		"empty input":    nil,
		"array32 cut":    {0xdd, 0, 0},
		"huge count":     {0xdd, 0xff, 0xff, 0xff, 0xff},
		"bin32 overflow": {0x91, 0xc6, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := protocol.SplitEnvelopeBatch(b); !errors.Is(err, protocol.ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	if protocol.IsEnvelopeBatch([]byte{0x81}) {
		t.Error("a one-entry map taken for a batch")
	}
}
