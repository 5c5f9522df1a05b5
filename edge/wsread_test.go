package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

// clientFrame builds a masked client frame. rsv sets extra bits of the
// first byte; unmasked leaves the mask bit (and key) out.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	n := len(payload)
	switch {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// event is one callback of a frameReader, recorded for comparison.
type event struct {
	op      byte
	payload string
}

// feedAll feeds the chunks in order and records the events and the error.
func feedAll(max int, chunks ...[]byte) ([]event, error) {
	r := frameReader{max: max}
	var evs []event
	h := func(op byte, p []byte) bool {
		evs = append(evs, event{op, string(p)})
		return true
	}
	for _, c := range chunks {
		if _, err := r.feed(c, h); err != nil {
			return evs, err
		}
	}
	return evs, nil
}

// feedReads reads in from a stream the way the edge does, through space
// and a bufSize buffer, and records the events, the number of reads and
// the error.
func feedReads(max int, in []byte, bufSize int) ([]event, int, error) {
	r := frameReader{max: max}
	var evs []event
	h := func(op byte, p []byte) bool {
		evs = append(evs, event{op, string(p)})
		return true
	}
	src := bytes.NewReader(in)
	buf := make([]byte, bufSize)
	reads := 0
	for {
		dst, direct := r.space(buf)
		n, _ := src.Read(dst)
		if n == 0 {
			return evs, reads, nil
		}
		reads++
		var err error
		if direct {
			_, err = r.feedDirect(n, h)
		} else {
			_, err = r.feed(dst[:n], h)
		}
		if err != nil {
			return evs, reads, err
		}
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestFrameReader(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 70000)
	mid := bytes.Repeat([]byte("y"), 300)
	closeBody := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	tests := []struct {
		name string
		max  int
		in   []byte
		want []event
		err  *wsError
	}{
		{name: "binary", max: 100, in: clientFrame(true, opBinary, []byte("hello"), testKey),
			want: []event{{opBinary, "hello"}}},
		{name: "empty binary", max: 100, in: clientFrame(true, opBinary, nil, testKey),
			want: []event{{opBinary, ""}}},
		{name: "16-bit length", max: 1000, in: clientFrame(true, opBinary, mid, testKey),
			want: []event{{opBinary, string(mid)}}},
		{name: "64-bit length", max: 100000, in: clientFrame(true, opBinary, big, testKey),
			want: []event{{opBinary, string(big)}}},
		{name: "two frames", max: 100, in: cat(clientFrame(true, opBinary, []byte("a"), testKey), clientFrame(true, opPing, []byte("p"), testKey)),
			want: []event{{opBinary, "a"}, {opPing, "p"}}},
		{name: "fragments with a ping between", max: 100, in: cat(
			clientFrame(false, opBinary, []byte("ab"), testKey),
			clientFrame(true, opPing, nil, testKey),
			clientFrame(false, opContinuation, []byte("cd"), testKey),
			clientFrame(true, opContinuation, []byte("e"), testKey)),
			want: []event{{opPing, ""}, {opBinary, "abcde"}}},
		{name: "text", max: 100, in: clientFrame(true, opText, []byte("héllo"), testKey),
			want: []event{{opText, "héllo"}}},
		{name: "fragmented text split inside a rune", max: 100, in: cat(
			clientFrame(false, opText, []byte("h\xc3"), testKey),
			clientFrame(true, opContinuation, []byte("\xa9"), testKey)),
			want: []event{{opText, "h\xc3\xa9"}}},
		{name: "close with code and reason", max: 100, in: clientFrame(true, opClose, closeBody(1000, "bye"), testKey),
			want: []event{{opClose, string(closeBody(1000, "bye"))}}},
		{name: "close without body", max: 100, in: clientFrame(true, opClose, nil, testKey),
			want: []event{{opClose, ""}}},
		{name: "pong", max: 100, in: clientFrame(true, opPong, []byte("x"), testKey),
			want: []event{{opPong, "x"}}},

		{name: "unmasked", max: 100, in: []byte{0x82, 0x01, 'a'}, err: errWSUnmasked},
		{name: "reserved bit", max: 100, in: append([]byte{0xC2}, clientFrame(true, opBinary, []byte("a"), testKey)[1:]...), err: errWSReserved},
		{name: "reserved opcode", max: 100, in: clientFrame(true, 0x3, []byte("a"), testKey), err: errWSOpcode},
		{name: "fragmented ping", max: 100, in: clientFrame(false, opPing, nil, testKey), err: errWSControl},
		{name: "long ping", max: 1000, in: clientFrame(true, opPing, mid, testKey), err: errWSControl},
		{name: "lone continuation", max: 100, in: clientFrame(true, opContinuation, []byte("a"), testKey), err: errWSContinuation},
		{name: "message inside a message", max: 100, in: cat(
			clientFrame(false, opBinary, []byte("a"), testKey),
			clientFrame(true, opBinary, []byte("b"), testKey)), err: errWSInterleaved},
		{name: "too big", max: 100, in: clientFrame(true, opBinary, mid, testKey), err: errWSTooBig},
		{name: "too big once joined", max: 250, in: cat(
			clientFrame(false, opBinary, mid[:200], testKey),
			clientFrame(true, opContinuation, mid[:100], testKey)), err: errWSTooBig},
		{name: "too big header only", max: 100, in: clientFrame(true, opBinary, big, testKey)[:10], err: errWSTooBig},
		{name: "invalid text", max: 100, in: clientFrame(true, opText, []byte("\xff"), testKey), err: errWSUTF8},
		{name: "invalid fragmented text", max: 100, in: cat(
			clientFrame(false, opText, []byte("a"), testKey),
			clientFrame(true, opContinuation, []byte("\xc3"), testKey)), err: errWSUTF8},
		{name: "close body of one byte", max: 100, in: clientFrame(true, opClose, []byte{3}, testKey), err: errWSCloseCode},
		{name: "close code 1005", max: 100, in: clientFrame(true, opClose, closeBody(1005, ""), testKey), err: errWSCloseCode},
		{name: "close code 999", max: 100, in: clientFrame(true, opClose, closeBody(999, ""), testKey), err: errWSCloseCode},
		{name: "close reason not UTF-8", max: 100, in: clientFrame(true, opClose, closeBody(1000, "\xff"), testKey), err: errWSUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Whole, then byte by byte: the split must not matter.
			for _, split := range []bool{false, true} {
				chunks := [][]byte{append([]byte(nil), tt.in...)}
				if split {
					chunks = chunks[:0]
					for i := range tt.in {
						chunks = append(chunks, []byte{tt.in[i]})
					}
				}
				got, err := feedAll(tt.max, chunks...)
				if tt.err != nil {
					var we *wsError
					if !errors.As(err, &we) || we != tt.err {
						t.Fatalf("split=%v: error %v, want %v", split, err, tt.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("split=%v: %v", split, err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("split=%v: events %q, want %q", split, got, tt.want)
				}
			}
		})
	}
}

// TestFrameReaderLargeReads: a message larger than the read buffer is read
// straight into its own buffer, in one read for its remainder.
func TestFrameReaderLargeReads(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("z"), 40000)
	in := cat(clientFrame(true, opBinary, []byte("small"), testKey), clientFrame(true, opBinary, body, testKey),
		clientFrame(true, opPing, []byte("p"), testKey))
	evs, reads, err := feedReads(65536, in, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := []event{{opBinary, "small"}, {opBinary, string(body)}, {opPing, "p"}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events differ: got %d events", len(evs))
	}
	if reads > 3 {
		t.Fatalf("%d reads of a 512-byte buffer for a 40,000-byte message, want at most 3", reads)
	}
}

func TestFrameReaderCodes(t *testing.T) {
	t.Parallel()
	if errWSTooBig.code != protocol.CloseTooBig || errWSUnmasked.code != protocol.CloseProtocolError || errWSUTF8.code != protocol.CloseInvalidData {
		t.Fatal("frame reader errors carry the wrong close codes")
	}
}

// TestFrameReaderStop: a handler that returns false stops the feed at once,
// and an idle reader holds no buffer.
func TestFrameReaderStop(t *testing.T) {
	t.Parallel()
	r := frameReader{max: 100}
	in := cat(clientFrame(true, opBinary, []byte("a"), testKey), clientFrame(true, opBinary, []byte("b"), testKey))
	var n int
	ok, err := r.feed(in, func(byte, []byte) bool { n++; return false })
	if ok || err != nil || n != 1 {
		t.Fatalf("feed = %v, %v after %d calls; want false, nil after 1", ok, err, n)
	}

	r = frameReader{max: 100}
	frame := clientFrame(true, opBinary, []byte("hello"), testKey)
	if _, err := r.feed(frame[:3], func(byte, []byte) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if len(r.partial) != 3 {
		t.Fatalf("partial holds %d bytes, want 3", len(r.partial))
	}
	if _, err := r.feed(frame[3:], func(byte, []byte) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if r.partial != nil || r.msg != nil {
		t.Fatal("a reader between frames still holds buffers")
	}
}

// FuzzFrameReader feeds arbitrary bytes, whole and split at a point the
// fuzzer picks: the reader never panics, never buffers more than one
// frame's worth, and reports the same events either way.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrame(true, opBinary, []byte("hello"), testKey), uint16(3))
	f.Add(cat(clientFrame(false, opText, []byte("h\xc3"), testKey), clientFrame(true, opPing, nil, testKey),
		clientFrame(true, opContinuation, []byte("\xa9"), testKey)), uint16(7))
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8, 'o', 'k'}, testKey), uint16(1))
	f.Add(clientFrame(true, opBinary, bytes.Repeat([]byte{1}, 300), testKey), uint16(4))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, at uint16) {
		const max = 512
		whole, errWhole := feedAll(max, append([]byte(nil), in...))
		cut := int(at) % (len(in) + 1)
		split, errSplit := feedAll(max, append([]byte(nil), in[:cut]...), append([]byte(nil), in[cut:]...))
		if (errWhole == nil) != (errSplit == nil) || (errWhole != nil && errWhole != errSplit) {
			t.Fatalf("whole: %v, split at %d: %v", errWhole, cut, errSplit)
		}
		if fmt.Sprint(whole) != fmt.Sprint(split) {
			t.Fatalf("whole: %q, split at %d: %q", whole, cut, split)
		}
		read, _, errRead := feedReads(max, append([]byte(nil), in...), 1+int(at)%64)
		if errRead != errWhole || fmt.Sprint(whole) != fmt.Sprint(read) {
			t.Fatalf("whole: %q %v, read through space: %q %v", whole, errWhole, read, errRead)
		}
		for _, e := range whole {
			if len(e.payload) > max {
				t.Fatalf("a %d-byte message passed the %d-byte limit", len(e.payload), max)
			}
		}
		r := frameReader{max: max}
		_, _ = r.feed(append([]byte(nil), in...), func(byte, []byte) bool { return true })
		if len(r.partial) > max+14 || len(r.msg) > max {
			t.Fatalf("reader holds %d partial and %d message bytes", len(r.partial), len(r.msg))
		}
	})
}
