package protocol

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// EnvelopeKind says why an envelope was published.
type EnvelopeKind uint8

// Envelope kinds.
const (
	// KindClient carries a validated frame a client sent to an edge.
	KindClient EnvelopeKind = 1
	// KindDisconnect tells the hub that connection Conn left Frame.Room
	// because it closed. Frame.Type is TypeLeave.
	KindDisconnect EnvelopeKind = 2
	// KindIntegrator carries a frame from a backend service that publishes to
	// the ingress exchange directly. Only TypePublish is accepted; Edge and
	// Conn are empty, User names the service, and no ack is sent.
	KindIntegrator EnvelopeKind = 3
	// KindTick is published by the hub that owns a shard into the shard's
	// own queue, so periodic work (removing the members of dead edges) runs
	// in order with the shard's other envelopes. It carries no frame.
	KindTick EnvelopeKind = 4
)

// Envelope is what edges and integrators publish to ExchangeIngress with
// routing key ShardKey(ShardOf(Frame.Room, shards)).
type Envelope struct {
	// V is EnvelopeVersion. Hubs reject versions they do not know.
	V uint8 `msgpack:"v"`
	// Kind of envelope.
	Kind EnvelopeKind `msgpack:"k"`
	// Edge that received the frame; replies go to EdgeKey(Edge).
	Edge string `msgpack:"edge,omitempty"`
	// Conn is the connection id on that edge.
	Conn string `msgpack:"conn,omitempty"`
	// User is the authenticated user (from the token), or the integrator's name.
	User string `msgpack:"user"`
	// TS is the time the edge received the frame, Unix milliseconds.
	TS int64 `msgpack:"ts,omitempty"`
	// Frame is the client frame.
	Frame Frame `msgpack:"f"`
}

// envelopeOverhead bounds an envelope's bytes beyond its body: identifiers
// of at most MaxIDLen bytes, a handful of small fields, and room for
// forward-compatible additions.
const envelopeOverhead = 8 << 10

// EncodeEnvelope returns e's MessagePack encoding.
func EncodeEnvelope(e *Envelope) ([]byte, error) { return msgpack.Marshal(e) }

// DecodeEnvelope decodes and checks an envelope: version, kind, identifiers
// and the frame. A hub drops (and counts) envelopes that fail here.
func DecodeEnvelope(b []byte, l Limits) (Envelope, error) {
	var e Envelope
	if l.MaxBody > 0 && len(b) > l.MaxBody+envelopeOverhead {
		return e, fmt.Errorf("protocol: envelope of %d bytes exceeds %d", len(b), l.MaxBody+envelopeOverhead)
	}
	if err := decodeExact(b, &e); err != nil {
		return e, err
	}
	if e.V != EnvelopeVersion {
		return e, fmt.Errorf("protocol: envelope version %d not supported", e.V)
	}
	if err := ValidateID(e.User); err != nil {
		return e, fmt.Errorf("protocol: envelope user: %w", err)
	}
	switch e.Kind {
	case KindClient, KindDisconnect:
		if err := ValidateID(e.Edge); err != nil {
			return e, fmt.Errorf("protocol: envelope edge: %w", err)
		}
		if err := ValidateID(e.Conn); err != nil {
			return e, fmt.Errorf("protocol: envelope conn: %w", err)
		}
	case KindIntegrator:
		if e.Frame.Type != TypePublish {
			return e, fmt.Errorf("protocol: integrator envelope with frame type %d, want publish", e.Frame.Type)
		}
	case KindTick:
		return e, nil
	default:
		return e, fmt.Errorf("protocol: unknown envelope kind %d", e.Kind)
	}
	if fe := e.Frame.ValidateClient(l); fe != nil {
		return e, fmt.Errorf("protocol: envelope frame: %w", fe)
	}
	return e, nil
}
