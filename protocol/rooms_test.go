package protocol_test

import (
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

func TestMayJoin(t *testing.T) {
	t.Parallel()
	dm := protocol.DMRoom("bob", "alice")
	if dm != "dm:5:alice:bob" {
		t.Fatalf("DMRoom = %q", dm)
	}
	cases := []struct {
		user   string
		grants []string
		room   string
		want   bool
	}{
		{"alice", nil, "general", true},
		{"alice", nil, dm, true},
		{"bob", nil, dm, true},
		{"carol", nil, dm, false},
		{"alice", nil, "dm:3:bob:alice", false}, // not the canonical order
		{"alice", nil, "dm:5:alice:alice", false},
		{"alice", nil, "dm:alice:bob", false},   // no length
		{"alice", nil, "dm:9:alice:bob", false}, // wrong length
		{"a:b", nil, protocol.DMRoom("a:b", "c"), true},
		{"c", nil, protocol.DMRoom("a:b", "c"), true},
		{"a", nil, protocol.DMRoom("a:b", "c"), false},
		{"b:c", nil, protocol.DMRoom("a:b", "c"), false},
		{"a", nil, protocol.DMRoom("a", "b:c"), true},
		{"a:b", nil, protocol.DMRoom("a", "b:c"), false},
		{"alice", []string{"priv:ops"}, "priv:ops", true},
		{"alice", []string{"priv:ops"}, "priv:hr", false},
		{"alice", nil, "priv:ops", false},
	}
	for _, tc := range cases {
		if got := protocol.MayJoin(tc.user, tc.grants, tc.room); got != tc.want {
			t.Errorf("MayJoin(%q, %v, %q) = %v, want %v", tc.user, tc.grants, tc.room, got, tc.want)
		}
	}
}
