// Package auth verifies and mints the JSON Web Tokens clients present to an
// edge: HS256, the user id in "sub", an "exp" that is always required.
// A Verifier is safe for concurrent use.
package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hearth-gateway/hearth/protocol"
)

// Errors returned by Verify. Each wraps the library's reason.
var (
	ErrNoToken     = errors.New("auth: no token")
	ErrBadToken    = errors.New("auth: invalid token")
	ErrExpired     = errors.New("auth: token expired")
	ErrBadSubject  = errors.New("auth: token subject is not a valid user id")
	ErrNoSecret    = errors.New("auth: no JWT secret configured")
	ErrShortSecret = errors.New("auth: JWT secret shorter than 16 bytes")
)

// Claims are the token claims Hearth reads.
type Claims struct {
	jwt.RegisteredClaims
	// Rooms lists the private rooms ("priv:…") the holder may join.
	Rooms []string `json:"rooms,omitempty"`
}

// Identity is what a verified token says about its holder.
type Identity struct {
	// User is the "sub" claim, a valid protocol identifier.
	User string
	// Expires is the "exp" claim.
	Expires time.Time
	// Rooms is the "rooms" claim: the private rooms the user may join.
	Rooms []string
}

// Verifier checks HS256 tokens against one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for secret, which must be at least 16 bytes.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) == 0 {
		return nil, ErrNoSecret
	}
	if len(secret) < 16 {
		return nil, ErrShortSecret
	}
	return &Verifier{
		secret: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
	}, nil
}

// Verify parses and checks a token.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := protocol.ValidateID(c.Subject); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadSubject, err)
	}
	return Identity{User: c.Subject, Expires: c.ExpiresAt.Time, Rooms: c.Rooms}, nil
}

// Mint returns an HS256 token for user that expires after ttl.
func Mint(secret []byte, user string, ttl time.Duration) (string, error) {
	return MintRooms(secret, user, ttl, nil)
}

// MintRooms is Mint with a "rooms" claim granting private rooms.
func MintRooms(secret []byte, user string, ttl time.Duration, rooms []string) (string, error) {
	if err := protocol.ValidateID(user); err != nil {
		return "", fmt.Errorf("auth: user %q: %w", user, err)
	}
	if len(secret) < 16 {
		return "", ErrShortSecret
	}
	now := time.Now()
	c := Claims{Rooms: rooms, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// LoadSecret returns the secret from file when file is set, else value.
// Surrounding whitespace in the file is ignored.
func LoadSecret(value, file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("auth: reading secret file: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if value == "" {
		return nil, ErrNoSecret
	}
	return []byte(value), nil
}
