package protocol

import (
	"errors"
	"fmt"
)

// MaxIDLen bounds room names, user ids, edge ids, connection ids and client
// message ids, in bytes.
const MaxIDLen = 128

// Identifier errors.
var (
	ErrEmptyID   = errors.New("protocol: empty identifier")
	ErrLongID    = errors.New("protocol: identifier longer than 128 bytes")
	ErrInvalidID = errors.New("protocol: identifier has a character outside [A-Za-z0-9_:@+=-]")
)

// ValidateID checks an identifier (room, user, edge or connection id)
// against the allowlist: 1 to MaxIDLen bytes of ASCII letters, digits and
// "_-:@+=". Everything else, notably ".", "*", "#", spaces and NUL, is
// refused, so an identifier can never change the meaning of a routing key.
func ValidateID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if len(id) > MaxIDLen {
		return ErrLongID
	}
	for i := 0; i < len(id); i++ {
		if !idChar[id[i]] {
			return fmt.Errorf("%w: %q at byte %d", ErrInvalidID, id[i], i)
		}
	}
	return nil
}

var idChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-:@+=" {
		t[c] = true
	}
	return t
}()
