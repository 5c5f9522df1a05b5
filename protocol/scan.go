package protocol

import "fmt"

// maxDepth bounds the nesting of maps and arrays in a frame or envelope.
// Frames need 2 (envelope → frame → members); the rest is room for
// forward-compatible additions.
const maxDepth = 16

// checkWellFormed walks b without allocating or recursing and checks that it
// holds exactly one MessagePack object whose every length fits in b and
// whose nesting is at most maxDepth. Run before decoding, it keeps length
// headers (up to 4 GiB) from being trusted and bounds the decoder's recursion.
func checkWellFormed(b []byte) error {
	// pending[d] is how many objects are still expected at depth d.
	var pending [maxDepth + 1]uint64
	depth := 0
	pending[0] = 1
	i := 0
	for {
		for depth >= 0 && pending[depth] == 0 {
			depth--
		}
		if depth < 0 {
			break
		}
		pending[depth]--
		if i >= len(b) {
			return fmt.Errorf("%w: unexpected end", ErrMalformed)
		}
		c := b[i]
		i++
		var skip, children uint64
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		case c&0xe0 == 0xa0: // fixstr
			skip = uint64(c & 0x1f)
		case c&0xf0 == 0x90: // fixarray
			children = uint64(c & 0x0f)
		case c&0xf0 == 0x80: // fixmap
			children = 2 * uint64(c&0x0f)
		default:
			n, size, kind, err := header(b[i:], c)
			if err != nil {
				return err
			}
			i += size
			switch kind {
			case 'b':
				skip = n
			case 'a':
				children = n
			case 'm':
				children = 2 * n
			}
		}
		if skip > uint64(len(b)-i) {
			return fmt.Errorf("%w: length %d beyond the input", ErrMalformed, skip)
		}
		i += int(skip)
		if children > 0 {
			// Every child takes at least one byte.
			if children > uint64(len(b)-i) {
				return fmt.Errorf("%w: %d elements beyond the input", ErrMalformed, children)
			}
			if depth == maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
			}
			depth++
			pending[depth] = children
		}
	}
	if i != len(b) {
		return ErrTrailing
	}
	return nil
}

// header decodes the header after code c: the payload length or element
// count n, the header's size, and its kind: 'b' bytes to skip, 'a' array, 'm' map.
func header(b []byte, c byte) (n uint64, size int, kind byte, err error) {
	be := func(k int) (uint64, error) {
		if len(b) < k {
			return 0, fmt.Errorf("%w: unexpected end", ErrMalformed)
		}
		var v uint64
		for _, x := range b[:k] {
			v = v<<8 | uint64(x)
		}
		return v, nil
	}
	var k int
	switch c {
	case 0xcc, 0xd0:
		return 1, 0, 'b', nil
	case 0xcd, 0xd1:
		return 2, 0, 'b', nil
	case 0xca, 0xce, 0xd2:
		return 4, 0, 'b', nil
	case 0xcb, 0xcf, 0xd3:
		return 8, 0, 'b', nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext: type byte + 1..16
		return 1 + 1<<(c-0xd4), 0, 'b', nil
	case 0xc4, 0xd9:
		k, kind = 1, 'b'
	case 0xc5, 0xda:
		k, kind = 2, 'b'
	case 0xc6, 0xdb:
		k, kind = 4, 'b'
	case 0xc7, 0xc8, 0xc9: // ext: length, then type byte
		k = 1 << (c - 0xc7)
		n, err = be(k)
		return n + 1, k, 'b', err
	case 0xdc:
		k, kind = 2, 'a'
	case 0xdd:
		k, kind = 4, 'a'
	case 0xde:
		k, kind = 2, 'm'
	case 0xdf:
		k, kind = 4, 'm'
	default: // 0xc1, never used
		return 0, 0, 0, fmt.Errorf("%w: code %#x", ErrMalformed, c)
	}
	n, err = be(k)
	return n, k, kind, err
}
