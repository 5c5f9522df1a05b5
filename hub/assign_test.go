package hub

import (
	"fmt"
	"testing"
)

func TestAssignBalancedAndDeterministic(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 8, 64, 100} {
		for n := 1; n <= 7; n++ {
			var hubs []string
			for i := 0; i < n; i++ {
				hubs = append(hubs, fmt.Sprintf("hub-%c", 'a'+i))
			}
			a := assign(shards, hubs)
			// Shuffled input, same answer.
			rev := make([]string, n)
			for i := range hubs {
				rev[n-1-i] = hubs[i]
			}
			b := assign(shards, rev)
			seen := map[int]string{}
			lo, hi := shards, 0
			for _, h := range hubs {
				if fmt.Sprint(a[h]) != fmt.Sprint(b[h]) {
					t.Fatalf("%d shards, %d hubs: order of the live set changed the assignment", shards, n)
				}
				for _, k := range a[h] {
					if other, dup := seen[k]; dup {
						t.Fatalf("shard %d assigned to %s and %s", k, other, h)
					}
					seen[k] = h
				}
				lo, hi = min(lo, len(a[h])), max(hi, len(a[h]))
			}
			if len(seen) != shards {
				t.Fatalf("%d shards, %d hubs: %d assigned", shards, n, len(seen))
			}
			if hi-lo > 1 {
				t.Fatalf("%d shards, %d hubs: counts from %d to %d", shards, n, lo, hi)
			}
		}
	}
}

func TestAssignMovesLittle(t *testing.T) {
	t.Parallel()
	three := assign(64, []string{"a", "b", "c"})
	four := assign(64, []string{"a", "b", "c", "d"})
	moved := 0
	for _, h := range []string{"a", "b", "c"} {
		keep := map[int]bool{}
		for _, k := range four[h] {
			keep[k] = true
		}
		for _, k := range three[h] {
			if !keep[k] {
				moved++
			}
		}
	}
	// The ideal is 16 (a quarter); allow slack for the caps.
	if moved > 32 {
		t.Fatalf("adding a fourth hub moved %d of 64 shards", moved)
	}
}
