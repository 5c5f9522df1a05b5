package protocol

import (
	"encoding/binary"
	"fmt"
)

// Limits of an envelope batch: one ingress message carrying several
// envelopes for the same shard (PROTOCOL.md §9.3).
const (
	// MaxBatchEnvelopes is the most envelopes one batch may hold.
	MaxBatchEnvelopes = 1024
	// MaxBatchBytes bounds a batch's body. A publisher sends an envelope
	// that would not fit alone, as a plain envelope.
	MaxBatchBytes = 1 << 20
)

// IsEnvelopeBatch reports whether an ingress body is a batch (a
// MessagePack array) rather than one envelope (a map).
func IsEnvelopeBatch(b []byte) bool {
	return len(b) > 0 && (b[0]&0xf0 == 0x90 || b[0] == 0xdc || b[0] == 0xdd)
}

// AppendEnvelopeBatch appends to dst the batch body holding the encoded
// envelopes envs, in order: a MessagePack array of bin. It does not check
// the limits; SplitEnvelopeBatch does.
func AppendEnvelopeBatch(dst []byte, envs [][]byte) []byte {
	n := len(envs)
	switch {
	case n < 16:
		dst = append(dst, 0x90|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xdc, byte(n>>8), byte(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
	}
	for _, e := range envs {
		l := len(e)
		switch {
		case l <= 0xff:
			dst = append(dst, 0xc4, byte(l))
		case l <= 0xffff:
			dst = append(dst, 0xc5, byte(l>>8), byte(l))
		default:
			dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(l))
		}
		dst = append(dst, e...)
	}
	return dst
}

// SplitEnvelopeBatch returns the encoded envelopes of a batch body, in
// order, sharing b's memory. Each is then decoded with DecodeEnvelope. It
// fails on anything but an array of 1..MaxBatchEnvelopes bin elements with
// nothing after them, in at most MaxBatchBytes.
func SplitEnvelopeBatch(b []byte) ([][]byte, error) {
	if len(b) > MaxBatchBytes {
		return nil, fmt.Errorf("%w: envelope batch of %d bytes exceeds %d", ErrMalformed, len(b), MaxBatchBytes)
	}
	if !IsEnvelopeBatch(b) {
		return nil, fmt.Errorf("%w: envelope batch is not an array", ErrMalformed)
	}
	var n, i int
	switch b[0] {
	case 0xdc:
		if len(b) < 3 {
			return nil, fmt.Errorf("%w: envelope batch header cut short", ErrMalformed)
		}
		n, i = int(binary.BigEndian.Uint16(b[1:])), 3
	case 0xdd:
		if len(b) < 5 {
			return nil, fmt.Errorf("%w: envelope batch header cut short", ErrMalformed)
		}
		n, i = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		n, i = int(b[0]&0x0f), 1
	}
	if n == 0 || n > MaxBatchEnvelopes {
		return nil, fmt.Errorf("%w: envelope batch of %d envelopes, want 1..%d", ErrMalformed, n, MaxBatchEnvelopes)
	}
	out := make([][]byte, 0, n)
	for k := 0; k < n; k++ {
		if i >= len(b) {
			return nil, fmt.Errorf("%w: envelope batch cut short at element %d", ErrMalformed, k)
		}
		var l, h int
		switch b[i] {
		case 0xc4:
			if i+2 <= len(b) {
				l, h = int(b[i+1]), 2
			}
		case 0xc5:
			if i+3 <= len(b) {
				l, h = int(binary.BigEndian.Uint16(b[i+1:])), 3
			}
		case 0xc6:
			if i+5 <= len(b) {
				l, h = int(binary.BigEndian.Uint32(b[i+1:])), 5
			}
		default:
			return nil, fmt.Errorf("%w: envelope batch element %d is not bin", ErrMalformed, k)
		}
		if h == 0 || l > len(b)-i-h {
			return nil, fmt.Errorf("%w: envelope batch cut short at element %d", ErrMalformed, k)
		}
		i += h
		out = append(out, b[i:i+l:i+l])
		i += l
	}
	if i != len(b) {
		return nil, fmt.Errorf("%w: trailing bytes after the envelope batch", ErrMalformed)
	}
	return out, nil
}
