// Package protocol is Hearth's wire contract, version 1: the MessagePack
// frames exchanged between clients and edges, the envelope edges and
// integrators publish to hubs, exchange and queue names, routing keys, close
// codes and error codes. PROTOCOL.md at the repository root describes the
// same contract for implementers outside Go.
//
// The package imports nothing else from this repository, so integrators and
// clients can depend on it alone. Its functions are pure and safe for
// concurrent use.
package protocol

// Subprotocol is the WebSocket subprotocol a client must offer
// (Sec-WebSocket-Protocol). A later, incompatible version gets a new name;
// edges may serve several versions at once.
const Subprotocol = "hearth.v1"

// EnvelopeVersion is the version field of every Envelope this package writes.
const EnvelopeVersion = 1
