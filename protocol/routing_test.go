package protocol_test

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// fnv1a is FNV-1a 32 written out, the way PROTOCOL.md gives it to
// integrators in other languages.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestShardOfKnownValues(t *testing.T) {
	t.Parallel()
	// Hashes computed independently (by hand in Python); they are part of
	// the contract: changing any of them moves rooms between shards.
	tests := []struct {
		room   string
		hash   uint32
		shards int
		want   int
	}{
		{"lobby", 475664083, 64, 19},
		{"lobby", 475664083, 16, 3},
		{"lobby", 475664083, 4096, 3795},
		{"general", 616112491, 64, 43},
		{"room-1", 3196374668, 64, 12},
		{"a", 3826002220, 64, 44},
		{"support:eu", 824133812, 64, 52},
		{"team@acme+ops", 997220509, 64, 29},
		{"team@acme+ops", 997220509, 1, 0},
		{"", 2166136261, 64, 5}, // the offset basis itself
	}
	for _, tt := range tests {
		if h := fnv1a(tt.room); h != tt.hash {
			t.Errorf("fnv1a(%q) = %d, want %d", tt.room, h, tt.hash)
		}
		std := fnv.New32a()
		_, _ = std.Write([]byte(tt.room))
		if h := std.Sum32(); h != tt.hash {
			t.Errorf("hash/fnv 32a(%q) = %d, want %d", tt.room, h, tt.hash)
		}
		if got := protocol.ShardOf(tt.room, tt.shards); got != tt.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", tt.room, tt.shards, got, tt.want)
		}
	}
}

// TestShardOfWorkedExample follows PROTOCOL.md's worked example byte by byte.
func TestShardOfWorkedExample(t *testing.T) {
	t.Parallel()
	steps := []uint32{0xe90c310b, 0x4231c06c, 0x4251560a, 0xce0b05b8, 0x1c5a0ed3}
	h := uint32(0x811c9dc5)
	for i, c := range []byte("lobby") {
		h ^= uint32(c)
		h *= 0x01000193
		if h != steps[i] {
			t.Fatalf("after %q: %#08x, want %#08x", c, h, steps[i])
		}
	}
	if h%64 != 19 || protocol.ShardOf("lobby", 64) != 19 {
		t.Fatalf("lobby: %d mod 64 = %d, ShardOf = %d; want 19", h, h%64, protocol.ShardOf("lobby", 64))
	}
}

func TestShardOfMatchesReference(t *testing.T) {
	t.Parallel()
	for i := 0; i < 2000; i++ {
		room := fmt.Sprintf("r%d:%x", i, i*7919)
		for _, n := range []int{1, 2, 3, 7, 64, 100, 4096} {
			if got, want := protocol.ShardOf(room, n), int(fnv1a(room)%uint32(n)); got != want {
				t.Fatalf("ShardOf(%q, %d) = %d, want %d", room, n, got, want)
			}
		}
	}
}

// TestShardOfDistribution checks that typical room names spread evenly
// over the default 64 shards.
func TestShardOfDistribution(t *testing.T) {
	t.Parallel()
	const rooms, shards = 10000, protocol.DefaultShards
	for _, pattern := range []string{"room-%d", "user:%d", "%d", "team-%d@acme"} {
		var counts [shards]int
		for i := 0; i < rooms; i++ {
			counts[protocol.ShardOf(fmt.Sprintf(pattern, i), shards)]++
		}
		expected := float64(rooms) / shards
		var chi2 float64
		lo, hi := rooms, 0
		for _, c := range counts {
			d := float64(c) - expected
			chi2 += d * d / expected
			lo, hi = min(lo, c), max(hi, c)
		}
		// 63 degrees of freedom: chi² above 110 has probability < 0.0002
		// for a uniform hash.
		if chi2 > 110 || float64(lo) < 0.6*expected || float64(hi) > 1.4*expected {
			t.Errorf("%q: chi²=%.1f, min %d, max %d, expected %.1f each", pattern, chi2, lo, hi, expected)
		}
	}
}

func TestShardOfRange(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 63, 64, 65, 4096, math.MaxInt32} {
		for _, room := range []string{"", "a", "lobby", strings.Repeat("\xff", 128)} {
			if s := protocol.ShardOf(room, n); s < 0 || s >= n {
				t.Fatalf("ShardOf(%q, %d) = %d, out of range", room, n, s)
			}
		}
	}
}

func TestRoutingNames(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{protocol.ShardKey(0), "shard.0"},
		{protocol.ShardKey(19), "shard.19"},
		{protocol.ShardKey(63), "shard.63"},
		{protocol.ShardQueue(0), "hearth.shard.0"},
		{protocol.ShardQueue(63), "hearth.shard.63"},
		{protocol.RoomKey("lobby"), "room.lobby"},
		{protocol.UserKey("alice"), "user.alice"},
		{protocol.EdgeKey("edge-1"), "edge.edge-1"},
		{protocol.EdgeQueue("edge-1"), "hearth.edge.edge-1"},
		{protocol.ExchangeIngress, "hearth.ingress"},
		{protocol.ExchangeEgress, "hearth.egress"},
		{protocol.MsgReply, "reply"},
		{protocol.MsgJoined, "joined"},
		{protocol.MsgJoinFailed, "join-failed"},
		{protocol.HeaderConn, "hearth-conn"},
		{protocol.HeaderRoom, "hearth-room"},
		{protocol.Subprotocol, "hearth.v1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if protocol.DefaultShards != 64 || protocol.EnvelopeVersion != 1 || protocol.MaxIDLen != 128 {
		t.Errorf("DefaultShards %d, EnvelopeVersion %d, MaxIDLen %d; want 64, 1, 128",
			protocol.DefaultShards, protocol.EnvelopeVersion, protocol.MaxIDLen)
	}
}

func TestParseEgressKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		kind protocol.KeyKind
		id   string
	}{
		{"room.lobby", protocol.KeyRoom, "lobby"},
		{"user.alice", protocol.KeyUser, "alice"},
		{"edge.edge-1", protocol.KeyEdge, "edge-1"},
		{"room.", protocol.KeyRoom, ""},
		{"room.a.b", protocol.KeyRoom, "a.b"}, // never produced: rooms have no dots
		{"room", protocol.KeyUnknown, ""},
		{"rooms.x", protocol.KeyUnknown, ""},
		{"ROOM.x", protocol.KeyUnknown, ""},
		{"shard.3", protocol.KeyUnknown, ""},
		{"", protocol.KeyUnknown, ""},
		{".room.x", protocol.KeyUnknown, ""},
	}
	for _, tt := range tests {
		kind, id := protocol.ParseEgressKey(tt.key)
		if kind != tt.kind || id != tt.id {
			t.Errorf("ParseEgressKey(%q) = %d, %q; want %d, %q", tt.key, kind, id, tt.kind, tt.id)
		}
	}
	for _, id := range []string{"lobby", "Team_9-a:b@c+d=e", strings.Repeat("z", 128)} {
		for _, c := range []struct {
			key  string
			kind protocol.KeyKind
		}{{protocol.RoomKey(id), protocol.KeyRoom}, {protocol.UserKey(id), protocol.KeyUser}, {protocol.EdgeKey(id), protocol.KeyEdge}} {
			if kind, got := protocol.ParseEgressKey(c.key); kind != c.kind || got != id {
				t.Errorf("ParseEgressKey(%q) = %d, %q; want %d, %q", c.key, kind, got, c.kind, id)
			}
			if strings.Count(c.key, ".") != 1 {
				t.Errorf("key %q is not exactly two topic words", c.key)
			}
		}
	}
}

func TestParseEgressKeyAllocs(t *testing.T) {
	key := protocol.RoomKey("lobby")
	if n := testing.AllocsPerRun(100, func() { _, _ = protocol.ParseEgressKey(key) }); n != 0 {
		t.Fatalf("ParseEgressKey allocates %v times", n)
	}
}
