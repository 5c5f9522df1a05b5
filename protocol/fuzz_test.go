package protocol_test

import (
	"bytes"
	"errors"
	"regexp"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// fuzzLimits are the limits the fuzz targets validate with: small, so the
// fuzzer reaches the too-large branch.
var fuzzLimits = protocol.Limits{MaxBody: 64}

// clientCodes are the codes ValidateClient may return.
var clientCodes = map[protocol.ErrorCode]bool{
	protocol.CodeUnknownType: true, protocol.CodeMissingField: true, protocol.CodeInvalidRoom: true, protocol.CodeTooLarge: true,
	protocol.CodeBadFrame: true,
}

// allocBudget is how much a decoder may allocate for an input of n bytes.
// A MessagePack length header claims up to 4 GiB; a decoder that believes it
// before checking the input lets a few bytes from a client or an integrator
// allocate gigabytes.
func allocBudget(n int) uint64 { return 64<<20 + 64*uint64(n) }

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

// heapAllocated returns the bytes allocated on the heap so far.
func heapAllocated() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

func checkAllocs(t *testing.T, in []byte, before uint64) {
	t.Helper()
	if got := heapAllocated() - before; got > allocBudget(len(in)) {
		t.Fatalf("decoding %d bytes allocated %d MiB: a length header is trusted before the input is checked", len(in), got>>20)
	}
}

func seedFromVectors(f *testing.F, kinds ...string) {
	f.Helper()
	for _, v := range loadVectors(f) {
		for _, k := range kinds {
			if v.Kind == k {
				f.Add(v.bytes(f))
			}
		}
	}
}

// checkAcceptedFrame checks what an accepted client frame promises the
// rest of the system: a client type, a room that is safe in routing keys,
// and the per-type bounds.
func checkAcceptedFrame(t *testing.T, fr *protocol.Frame, l protocol.Limits) {
	t.Helper()
	switch fr.Type {
	case protocol.TypeJoin, protocol.TypeLeave, protocol.TypePublish, protocol.TypeHistory, protocol.TypeTyping:
	case protocol.TypeRead:
		if fr.Seq == 0 {
			t.Fatal("accepted a read without seq")
		}
	default:
		t.Fatalf("accepted frame type %d", fr.Type)
	}
	if fr.Type == protocol.TypeHistory && fr.Limit > protocol.MaxHistoryLimit {
		t.Fatalf("accepted history limit %d", fr.Limit)
	}
	if err := protocol.ValidateID(fr.Room); err != nil {
		t.Fatalf("accepted room %q: %v", fr.Room, err)
	}
	key := protocol.RoomKey(fr.Room)
	if strings.Count(key, ".") != 1 || strings.ContainsAny(key, "*# \x00") {
		t.Fatalf("room %q makes routing key %q", fr.Room, key)
	}
	if kind, id := protocol.ParseEgressKey(key); kind != protocol.KeyRoom || id != fr.Room {
		t.Fatalf("ParseEgressKey(%q) = %d, %q", key, kind, id)
	}
	if s := protocol.ShardOf(fr.Room, protocol.DefaultShards); s < 0 || s >= protocol.DefaultShards {
		t.Fatalf("shard %d", s)
	}
	if fr.Type == protocol.TypePublish {
		if fr.CMID == "" || len(fr.CMID) > protocol.MaxIDLen {
			t.Fatalf("accepted cmid of %d bytes", len(fr.CMID))
		}
		if l.MaxBody > 0 && len(fr.Body) > l.MaxBody {
			t.Fatalf("accepted body of %d bytes", len(fr.Body))
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	seedFromVectors(f, "frame")
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocated()
		fr, err := protocol.DecodeFrame(b)
		checkAllocs(t, b, before)
		if err != nil {
			if !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTrailing) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrTrailing", err)
			}
			return
		}
		fe := fr.ValidateClient(fuzzLimits)
		if fe == nil {
			checkAcceptedFrame(t, &fr, fuzzLimits)
		} else if !clientCodes[fe.Code] || fe.Text == "" {
			t.Fatalf("ValidateClient returned %d %q", fe.Code, fe.Text)
		}
		enc, err := protocol.EncodeFrame(&fr)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", fr, err)
		}
		fr2, err := protocol.DecodeFrame(enc)
		if err != nil {
			t.Fatalf("decoding re-encoded %x: %v", enc, err)
		}
		if !framesEqual(&fr, &fr2) {
			t.Fatalf("round trip changed the frame\n was %+v\n now %+v", fr, fr2)
		}
		enc2, err := protocol.EncodeFrame(&fr2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point: %x vs %x (%v)", enc, enc2, err)
		}
		fe2 := fr2.ValidateClient(fuzzLimits)
		if (fe == nil) != (fe2 == nil) || (fe != nil && fe.Code != fe2.Code) {
			t.Fatalf("validation changed across a round trip: %v vs %v", fe, fe2)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	seedFromVectors(f, "envelope", "frame")
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocated()
		e, err := protocol.DecodeEnvelope(b, fuzzLimits)
		checkAllocs(t, b, before)
		if err != nil {
			return
		}
		if e.V != protocol.EnvelopeVersion {
			t.Fatalf("accepted version %d", e.V)
		}
		if err := protocol.ValidateID(e.User); err != nil {
			t.Fatalf("accepted user %q", e.User)
		}
		switch e.Kind {
		case protocol.KindClient, protocol.KindDisconnect:
			if protocol.ValidateID(e.Edge) != nil || protocol.ValidateID(e.Conn) != nil {
				t.Fatalf("accepted edge %q conn %q", e.Edge, e.Conn)
			}
		case protocol.KindIntegrator:
			if e.Frame.Type != protocol.TypePublish {
				t.Fatalf("accepted integrator frame type %d", e.Frame.Type)
			}
		case protocol.KindTick:
		default:
			t.Fatalf("accepted kind %d", e.Kind)
		}
		if e.Kind != protocol.KindTick { // a tick carries no frame
			checkAcceptedFrame(t, &e.Frame, fuzzLimits)
		}
		enc, err := protocol.EncodeEnvelope(&e)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		e2, err := protocol.DecodeEnvelope(enc, fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded envelope refused: %v", err)
		}
		if !envelopesEqual(&e, &e2) {
			t.Fatalf("round trip changed the envelope\n was %+v\n now %+v", e, e2)
		}
	})
}

// FuzzSplitEnvelopeBatch checks the batch container: whatever it accepts
// is 1..MaxBatchEnvelopes pieces of the input, in order, that re-encode to
// a batch splitting the same way; it never panics or allocates beyond the
// input's size.
func FuzzSplitEnvelopeBatch(f *testing.F) {
	seedFromVectors(f, "batch", "envelope")
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocated()
		parts, err := protocol.SplitEnvelopeBatch(b)
		checkAllocs(t, b, before)
		if err != nil {
			return
		}
		if len(parts) == 0 || len(parts) > protocol.MaxBatchEnvelopes {
			t.Fatalf("accepted a batch of %d", len(parts))
		}
		total := 0
		for _, p := range parts {
			total += len(p)
		}
		if total >= len(b) {
			t.Fatalf("pieces of %d bytes from a %d-byte batch", total, len(b))
		}
		again, err := protocol.SplitEnvelopeBatch(protocol.AppendEnvelopeBatch(nil, parts))
		if err != nil {
			t.Fatalf("re-encoded batch refused: %v", err)
		}
		for i := range parts {
			if !bytes.Equal(parts[i], again[i]) {
				t.Fatalf("element %d changed across a round trip", i)
			}
		}
	})
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_:@+=-]{1,128}$`)

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"", "lobby", "a.b", "*", "#", "a b", "\x00", strings.Repeat("x", 128), strings.Repeat("x", 129), "caf\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := protocol.ValidateID(id) == nil, idPattern.MatchString(id); got != want {
			t.Fatalf("ValidateID(%q) ok=%v, reference says %v", id, got, want)
		}
	})
}
