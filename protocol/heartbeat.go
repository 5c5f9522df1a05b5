package protocol

import "github.com/vmihailenco/msgpack/v5"

// Heartbeat is a process's liveness announcement on ExchangeControl.
type Heartbeat struct {
	// ID is the hub or edge id.
	ID string `msgpack:"id"`
	// Incarnation changes each time the process starts; an edge's
	// connection ids begin with it followed by "-".
	Incarnation string `msgpack:"inc,omitempty"`
	// Leaving is set once by a process shutting down cleanly.
	Leaving bool `msgpack:"leaving,omitempty"`
}

// EncodeHeartbeat returns h's MessagePack encoding.
func EncodeHeartbeat(h *Heartbeat) ([]byte, error) { return msgpack.Marshal(h) }

// DecodeHeartbeat decodes and checks a heartbeat.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := decodeExact(b, &h); err != nil {
		return h, err
	}
	if err := ValidateID(h.ID); err != nil {
		return h, err
	}
	return h, nil
}
