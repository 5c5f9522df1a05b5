package protocol

import (
	"strconv"
	"strings"
)

// Room name prefixes with access rules. Every other room is public: any
// authenticated user may join it.
const (
	// PrefixDM marks a direct-message room between two users, named by
	// DMRoom; only those two may join it.
	PrefixDM = "dm:"
	// PrefixPrivate marks a private room; only users whose token lists the
	// room in its "rooms" claim may join it.
	PrefixPrivate = "priv:"
)

// DMRoom is the name of the direct-message room of users a and b:
// "dm:<len>:<first>:<second>", the two ids in byte order and len the byte
// length of the first. The length makes the name unambiguous even though
// user ids may contain ":". The result must still pass ValidateID (at most
// MaxIDLen bytes).
func DMRoom(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return PrefixDM + strconv.Itoa(len(a)) + ":" + a + ":" + b
}

// dmPair parses a DM room name into its two users.
func dmPair(room string) (a, b string, ok bool) {
	rest, ok := strings.CutPrefix(room, PrefixDM)
	if !ok {
		return "", "", false
	}
	num, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n >= len(rest) || rest[n] != ':' {
		return "", "", false
	}
	a, b = rest[:n], rest[n+1:]
	if b == "" || DMRoom(a, b) != room {
		return "", "", false
	}
	return a, b, true
}

// MayJoin reports whether user, whose token grants the private rooms in
// grants, may join room.
func MayJoin(user string, grants []string, room string) bool {
	switch {
	case strings.HasPrefix(room, PrefixDM):
		a, b, ok := dmPair(room)
		return ok && a != b && (user == a || user == b)
	case strings.HasPrefix(room, PrefixPrivate):
		for _, g := range grants {
			if g == room {
				return true
			}
		}
		return false
	}
	return true
}
