package hub

import (
	"hash/fnv"
	"sort"
	"strconv"
)

// assign spreads shards over hubs so that every hub computes the same
// answer from the same live set: each hub gets ⌊shards/n⌋ or ⌈shards/n⌉
// shards (the first shards%n hubs in sorted order get one more), and each
// shard goes to the first hub in its rendezvous-hash order that still has
// room. Rendezvous order keeps most shards in place when a hub joins or
// leaves; the caps keep the counts within one of each other.
func assign(shards int, hubs []string) map[string][]int {
	out := make(map[string][]int, len(hubs))
	if len(hubs) == 0 {
		return out
	}
	sorted := append([]string(nil), hubs...)
	sort.Strings(sorted)
	n := len(sorted)
	capOf := make(map[string]int, n)
	for i, h := range sorted {
		capOf[h] = shards / n
		if i < shards%n {
			capOf[h]++
		}
	}
	order := make([]string, n)
	for k := 0; k < shards; k++ {
		copy(order, sorted)
		key := strconv.Itoa(k)
		sort.Slice(order, func(i, j int) bool {
			wi, wj := weight(order[i], key), weight(order[j], key)
			if wi != wj {
				return wi > wj
			}
			return order[i] < order[j]
		})
		for _, h := range order {
			if len(out[h]) < capOf[h] {
				out[h] = append(out[h], k)
				break
			}
		}
	}
	return out
}

func weight(hub, shard string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(hub))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(shard))
	return h.Sum64()
}
