package protocol_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// The golden test vectors live in testdata/vectors.json, which is the
// source of truth: other-language clients and integrators read the same
// file. TestVectors checks the Go code against it; the generator below
// rebuilds it deterministically:
//
//	go test ./protocol -run TestVectors -update
var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the generator table")

const vectorsPath = "testdata/vectors.json"

// defaultMaxBody is the body limit every vector is checked with unless it
// names its own max_body: the edges' and hubs' default.
const defaultMaxBody = 65536

// vectorFile is the layout of testdata/vectors.json.
type vectorFile struct {
	Comment []string `json:"comment"`
	Vectors []vector `json:"vectors"`
}

// vector is one test vector. PROTOCOL.md section 10 ("Test vectors") documents the format.
type vector struct {
	// Name is unique and stable.
	Name string `json:"name"`
	// Kind is "frame" (WebSocket message), "envelope" (AMQP body on
	// hearth.ingress), "batch" (an AMQP body on hearth.ingress holding
	// several envelopes) or "heartbeat" (AMQP body on hearth.control).
	Kind string `json:"kind"`
	// Direction of a frame: "client" (client → edge) or "server" (edge →
	// client). Empty for envelopes.
	Direction string `json:"direction,omitempty"`
	// Hex is the MessagePack bytes, lower-case hex.
	Hex string `json:"hex"`
	// Valid says whether the receiver accepts the bytes.
	Valid bool `json:"valid"`
	// Canonical says the bytes are exactly what Hearth's encoder writes for
	// Meaning; only canonical vectors are checked byte for byte on re-encode.
	Canonical bool `json:"canonical"`
	// ErrorCode is the code of the error frame an edge answers an invalid
	// client frame with. Invalid envelopes have none: hubs drop them.
	ErrorCode int `json:"error_code,omitempty"`
	// MaxBody, when set, is the body limit to validate with (default 65536).
	MaxBody int `json:"max_body,omitempty"`
	// Meaning is the decoded value, with the wire's key names, when the
	// bytes decode. "body" is hex-encoded.
	Meaning json.RawMessage `json:"meaning,omitempty"`
	// Note explains the vector.
	Note string `json:"note,omitempty"`
}

// frameMeaning is a Frame as JSON, keys in wire order.
type frameMeaning struct {
	T       uint8    `json:"t"`
	ID      uint32   `json:"id,omitempty"`
	Room    string   `json:"room,omitempty"`
	CMID    string   `json:"cmid,omitempty"`
	Seq     uint64   `json:"seq,omitempty"`
	From    string   `json:"from,omitempty"`
	TS      int64    `json:"ts,omitempty"`
	Body    string   `json:"body,omitempty"` // hex
	Conn    string   `json:"conn,omitempty"`
	User    string   `json:"user,omitempty"`
	HB      uint32   `json:"hb,omitempty"`
	Members []string `json:"members,omitempty"`
	Ev      string   `json:"ev,omitempty"`
	Code    uint16   `json:"code,omitempty"`
	Text    string   `json:"text,omitempty"`
	// Since is a pointer because since 0 and no since mean different
	// things (a resume from the start, a fresh join).
	Since   *uint64        `json:"since,omitempty"`
	History []frameMeaning `json:"history,omitempty"`
	Reset   bool           `json:"reset,omitempty"`
	Before  uint64         `json:"before,omitempty"`
	After   uint64         `json:"after,omitempty"`
	Limit   uint32         `json:"limit,omitempty"`
}

// heartbeatMeaning is a Heartbeat as JSON, keys in wire order.
type heartbeatMeaning struct {
	ID      string `json:"id"`
	Inc     string `json:"inc,omitempty"`
	Leaving bool   `json:"leaving,omitempty"`
}

// envelopeMeaning is an Envelope as JSON, keys in wire order.
type envelopeMeaning struct {
	V    uint8        `json:"v"`
	K    uint8        `json:"k"`
	Edge string       `json:"edge,omitempty"`
	Conn string       `json:"conn,omitempty"`
	User string       `json:"user"`
	TS   int64        `json:"ts,omitempty"`
	F    frameMeaning `json:"f"`
}

func toFrameMeaning(f *protocol.Frame) frameMeaning {
	m := frameMeaning{
		T: uint8(f.Type), ID: f.ID, Room: f.Room, CMID: f.CMID, Seq: f.Seq, From: f.From, TS: f.TS,
		Body: hex.EncodeToString(f.Body), Conn: f.Conn, User: f.User, HB: f.HB, Members: f.Members,
		Ev: f.Event, Code: uint16(f.Code), Text: f.Text,
		Since: f.Since, Reset: f.Reset, Before: f.Before, After: f.After, Limit: f.Limit,
	}
	for i := range f.History {
		m.History = append(m.History, toFrameMeaning(&f.History[i]))
	}
	return m
}

func (m frameMeaning) frame() (protocol.Frame, error) {
	body, err := hex.DecodeString(m.Body)
	if err != nil {
		return protocol.Frame{}, fmt.Errorf("body: %w", err)
	}
	if len(body) == 0 {
		body = nil
	}
	f := protocol.Frame{
		Type: protocol.FrameType(m.T), ID: m.ID, Room: m.Room, CMID: m.CMID, Seq: m.Seq, From: m.From, TS: m.TS,
		Body: body, Conn: m.Conn, User: m.User, HB: m.HB, Members: m.Members,
		Event: m.Ev, Code: protocol.ErrorCode(m.Code), Text: m.Text,
		Since: m.Since, Reset: m.Reset, Before: m.Before, After: m.After, Limit: m.Limit,
	}
	for i := range m.History {
		h, err := m.History[i].frame()
		if err != nil {
			return protocol.Frame{}, fmt.Errorf("history[%d]: %w", i, err)
		}
		f.History = append(f.History, h)
	}
	return f, nil
}

func toEnvelopeMeaning(e *protocol.Envelope) envelopeMeaning {
	return envelopeMeaning{V: e.V, K: uint8(e.Kind), Edge: e.Edge, Conn: e.Conn, User: e.User, TS: e.TS, F: toFrameMeaning(&e.Frame)}
}

func (m envelopeMeaning) envelope() (protocol.Envelope, error) {
	f, err := m.F.frame()
	return protocol.Envelope{V: m.V, Kind: protocol.EnvelopeKind(m.K), Edge: m.Edge, Conn: m.Conn, User: m.User, TS: m.TS, Frame: f}, err
}

// strictUnmarshal decodes JSON refusing unknown keys, so a typo in the
// vector file fails loudly.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// framesEqual compares frames the way the wire does: an empty field and an
// absent one are the same (fields are omitempty).
func framesEqual(a, b *protocol.Frame) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		if a.Members[i] != b.Members[i] {
			return false
		}
	}
	if len(a.History) != len(b.History) {
		return false
	}
	for i := range a.History {
		if !framesEqual(&a.History[i], &b.History[i]) {
			return false
		}
	}
	// Since: absent and 0 differ (a fresh join, a resume from the start).
	if (a.Since == nil) != (b.Since == nil) || (a.Since != nil && *a.Since != *b.Since) {
		return false
	}
	return a.Type == b.Type && a.ID == b.ID && a.Room == b.Room && a.CMID == b.CMID && a.Seq == b.Seq &&
		a.From == b.From && a.TS == b.TS && bytes.Equal(a.Body, b.Body) && a.Conn == b.Conn &&
		a.User == b.User && a.HB == b.HB && a.Event == b.Event && a.Code == b.Code && a.Text == b.Text &&
		a.Reset == b.Reset && a.Before == b.Before && a.After == b.After && a.Limit == b.Limit
}

func envelopesEqual(a, b *protocol.Envelope) bool {
	return a.V == b.V && a.Kind == b.Kind && a.Edge == b.Edge && a.Conn == b.Conn && a.User == b.User &&
		a.TS == b.TS && framesEqual(&a.Frame, &b.Frame)
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		tb.Fatalf("reading vectors: %v", err)
	}
	var vf vectorFile
	if err := strictUnmarshal(b, &vf); err != nil {
		tb.Fatalf("parsing %s: %v", vectorsPath, err)
	}
	return vf.Vectors
}

func (v *vector) bytes(tb testing.TB) []byte {
	tb.Helper()
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		tb.Fatalf("vector %q: bad hex: %v", v.Name, err)
	}
	return b
}

func (v *vector) limits() protocol.Limits {
	if v.MaxBody > 0 {
		return protocol.Limits{MaxBody: v.MaxBody}
	}
	return protocol.Limits{MaxBody: defaultMaxBody}
}

func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	vs := loadVectors(t)
	seen := map[string]bool{}
	for i := range vs {
		v := &vs[i]
		if seen[v.Name] {
			t.Errorf("duplicate vector name %q", v.Name)
		}
		seen[v.Name] = true
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			switch v.Kind {
			case "frame":
				checkFrameVector(t, v)
			case "envelope":
				checkEnvelopeVector(t, v)
			case "heartbeat":
				checkHeartbeatVector(t, v)
			case "batch":
				checkBatchVector(t, v)
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
		})
	}
}

func checkFrameVector(t *testing.T, v *vector) {
	b := v.bytes(t)
	f, err := protocol.DecodeFrame(b)
	if v.Valid {
		if err != nil {
			t.Fatalf("DecodeFrame: %v", err)
		}
		var m frameMeaning
		if err := strictUnmarshal(v.Meaning, &m); err != nil {
			t.Fatalf("meaning: %v", err)
		}
		want, err := m.frame()
		if err != nil {
			t.Fatalf("meaning: %v", err)
		}
		if !framesEqual(&f, &want) {
			t.Fatalf("decoded %+v\nwant    %+v", f, want)
		}
		fe := f.ValidateClient(v.limits())
		switch v.Direction {
		case "client":
			if fe != nil {
				t.Fatalf("valid client frame refused: %v", fe)
			}
		case "server":
			if fe == nil || fe.Code != protocol.CodeUnknownType {
				t.Fatalf("server frame accepted from a client: %v", fe)
			}
		default:
			t.Fatalf("unknown direction %q", v.Direction)
		}
		enc, err := protocol.EncodeFrame(&want)
		if err != nil {
			t.Fatalf("EncodeFrame: %v", err)
		}
		if v.Canonical && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoded bytes differ\n got %x\nwant %s", enc, v.Hex)
		}
		again, err := protocol.DecodeFrame(enc)
		if err != nil || !framesEqual(&again, &want) {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
		app, err := protocol.AppendFrame([]byte("prefix"), &want)
		if err != nil || !bytes.Equal(app, append([]byte("prefix"), enc...)) {
			t.Fatalf("AppendFrame = %x, %v; want prefix + %x", app, err, enc)
		}
		return
	}
	if v.Direction != "client" {
		t.Fatalf("invalid frame vectors are client frames, got direction %q", v.Direction)
	}
	if v.ErrorCode == 0 {
		t.Fatal("invalid frame vector without error_code")
	}
	var code protocol.ErrorCode
	if err != nil {
		if !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTrailing) {
			t.Fatalf("DecodeFrame error %v wraps neither ErrMalformed nor ErrTrailing", err)
		}
		if len(v.Meaning) != 0 {
			t.Fatal("undecodable vector has a meaning")
		}
		code = protocol.CodeBadFrame // what the edge answers a decoding error with
	} else {
		fe := f.ValidateClient(v.limits())
		if fe == nil {
			t.Fatalf("frame %+v accepted, want error %d", f, v.ErrorCode)
		}
		code = fe.Code
		if len(v.Meaning) != 0 {
			var m frameMeaning
			if err := strictUnmarshal(v.Meaning, &m); err != nil {
				t.Fatalf("meaning: %v", err)
			}
			want, err := m.frame()
			if err != nil {
				t.Fatalf("meaning: %v", err)
			}
			if !framesEqual(&f, &want) {
				t.Fatalf("decoded %+v\nwant    %+v", f, want)
			}
		}
	}
	if int(code) != v.ErrorCode {
		t.Fatalf("error code %d (%s), want %d", code, code, v.ErrorCode)
	}
}

func checkEnvelopeVector(t *testing.T, v *vector) {
	b := v.bytes(t)
	e, err := protocol.DecodeEnvelope(b, v.limits())
	if !v.Valid {
		if err == nil {
			t.Fatalf("envelope %+v accepted", e)
		}
		if v.ErrorCode != 0 {
			t.Fatal("invalid envelopes have no error_code: hubs drop them")
		}
		return
	}
	if err != nil {
		t.Fatalf("DecodeEnvelope: %v", err)
	}
	var m envelopeMeaning
	if err := strictUnmarshal(v.Meaning, &m); err != nil {
		t.Fatalf("meaning: %v", err)
	}
	want, err := m.envelope()
	if err != nil {
		t.Fatalf("meaning: %v", err)
	}
	if !envelopesEqual(&e, &want) {
		t.Fatalf("decoded %+v\nwant    %+v", e, want)
	}
	enc, err := protocol.EncodeEnvelope(&want)
	if err != nil {
		t.Fatalf("EncodeEnvelope: %v", err)
	}
	if v.Canonical && !bytes.Equal(enc, b) {
		t.Fatalf("re-encoded bytes differ\n got %x\nwant %s", enc, v.Hex)
	}
	again, err := protocol.DecodeEnvelope(enc, v.limits())
	if err != nil || !envelopesEqual(&again, &want) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
}

func checkBatchVector(t *testing.T, v *vector) {
	b := v.bytes(t)
	if !protocol.IsEnvelopeBatch(b) && v.Valid {
		t.Fatal("valid batch not recognised as a batch")
	}
	parts, err := protocol.SplitEnvelopeBatch(b)
	if !v.Valid {
		if err == nil {
			t.Fatalf("batch of %d accepted", len(parts))
		}
		if !errors.Is(err, protocol.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("SplitEnvelopeBatch: %v", err)
	}
	var ms []envelopeMeaning
	if err := strictUnmarshal(v.Meaning, &ms); err != nil {
		t.Fatalf("meaning: %v", err)
	}
	if len(parts) != len(ms) {
		t.Fatalf("%d envelopes, want %d", len(parts), len(ms))
	}
	encs := make([][]byte, len(ms))
	for i := range ms {
		e, err := protocol.DecodeEnvelope(parts[i], v.limits())
		if err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
		want, err := ms[i].envelope()
		if err != nil {
			t.Fatalf("meaning %d: %v", i, err)
		}
		if !envelopesEqual(&e, &want) {
			t.Fatalf("envelope %d: decoded %+v\nwant    %+v", i, e, want)
		}
		if encs[i], err = protocol.EncodeEnvelope(&want); err != nil {
			t.Fatal(err)
		}
	}
	if enc := protocol.AppendEnvelopeBatch(nil, encs); v.Canonical && !bytes.Equal(enc, b) {
		t.Fatalf("re-encoded bytes differ\n got %x\nwant %s", enc, v.Hex)
	}
}

func checkHeartbeatVector(t *testing.T, v *vector) {
	b := v.bytes(t)
	h, err := protocol.DecodeHeartbeat(b)
	if !v.Valid {
		if err == nil {
			t.Fatalf("heartbeat %+v accepted", h)
		}
		if v.ErrorCode != 0 {
			t.Fatal("invalid heartbeats have no error_code: hubs ignore them")
		}
		return
	}
	if err != nil {
		t.Fatalf("DecodeHeartbeat: %v", err)
	}
	var m heartbeatMeaning
	if err := strictUnmarshal(v.Meaning, &m); err != nil {
		t.Fatalf("meaning: %v", err)
	}
	want := protocol.Heartbeat{ID: m.ID, Incarnation: m.Inc, Leaving: m.Leaving}
	if h != want {
		t.Fatalf("decoded %+v\nwant    %+v", h, want)
	}
	enc, err := protocol.EncodeHeartbeat(&want)
	if err != nil {
		t.Fatalf("EncodeHeartbeat: %v", err)
	}
	if v.Canonical && !bytes.Equal(enc, b) {
		t.Fatalf("re-encoded bytes differ\n got %x\nwant %s", enc, v.Hex)
	}
}

// TestVectorsGenerated checks that the committed file is what the generator
// writes, byte for byte, and that generating twice gives the same bytes.
func TestVectorsGenerated(t *testing.T) {
	a, err := generateVectors()
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateVectors()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("vector generation is not deterministic")
	}
	committed, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, a) {
		t.Fatalf("%s differs from the generator's output; if the change is intended run\n\tgo test ./protocol -run TestVectors -update\nand review the diff: every byte change breaks other-language clients", vectorsPath)
	}
}

// protocolDoc is PROTOCOL.md, whose hex examples must all be vectors.
const protocolDoc = "../PROTOCOL.md"

var (
	docSpan   = regexp.MustCompile("`([^`]+)`")
	docHex    = regexp.MustCompile(`^[0-9a-f]{2}( ?[0-9a-f]{2}){5,}$`) // at least 6 bytes, optionally spaced
	docVector = regexp.MustCompile(`^(client|server|invalid|envelope|heartbeat|batch)/[a-z0-9-]+$`)
)

// TestProtocolDocHex checks PROTOCOL.md against vectors.json: every hex
// string of at least 6 bytes in it — in backticks, or alone on a line of a
// code block — must be the hex of a vector. When the line (for a code
// block: the block, whose lines may start with "# <vector name>") names
// exactly one vector, the hex must be that vector's. Every vector the page
// names in backticks must exist. So the page's examples cannot drift from
// the bytes Hearth writes.
func TestProtocolDocHex(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*vector{}
	byHex := map[string][]string{}
	vs := loadVectors(t)
	for i := range vs {
		byName[vs[i].Name] = &vs[i]
		byHex[vs[i].Hex] = append(byHex[vs[i].Hex], vs[i].Name)
	}
	checked := 0
	check := func(at string, hexes, names []string) {
		for _, n := range names {
			if byName[n] == nil {
				t.Errorf("%s: names vector %q, which vectors.json does not have", at, n)
			}
		}
		for _, h := range hexes {
			checked++
			if len(byHex[h]) == 0 {
				t.Errorf("%s: hex %s is not the hex of any vector", at, h)
				continue
			}
			if len(names) == 1 && byName[names[0]] != nil && byName[names[0]].Hex != h {
				t.Errorf("%s: hex %s is not vector %s's (%s has it); %s is %s", at, h, names[0], strings.Join(byHex[h], ", "), names[0], byName[names[0]].Hex)
			}
		}
	}
	var block struct {
		start        string
		hexes, names []string
		inside       bool
	}
	for i, line := range strings.Split(string(doc), "\n") {
		at := fmt.Sprintf("%s:%d", protocolDoc, i+1)
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if block.inside {
				check(block.start, block.hexes, block.names)
			}
			block.inside, block.start, block.hexes, block.names = !block.inside, at, nil, nil
			continue
		}
		if block.inside {
			if docHex.MatchString(trimmed) {
				block.hexes = append(block.hexes, strings.ReplaceAll(trimmed, " ", ""))
			} else if f := strings.Fields(strings.TrimPrefix(trimmed, "# ")); len(f) > 0 && docVector.MatchString(f[0]) {
				block.names = append(block.names, f[0])
			}
			continue
		}
		var hexes, names []string
		for _, m := range docSpan.FindAllStringSubmatch(line, -1) {
			switch span := m[1]; {
			case docHex.MatchString(span):
				hexes = append(hexes, strings.ReplaceAll(span, " ", ""))
			case docVector.MatchString(span):
				names = append(names, span)
			}
		}
		check(at, hexes, names)
	}
	if checked < 30 {
		t.Errorf("found only %d hex examples in %s; did the format change?", checked, protocolDoc)
	}
}

// TestProtocolDocDMExamples pins the direct-message room names PROTOCOL.md
// works through.
func TestProtocolDocDMExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, b, room string }{
		{"bob", "alice", "dm:5:alice:bob"},
		{"alice", "bob", "dm:5:alice:bob"},
		{"a:b", "c", "dm:3:a:b:c"},
		{"a", "b:c", "dm:1:a:b:c"},
		{"user:42", "user:7", "dm:7:user:42:user:7"},
		{"Zoe", "alice", "dm:3:Zoe:alice"},
	} {
		if got := protocol.DMRoom(tc.a, tc.b); got != tc.room {
			t.Errorf("DMRoom(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.room)
		}
		if !protocol.MayJoin(tc.a, nil, tc.room) || !protocol.MayJoin(tc.b, nil, tc.room) {
			t.Errorf("%q and %q may not both join %q", tc.a, tc.b, tc.room)
		}
	}
	for _, tc := range []struct{ user, room string }{
		{"alice", "dm:3:bob:alice"},   // not in byte order
		{"alice", "dm:alice:bob"},     // no length
		{"alice", "dm:5:alice:alice"}, // with oneself
		{"carol", "dm:5:alice:bob"},   // not one of the two
		{"a", "dm:3:a:b:c"},           // the pair is a:b and c
	} {
		if protocol.MayJoin(tc.user, nil, tc.room) {
			t.Errorf("%q may join %q", tc.user, tc.room)
		}
	}
	if !protocol.MayJoin("alice", []string{"priv:ops"}, "priv:ops") || protocol.MayJoin("alice", []string{"priv:hr"}, "priv:ops") {
		t.Error("private rooms do not follow the rooms claim")
	}
}

// TestVectorsCoverage keeps the file covering every frame type, both
// directions, every envelope kind and every client error code.
func TestVectorsCoverage(t *testing.T) {
	t.Parallel()
	types := map[protocol.FrameType]bool{}
	kinds := map[protocol.EnvelopeKind]bool{}
	codes := map[int]bool{}
	events := map[string]bool{}
	// Fields a client must handle that are not a frame type of their own.
	fields := map[string]bool{}
	heartbeats := 0
	for _, v := range loadVectors(t) {
		if v.ErrorCode != 0 {
			codes[v.ErrorCode] = true
		}
		if !v.Valid || len(v.Meaning) == 0 {
			continue
		}
		switch v.Kind {
		case "frame":
			var m frameMeaning
			if err := strictUnmarshal(v.Meaning, &m); err != nil {
				t.Fatal(err)
			}
			types[protocol.FrameType(m.T)] = true
			if m.Ev != "" {
				events[m.Ev] = true
			}
			if m.Since != nil {
				fields["since"] = true
			}
			if len(m.History) > 0 {
				fields["history/"+strconv.Itoa(int(m.T))] = true
			}
			if m.Reset {
				fields["reset/"+strconv.Itoa(int(m.T))] = true
			}
			if m.After > 0 {
				fields["after"] = true
			}
			if m.Before > 0 {
				fields["before"] = true
			}
		case "envelope":
			var m envelopeMeaning
			if err := strictUnmarshal(v.Meaning, &m); err != nil {
				t.Fatal(err)
			}
			kinds[protocol.EnvelopeKind(m.K)] = true
		case "heartbeat":
			heartbeats++
		}
	}
	for _, ft := range []protocol.FrameType{
		protocol.TypeJoin, protocol.TypeLeave, protocol.TypePublish, protocol.TypeHistory, protocol.TypeTyping, protocol.TypeRead,
		protocol.TypeWelcome, protocol.TypeJoined, protocol.TypeLeft, protocol.TypeMessage, protocol.TypePresence,
		protocol.TypeAck, protocol.TypeError, protocol.TypeHistoryReply, protocol.TypeTypingEvent, protocol.TypeReceipt,
	} {
		if !types[ft] {
			t.Errorf("no valid vector of frame type %d", ft)
		}
	}
	for _, k := range []protocol.EnvelopeKind{protocol.KindClient, protocol.KindDisconnect, protocol.KindIntegrator, protocol.KindTick} {
		if !kinds[k] {
			t.Errorf("no valid envelope of kind %d", k)
		}
	}
	for _, c := range []protocol.ErrorCode{
		protocol.CodeBadFrame, protocol.CodeUnknownType, protocol.CodeMissingField, protocol.CodeInvalidRoom, protocol.CodeTooLarge,
	} {
		if !codes[int(c)] {
			t.Errorf("no invalid vector producing %d (%s)", c, c)
		}
	}
	for _, ev := range []string{protocol.EventJoin, protocol.EventLeave} {
		if !events[ev] {
			t.Errorf("no presence vector for %q", ev)
		}
	}
	joined, reply := strconv.Itoa(int(protocol.TypeJoined)), strconv.Itoa(int(protocol.TypeHistoryReply))
	for _, f := range []string{"since", "after", "before", "history/" + joined, "reset/" + joined, "history/" + reply, "reset/" + reply} {
		if !fields[f] {
			t.Errorf("no valid vector with %s", f)
		}
	}
	if heartbeats == 0 {
		t.Error("no valid heartbeat vector")
	}
}

func writeVectors(t *testing.T) {
	t.Helper()
	b, err := generateVectors()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", vectorsPath)
}

// vectorSpec is one row of the generator table.
type vectorSpec struct {
	name string
	kind string // "frame" or "envelope"
	dir  string // frames: "client" or "server"
	// frame or env is the meaning. When raw is empty the bytes are its
	// encoding (a canonical vector).
	frame *protocol.Frame
	env   *protocol.Envelope
	hb    *protocol.Heartbeat
	batch []*protocol.Envelope
	// raw is hand-built MessagePack, for non-canonical and invalid vectors.
	raw     string
	valid   bool
	code    protocol.ErrorCode
	maxBody int
	note    string
}

func generateVectors() ([]byte, error) {
	vf := vectorFile{Comment: []string{
		"Hearth protocol v1 golden test vectors. Format: PROTOCOL.md, section 'Test vectors'.",
		"kind: frame (WebSocket binary message), envelope (AMQP body on hearth.ingress), batch (AMQP body on hearth.ingress holding several envelopes; meaning is the list of envelopes) or heartbeat (AMQP body on hearth.control); direction: client or server (frames). Skip kinds you do not know.",
		"hex: the MessagePack bytes. meaning: the decoded map with wire key names; 'body' is hex-encoded; absent key = zero value.",
		"valid=false frames: an edge answers with an error frame carrying error_code. valid=false envelopes and heartbeats: hubs drop them.",
		"canonical=true: the bytes are exactly what Hearth's Go encoder writes for meaning (fixed-width integers, keys in wire order).",
		"Limits: body at most max_body bytes when given, else 65536. Regenerate: go test ./protocol -run TestVectors -update.",
	}}
	for _, s := range vectorSpecs() {
		v := vector{Name: s.name, Kind: s.kind, Direction: s.dir, Valid: s.valid, ErrorCode: int(s.code), MaxBody: s.maxBody, Note: s.note}
		var enc []byte
		var meaning any
		var err error
		switch {
		case s.frame != nil:
			enc, err = protocol.EncodeFrame(s.frame)
			meaning = toFrameMeaning(s.frame)
		case s.env != nil:
			enc, err = protocol.EncodeEnvelope(s.env)
			meaning = toEnvelopeMeaning(s.env)
		case s.hb != nil:
			enc, err = protocol.EncodeHeartbeat(s.hb)
			meaning = heartbeatMeaning{ID: s.hb.ID, Inc: s.hb.Incarnation, Leaving: s.hb.Leaving}
		case s.batch != nil:
			encs := make([][]byte, len(s.batch))
			ms := make([]envelopeMeaning, len(s.batch))
			for i, e := range s.batch {
				if encs[i], err = protocol.EncodeEnvelope(e); err != nil {
					break
				}
				ms[i] = toEnvelopeMeaning(e)
			}
			enc, meaning = protocol.AppendEnvelopeBatch(nil, encs), ms
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if meaning != nil {
			if v.Meaning, err = json.Marshal(meaning); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		if s.raw != "" {
			v.Hex = strings.ToLower(s.raw)
			v.Canonical = enc != nil && v.Hex == hex.EncodeToString(enc)
		} else {
			v.Hex = hex.EncodeToString(enc)
			v.Canonical = true
		}
		if !v.Valid {
			v.Canonical = false
		}
		vf.Vectors = append(vf.Vectors, v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(vf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Hand-built MessagePack, as hex, so non-canonical and broken inputs read
// like what they are.

// mpStr encodes s as a str (fixstr or str8/str16).
func mpStr(s string) string {
	switch n := len(s); {
	case n < 32:
		return fmt.Sprintf("%02x", 0xa0|n) + hex.EncodeToString([]byte(s))
	case n < 256:
		return fmt.Sprintf("d9%02x", n) + hex.EncodeToString([]byte(s))
	default:
		return fmt.Sprintf("da%04x", n) + hex.EncodeToString([]byte(s))
	}
}

// mpBin encodes b as bin8.
func mpBin(b []byte) string { return fmt.Sprintf("c4%02x", len(b)) + hex.EncodeToString(b) }

// mpMap starts a fixmap of n entries.
func mpMap(n int) string { return fmt.Sprintf("%02x", 0x80|n) }

// mpKV is a key and an already-encoded value.
func mpKV(key, value string) string { return mpStr(key) + value }

// mpUint encodes a small unsigned integer compactly (positive fixint or
// uint8), as most MessagePack libraries outside Go do.
func mpUint(n int) string {
	if n < 128 {
		return fmt.Sprintf("%02x", n)
	}
	return fmt.Sprintf("cc%02x", n)
}

func cat(parts ...string) string { return strings.Join(parts, "") }

func mustHex(f *protocol.Frame) string {
	b, err := protocol.EncodeFrame(f)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Values the vectors share.
var (
	binaryBody = []byte{0x00, 0xff, 0x10, 'h', 'i', 0x80, 0xc1} // not UTF-8, includes the never-used code c1
	tsExample  = int64(1700000000000)                           // 2023-11-14T22:13:20Z in Unix ms
)

func vectorSpecs() []vectorSpec {
	join := &protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby"}
	publish := &protocol.Frame{Type: protocol.TypePublish, ID: 3, Room: "lobby", CMID: "c-1", Body: binaryBody}
	long128 := strings.Repeat("r", protocol.MaxIDLen)
	long129 := strings.Repeat("r", protocol.MaxIDLen+1)
	u64 := func(n uint64) *uint64 { return &n }
	// msg is a message as it appears inside a history list: no room (the
	// enclosing frame names it).
	msg := func(seq uint64, cmid, from, body string) protocol.Frame {
		return protocol.Frame{Type: protocol.TypeMessage, CMID: cmid, Seq: seq, From: from, TS: tsExample, Body: []byte(body)}
	}
	invalidRoom := func(name, room, note string) vectorSpec {
		return vectorSpec{
			name: name, kind: "frame", dir: "client", valid: false, code: protocol.CodeInvalidRoom, note: note,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 9, Room: room},
			raw:   cat(mpMap(3), mpKV("t", mpUint(1)), mpKV("id", mpUint(9)), mpKV("room", mpStr(room))),
		}
	}
	return []vectorSpec{
		// Client → server, canonical.
		{name: "client/join", kind: "frame", dir: "client", valid: true, frame: join},
		{name: "client/leave", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeLeave, ID: 2, Room: "lobby"}},
		{name: "client/publish-binary-body", kind: "frame", dir: "client", valid: true, frame: publish,
			note: "body is bin, here bytes that are not UTF-8"},
		{name: "client/publish-empty-body", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 4, Room: "lobby", CMID: "c-2"},
			note:  "an empty body is omitted"},
		{name: "client/join-all-id-characters", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 5, Room: "Team_9-a:b@c+d=e"}},
		{name: "client/join-128-byte-room", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 6, Room: long128}, note: "the longest room name"},
		{name: "client/join-since", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby", Since: u64(41)},
			note:  "a resume: the client's last seq in the room is 41; joined carries every later message, or reset"},
		{name: "client/join-since-zero", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby", Since: u64(0)},
			note:  "since 0 is not an absent since: it asks for the room from its first message (reset when that is no longer retained)"},
		{name: "client/join-dm", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 7, Room: "dm:5:alice:bob"},
			note:  "the direct-message room of alice and bob; only they may join it"},
		{name: "client/join-private", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 8, Room: "priv:ops"},
			note:  "a private room: the token's rooms claim must list priv:ops, else the edge answers 403"},
		{name: "client/history-after", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistory, ID: 4, Room: "lobby", After: 41, Limit: 100},
			note:  "messages with seq > 41, oldest first, at most 100: filling a gap after seq 41"},
		{name: "client/history-before", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistory, ID: 5, Room: "lobby", Before: 42},
			note:  "the newest 50 (the default limit) messages with seq < 42: scrolling back"},
		{name: "client/history-newest", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistory, ID: 6, Room: "lobby"},
			note:  "neither after nor before: the room's newest 50 messages"},
		{name: "client/typing", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeTyping, Room: "lobby"},
			note:  "no id: typing has no reply"},
		{name: "client/read", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeRead, ID: 7, Room: "lobby", Seq: 42},
			note:  "the user has read lobby up to seq 42; no reply, a receipt is broadcast when the position moves forward"},
		// Client → server, as other MessagePack libraries write them.
		{name: "client/join-compact-ints", kind: "frame", dir: "client", valid: true, frame: join,
			raw:  cat(mpMap(3), mpKV("t", mpUint(1)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby"))),
			note: "integers as positive fixints (what JavaScript and Python encoders write): accepted"},
		{name: "client/publish-reordered-keys", kind: "frame", dir: "client", valid: true, frame: publish,
			raw: cat(mpMap(5), mpKV("body", mpBin(binaryBody)), mpKV("cmid", mpStr("c-1")), mpKV("room", mpStr("lobby")),
				mpKV("id", mpUint(3)), mpKV("t", mpUint(3))),
			note: "key order does not matter"},
		{name: "client/join-unknown-key-ignored", kind: "frame", dir: "client", valid: true, frame: join,
			raw: cat(mpMap(4), mpKV("t", mpUint(1)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby")),
				mpKV("x-trace", cat("92", mpStr("abc"), "81a17801"))),
			note: "unknown keys are skipped, whatever their value: forward compatibility"},
		{name: "client/publish-body-as-str", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 7, Room: "lobby", CMID: "c-3", Body: []byte("hello")},
			raw: cat(mpMap(5), mpKV("t", mpUint(3)), mpKV("id", mpUint(7)), mpKV("room", mpStr("lobby")),
				mpKV("cmid", mpStr("c-3")), mpKV("body", mpStr("hello"))),
			note: "a str body is accepted as its bytes; servers always send bin"},
		{name: "client/join-map16", kind: "frame", dir: "client", valid: true, frame: join,
			raw:  cat("de0003", mpKV("t", mpUint(1)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby"))),
			note: "map16 header instead of fixmap"},
		{name: "client/join-since-compact", kind: "frame", dir: "client", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 1, Room: "lobby", Since: u64(41)},
			raw:   cat(mpMap(4), mpKV("t", mpUint(1)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby")), mpKV("since", mpUint(41))),
			note:  "client/join-since as JavaScript and Python encoders write it"},

		// Server → client, canonical: the bytes the edge and hubs write.
		{name: "server/welcome", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeWelcome, Conn: "a1b2c3-1", User: "alice", HB: 25000},
			note:  "first frame on every connection; hb in milliseconds"},
		{name: "server/joined", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoined, ID: 1, Room: "lobby", Seq: 41, Members: []string{"alice", "bob"}},
			note:  "members sorted; every later message of the room has seq > 41"},
		{name: "server/joined-new-room", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoined, ID: 1, Room: "fresh", Members: []string{"alice"}},
			note:  "seq 0 is omitted: an absent key means zero"},
		{name: "server/joined-history", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoined, ID: 1, Room: "lobby", Seq: 43, Members: []string{"alice", "bob"},
				History: []protocol.Frame{msg(42, "c-7", "bob", "hi"), msg(43, "c-2", "alice", "yo")}},
			note: "the answer to client/join-since (since 41) when the room is at seq 43: history holds 42 and 43, messages without room; live delivery continues at 44"},
		{name: "server/joined-reset", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoined, ID: 1, Room: "lobby", Seq: 1500, Members: []string{"alice"},
				History: []protocol.Frame{msg(1500, "c-9", "bob", "hi")}, Reset: true},
			note: "since 41, but the room retains only seq 1500: the client drops its view of the room and starts again from this reply"},
		{name: "server/joined-reset-ahead", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeJoined, ID: 1, Room: "lobby", Seq: 3, Members: []string{"alice"}, Reset: true},
			note:  "since 41, but the room is at seq 3 (its state was lost): reset, no history"},
		{name: "server/left", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeLeft, ID: 2, Room: "lobby"}},
		{name: "server/message", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeMessage, Room: "lobby", CMID: "c-1", Seq: 42, From: "alice", TS: tsExample, Body: binaryBody}},
		{name: "server/message-from-integrator", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeMessage, Room: "lobby", CMID: "invoice-77", Seq: 43, From: "billing-svc", TS: tsExample, Body: []byte("paid")}},
		{name: "server/presence-join", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypePresence, Room: "lobby", User: "bob", Event: protocol.EventJoin}},
		{name: "server/presence-leave", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypePresence, Room: "lobby", User: "bob", Event: protocol.EventLeave}},
		{name: "server/ack", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeAck, ID: 3, Room: "lobby", CMID: "c-1", Seq: 42}},
		{name: "server/error-not-member", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeError, ID: 3, Room: "lobby", Code: protocol.CodeNotMember, Text: "join the room before publishing"}},
		{name: "server/error-bad-frame", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeError, Code: protocol.CodeBadFrame, Text: "frames are binary MessagePack messages"},
			note:  "id 0 (omitted): the request's id is unknown"},
		{name: "server/error-rate-limited", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeError, Code: protocol.CodeRateLimited, Text: "too many frames; slow down"}},
		{name: "server/error-forbidden-private", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeError, ID: 8, Room: "priv:ops", Code: protocol.CodeForbidden, Text: "this room is private"},
			note:  "the edge's answer to client/join-private when the token does not grant priv:ops"},
		{name: "server/history-reply", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistoryReply, ID: 4, Room: "lobby", Seq: 43,
				History: []protocol.Frame{msg(42, "c-7", "bob", "hi"), msg(43, "c-2", "alice", "yo")}},
			note: "the answer to client/history-after when the room is at seq 43"},
		{name: "server/history-reply-reset", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistoryReply, ID: 4, Room: "lobby", Seq: 1500,
				History: []protocol.Frame{msg(1500, "c-9", "bob", "hi")}, Reset: true},
			note: "after 41, but the room retains only seq 1500: the messages in between are gone"},
		{name: "server/history-reply-empty", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeHistoryReply, ID: 4, Room: "lobby", Seq: 41},
			note:  "after 41 when the room is at seq 41: nothing newer"},
		{name: "server/typing-event", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeTypingEvent, Room: "lobby", User: "bob"},
			note:  "bob is typing in lobby; ephemeral, not sequenced, also sent to bob"},
		{name: "server/receipt", kind: "frame", dir: "server", valid: true,
			frame: &protocol.Frame{Type: protocol.TypeReceipt, Room: "lobby", User: "bob", Seq: 42},
			note:  "bob has read lobby up to seq 42; seq is a read position, not the frame's place in the room's sequence"},

		// Invalid client frames: the error code the edge answers with.
		{name: "invalid/not-a-map-array", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat("93", mpUint(1), mpUint(1), mpStr("lobby")), note: "an array, not a map"},
		{name: "invalid/not-a-map-nil", kind: "frame", dir: "client", code: protocol.CodeBadFrame, raw: "c0"},
		{name: "invalid/not-a-map-string", kind: "frame", dir: "client", code: protocol.CodeBadFrame, raw: mpStr("join")},
		{name: "invalid/not-a-map-int", kind: "frame", dir: "client", code: protocol.CodeBadFrame, raw: "01"},
		{name: "invalid/empty-message", kind: "frame", dir: "client", code: protocol.CodeBadFrame, raw: "",
			note: "a binary message of zero bytes"},
		{name: "invalid/truncated-string", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: mustHex(join)[:len(mustHex(join))-4], note: "the join frame cut two bytes short"},
		{name: "invalid/truncated-map", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat(mpMap(3), mpKV("t", mpUint(1)), mpKV("room", mpStr("lobby"))), note: "map header says 3 entries, 2 follow"},
		{name: "invalid/trailing-byte", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: mustHex(join) + "c0", note: "a valid join followed by one more byte"},
		{name: "invalid/two-frames", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: mustHex(join) + mustHex(join), note: "one WebSocket message holds exactly one frame"},
		{name: "invalid/integer-key", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat(mpMap(2), "01", mpUint(1), mpKV("room", mpStr("lobby"))), note: "keys are strings"},
		{name: "invalid/type-as-string", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat(mpMap(2), mpKV("t", mpStr("join")), mpKV("room", mpStr("lobby")))},
		{name: "invalid/type-as-float", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw:  cat(mpMap(2), mpKV("t", "cb3ff0000000000000"), mpKV("room", mpStr("lobby"))),
			note: "integers must be MessagePack integers, not floats"},
		{name: "invalid/room-as-int", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat(mpMap(2), mpKV("t", mpUint(1)), mpKV("room", mpUint(5)))},
		{name: "invalid/body-as-array", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			raw: cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")), mpKV("body", "9101"))},
		{name: "invalid/empty-map", kind: "frame", dir: "client", code: protocol.CodeUnknownType,
			frame: &protocol.Frame{}, raw: "80", note: "no t: type 0 is not a client type"},
		{name: "invalid/unknown-type", kind: "frame", dir: "client", code: protocol.CodeUnknownType,
			frame: &protocol.Frame{Type: 9, ID: 1, Room: "lobby"},
			raw:   cat(mpMap(3), mpKV("t", mpUint(9)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby")))},
		{name: "invalid/server-type-from-client", kind: "frame", dir: "client", code: protocol.CodeUnknownType,
			frame: &protocol.Frame{Type: protocol.TypeMessage, Room: "lobby", Body: []byte("x")},
			raw:   cat(mpMap(3), mpKV("t", mpUint(67)), mpKV("room", mpStr("lobby")), mpKV("body", mpBin([]byte("x")))),
			note:  "types from 64 up are server frames"},
		{name: "invalid/join-missing-room", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 1},
			raw:   cat(mpMap(2), mpKV("t", mpUint(1)), mpKV("id", mpUint(1)))},
		{name: "invalid/leave-missing-room", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypeLeave, ID: 2},
			raw:   cat(mpMap(2), mpKV("t", mpUint(2)), mpKV("id", mpUint(2)))},
		{name: "invalid/publish-missing-room", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 3, CMID: "c-1", Body: []byte("x")},
			raw:   cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("id", mpUint(3)), mpKV("cmid", mpStr("c-1")), mpKV("body", mpBin([]byte("x"))))},
		{name: "invalid/room-empty-string", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypeJoin, ID: 9},
			raw:   cat(mpMap(3), mpKV("t", mpUint(1)), mpKV("id", mpUint(9)), mpKV("room", mpStr(""))),
			note:  "an empty room counts as a missing one (420), not an invalid one"},
		{name: "invalid/publish-missing-cmid", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 3, Room: "lobby", Body: []byte("x")},
			raw:   cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("id", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("body", mpBin([]byte("x"))))},
		{name: "invalid/publish-cmid-129-bytes", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 3, Room: "lobby", CMID: long129},
			raw:   cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("id", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr(long129))),
			note:  "cmid is valid UTF-8 of at most 128 bytes; the code is 400 (bad_frame)"},
		{name: "invalid/read-missing-seq", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypeRead, ID: 7, Room: "lobby"},
			raw:   cat(mpMap(3), mpKV("t", mpUint(6)), mpKV("id", mpUint(7)), mpKV("room", mpStr("lobby"))),
			note:  "read needs a seq (0 counts as absent)"},
		{name: "invalid/typing-missing-room", kind: "frame", dir: "client", code: protocol.CodeMissingField,
			frame: &protocol.Frame{Type: protocol.TypeTyping},
			raw:   cat(mpMap(1), mpKV("t", mpUint(5)))},
		{name: "invalid/history-limit-over-max", kind: "frame", dir: "client", code: protocol.CodeBadFrame,
			frame: &protocol.Frame{Type: protocol.TypeHistory, ID: 4, Room: "lobby", Limit: protocol.MaxHistoryLimit + 1},
			raw:   cat(mpMap(4), mpKV("t", mpUint(4)), mpKV("id", mpUint(4)), mpKV("room", mpStr("lobby")), mpKV("limit", "cd01f5")),
			note:  "limit is at most 500 (here 501); the code is 400 (bad_frame)"},
		invalidRoom("invalid/room-dot", "a.b", "'.' separates routing-key words"),
		invalidRoom("invalid/room-star", "*", "'*' is a topic wildcard"),
		invalidRoom("invalid/room-hash", "#", "'#' is a topic wildcard"),
		invalidRoom("invalid/room-129-bytes", long129, "one byte over the limit"),
		invalidRoom("invalid/room-nul", "lob\x00by", "NUL byte"),
		invalidRoom("invalid/room-space", "lob by", "space"),
		invalidRoom("invalid/room-slash", "a/b", "'/' is outside the allowlist"),
		invalidRoom("invalid/room-non-ascii", "caf\u00e9", "UTF-8 letters are outside the allowlist"),
		{name: "invalid/publish-body-over-limit", kind: "frame", dir: "client", code: protocol.CodeTooLarge, maxBody: 8,
			frame: &protocol.Frame{Type: protocol.TypePublish, ID: 3, Room: "lobby", CMID: "c-1", Body: []byte("123456789")},
			raw: cat(mpMap(5), mpKV("t", mpUint(3)), mpKV("id", mpUint(3)), mpKV("room", mpStr("lobby")),
				mpKV("cmid", mpStr("c-1")), mpKV("body", mpBin([]byte("123456789")))),
			note: "validated with max_body 8: a 9-byte body is too large"},

		// Envelopes on hearth.ingress.
		{name: "envelope/client-join", kind: "envelope", valid: true,
			env: &protocol.Envelope{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1b2c3-1", User: "alice", TS: tsExample, Frame: *join}},
		{name: "envelope/client-publish", kind: "envelope", valid: true,
			env: &protocol.Envelope{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1b2c3-1", User: "alice", TS: tsExample, Frame: *publish}},
		{name: "envelope/disconnect", kind: "envelope", valid: true,
			env:  &protocol.Envelope{V: 1, Kind: protocol.KindDisconnect, Edge: "edge-1", Conn: "a1b2c3-1", User: "alice", TS: tsExample, Frame: protocol.Frame{Type: protocol.TypeLeave, Room: "lobby"}},
			note: "one per room the closed connection had joined or was joining"},
		{name: "envelope/integrator-publish", kind: "envelope", valid: true,
			env:  &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", TS: tsExample, Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "invoice-77", Body: []byte("paid")}},
			note: "what an integrator publishes to hearth.ingress with routing key shard.19 (64 shards)"},
		{name: "envelope/integrator-publish-compact", kind: "envelope", valid: true,
			env: &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "invoice-77", Body: []byte("paid")}},
			raw: cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("invoice-77")), mpKV("body", mpBin([]byte("paid")))))),
			note: "the same, as a Python or JavaScript MessagePack library writes it (compact integers, no ts)"},
		{name: "envelope/tick", kind: "envelope", valid: true,
			env:  &protocol.Envelope{V: 1, Kind: protocol.KindTick, User: "hub-1"},
			note: "internal: the owner of a shard publishes it into the shard's own queue every edge-timeout/3 to remove members of dead edges in order; user is the hub's id, f is empty"},
		{name: "envelope/invalid-version-2", kind: "envelope",
			env: &protocol.Envelope{V: 2, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c"}},
			raw: cat(mpMap(4), mpKV("v", mpUint(2)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")))))},
		{name: "envelope/invalid-kind-9", kind: "envelope",
			env: &protocol.Envelope{V: 1, Kind: 9, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c"}},
			raw: cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(9)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")))))},
		{name: "envelope/invalid-integrator-join", kind: "envelope",
			env:  &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypeJoin, Room: "lobby"}},
			raw:  cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")), mpKV("f", cat(mpMap(2), mpKV("t", mpUint(1)), mpKV("room", mpStr("lobby"))))),
			note: "integrators may only publish"},
		{name: "envelope/invalid-missing-user", kind: "envelope",
			env: &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c"}},
			raw: cat(mpMap(3), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")))))},
		{name: "envelope/invalid-client-without-edge", kind: "envelope",
			env: &protocol.Envelope{V: 1, Kind: protocol.KindClient, Conn: "a1b2c3-1", User: "alice", Frame: *join},
			raw: cat(mpMap(5), mpKV("v", mpUint(1)), mpKV("k", mpUint(1)), mpKV("conn", mpStr("a1b2c3-1")), mpKV("user", mpStr("alice")),
				mpKV("f", cat(mpMap(3), mpKV("t", mpUint(1)), mpKV("id", mpUint(1)), mpKV("room", mpStr("lobby")))))},
		{name: "envelope/invalid-room", kind: "envelope",
			env: &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "a.b", CMID: "c"}},
			raw: cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("a.b")), mpKV("cmid", mpStr("c")))))},
		{name: "envelope/invalid-body-over-limit", kind: "envelope", maxBody: 8,
			env: &protocol.Envelope{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "c", Body: []byte("123456789")}},
			raw: cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(4), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")), mpKV("body", mpBin([]byte("123456789")))))),
			note: "validated with max_body 8"},
		{name: "envelope/invalid-trailing-byte", kind: "envelope",
			raw: cat(mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")),
				mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c")))), "00")},
		{name: "envelope/invalid-not-a-map", kind: "envelope", raw: cat("92", mpUint(1), mpUint(3)),
			note: "an array on hearth.ingress is read as a batch; this one holds no bin and is dropped"},

		// Envelope batches on hearth.ingress: an array of bin, each one
		// envelope, all for the same shard.
		{name: "batch/two-envelopes", kind: "batch", valid: true,
			batch: []*protocol.Envelope{
				{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1b2c3-1", User: "alice", TS: tsExample, Frame: *join},
				{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1b2c3-1", User: "alice", TS: tsExample, Frame: *publish},
			},
			note: "envelope/client-join then envelope/client-publish in one AMQP message; the hub processes them in this order and acknowledges the message once"},
		{name: "batch/one-envelope", kind: "batch", valid: true,
			batch: []*protocol.Envelope{{V: 1, Kind: protocol.KindIntegrator, User: "billing-svc", TS: tsExample, Frame: protocol.Frame{Type: protocol.TypePublish, Room: "lobby", CMID: "invoice-77", Body: []byte("paid")}}}},
		{name: "batch/invalid-empty", kind: "batch", raw: "90", note: "a batch holds 1 to 1024 envelopes"},
		{name: "batch/invalid-element-not-bin", kind: "batch",
			raw:  cat("91", mpMap(4), mpKV("v", mpUint(1)), mpKV("k", mpUint(3)), mpKV("user", mpStr("billing-svc")), mpKV("f", cat(mpMap(3), mpKV("t", mpUint(3)), mpKV("room", mpStr("lobby")), mpKV("cmid", mpStr("c"))))),
			note: "elements are bin holding an encoded envelope, not the envelope map itself"},
		{name: "batch/invalid-cut-short", kind: "batch", raw: cat("92", mpBin([]byte{0x80})), note: "announces two elements, holds one"},
		{name: "batch/invalid-trailing-byte", kind: "batch", raw: cat("91", mpBin([]byte{0x80}), "00")},

		// Liveness announcements on hearth.control.
		{name: "heartbeat/edge", kind: "heartbeat", valid: true,
			hb:   &protocol.Heartbeat{ID: "edge-1", Incarnation: "a1b2c3"},
			note: "routing key edge.edge-1, every 2 s; the connection ids of this incarnation start with a1b2c3-"},
		{name: "heartbeat/edge-leaving", kind: "heartbeat", valid: true,
			hb:   &protocol.Heartbeat{ID: "edge-1", Incarnation: "a1b2c3", Leaving: true},
			note: "sent once by an edge that shut down cleanly"},
		{name: "heartbeat/hub", kind: "heartbeat", valid: true,
			hb:   &protocol.Heartbeat{ID: "hub-1"},
			note: "routing key hub.hub-1, every second; hubs send no incarnation"},
		{name: "heartbeat/invalid-id", kind: "heartbeat",
			hb:   &protocol.Heartbeat{ID: "edge.1"},
			raw:  cat(mpMap(1), mpKV("id", mpStr("edge.1"))),
			note: "the id follows the identifier rules"},
	}
}
