package protocol

import (
	"strconv"
	"strings"
)

// Exchange names. Both are durable topic exchanges.
const (
	// ExchangeIngress carries envelopes from edges and integrators to hubs,
	// routed by shard: "shard.<n>".
	ExchangeIngress = "hearth.ingress"
	// ExchangeEgress carries final client frames from hubs and integrators
	// to edges: "room.<room>", "user.<user>", "edge.<edge>".
	ExchangeEgress = "hearth.egress"
)

// DefaultShards is the number of ingress shards when none is configured.
// Every edge, hub and integrator of one deployment must use the same count.
const DefaultShards = 64

// Routing key prefixes.
const (
	prefixShard = "shard."
	prefixRoom  = "room."
	prefixUser  = "user."
	prefixEdge  = "edge."
)

// ShardOf returns the shard that owns room: FNV-1a (32 bit) of the room's
// bytes, modulo shards. shards must be positive.
func ShardOf(room string, shards int) int {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(room); i++ {
		h ^= uint32(room[i])
		h *= prime
	}
	return int(h % uint32(shards))
}

// ShardKey is the ingress routing key of shard n.
func ShardKey(n int) string { return prefixShard + strconv.Itoa(n) }

// ShardQueue is the name of the durable queue holding shard n's ingress.
func ShardQueue(n int) string { return "hearth.shard." + strconv.Itoa(n) }

// RoomKey is the egress routing key of a room's broadcasts. The room must
// have passed ValidateID.
func RoomKey(room string) string { return prefixRoom + room }

// UserKey is the egress routing key for all connections of one user.
func UserKey(user string) string { return prefixUser + user }

// EdgeKey is the egress routing key of messages for one edge (replies to
// one of its connections, control messages).
func EdgeKey(edge string) string { return prefixEdge + edge }

// EdgeQueue is the name of an edge's own egress queue.
func EdgeQueue(edge string) string { return "hearth.edge." + edge }

// KeyKind tells what an egress routing key addresses.
type KeyKind uint8

// Kinds of egress routing keys.
const (
	KeyUnknown KeyKind = iota
	KeyRoom
	KeyUser
	KeyEdge
)

// ParseEgressKey splits an egress routing key into its kind and identifier.
// It does not allocate.
func ParseEgressKey(key string) (KeyKind, string) {
	switch {
	case strings.HasPrefix(key, prefixRoom):
		return KeyRoom, key[len(prefixRoom):]
	case strings.HasPrefix(key, prefixUser):
		return KeyUser, key[len(prefixUser):]
	case strings.HasPrefix(key, prefixEdge):
		return KeyEdge, key[len(prefixEdge):]
	}
	return KeyUnknown, ""
}

// AMQP "type" property values on messages published to EdgeKey. A message
// with an empty type, sent to a room or user key, is a broadcast: its body is
// delivered to every local subscriber unchanged.
const (
	// MsgReply: the body is a frame for the connection in header HeaderConn.
	MsgReply = "reply"
	// MsgJoined: like MsgReply; the edge also starts delivering the room in
	// HeaderRoom to that connection, from the next message on.
	MsgJoined = "joined"
	// MsgJoinFailed: like MsgReply; the edge forgets the pending join of
	// HeaderRoom by that connection.
	MsgJoinFailed = "join-failed"
)

// AMQP header names.
const (
	HeaderConn = "hearth-conn"
	HeaderRoom = "hearth-room"
)

// ExchangeControl carries liveness announcements between processes: hubs
// publish Heartbeat to "hub.<id>", edges to "edge.<id>". Durable topic
// exchange; the messages are transient.
const ExchangeControl = "hearth.control"

// HubHeartbeatKey and EdgeHeartbeatKey are the control routing keys.
func HubHeartbeatKey(id string) string  { return "hub." + id }
func EdgeHeartbeatKey(id string) string { return "edge." + id }
