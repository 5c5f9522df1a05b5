package protocol_test

import (
	"bytes"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// The frames the hot paths handle: the edge decodes a client publish and
// encodes its envelope; the hub decodes the envelope and encodes one
// message frame per broadcast.
var (
	benchBody    = bytes.Repeat([]byte("x"), 256)
	benchPublish = protocol.Frame{Type: protocol.TypePublish, ID: 12345, Room: "general", CMID: "c-1a2b3c", Body: benchBody}
	benchMessage = protocol.Frame{Type: protocol.TypeMessage, Room: "general", CMID: "c-1a2b3c", Seq: 987654, From: "alice", TS: 1700000000000, Body: benchBody}
	benchEnv     = protocol.Envelope{V: 1, Kind: protocol.KindClient, Edge: "edge-1", Conn: "a1b2c3-1z", User: "alice", TS: 1700000000000, Frame: benchPublish}
)

func BenchmarkEncodeFrame(b *testing.B) {
	b.ReportAllocs()
	enc, _ := protocol.EncodeFrame(&benchMessage)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := protocol.EncodeFrame(&benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 1024)
	enc, _ := protocol.EncodeFrame(&benchMessage)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		var err error
		if buf, err = protocol.AppendFrame(buf[:0], &benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	b.ReportAllocs()
	in, _ := protocol.EncodeFrame(&benchPublish)
	b.SetBytes(int64(len(in)))
	l := protocol.Limits{MaxBody: 65536}
	for b.Loop() {
		f, err := protocol.DecodeFrame(in)
		if err != nil {
			b.Fatal(err)
		}
		if fe := f.ValidateClient(l); fe != nil {
			b.Fatal(fe)
		}
	}
}

func BenchmarkEncodeEnvelope(b *testing.B) {
	b.ReportAllocs()
	enc, _ := protocol.EncodeEnvelope(&benchEnv)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := protocol.EncodeEnvelope(&benchEnv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEnvelope(b *testing.B) {
	b.ReportAllocs()
	in, _ := protocol.EncodeEnvelope(&benchEnv)
	b.SetBytes(int64(len(in)))
	l := protocol.Limits{MaxBody: 65536}
	for b.Loop() {
		if _, err := protocol.DecodeEnvelope(in, l); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkShardOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = protocol.ShardOf("general-chat:eu-west", protocol.DefaultShards)
	}
}
