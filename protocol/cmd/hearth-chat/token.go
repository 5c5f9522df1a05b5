package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hearth-gateway/hearth/protocol"
)

// Environment variables that locate the HS256 secret when no flag does.
const (
	envSecret     = "HEARTH_JWT_SECRET"
	envSecretFile = "HEARTH_JWT_SECRET_FILE"
)

// secretFlags locate the HS256 secret shared with the edges.
type secretFlags struct {
	secret     string
	secretFile string
}

func (s *secretFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.secret, "secret", "", "HS256 secret (visible in ps; prefer -secret-file) (env "+envSecret+")")
	fs.StringVar(&s.secretFile, "secret-file", "", "file holding the HS256 secret; surrounding whitespace is ignored (env "+envSecretFile+")")
}

// load returns the secret: -secret, else -secret-file, else the environment.
func (s *secretFlags) load(env func(string) (string, bool)) ([]byte, error) {
	if s.secret != "" && s.secretFile != "" {
		return nil, errors.New("set -secret or -secret-file, not both")
	}
	secret, file := s.secret, s.secretFile
	if secret == "" && file == "" {
		secret, _ = env(envSecret)
		if secret == "" {
			file, _ = env(envSecretFile)
		}
	}
	if secret == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading secret: %w", err)
		}
		secret = strings.TrimSpace(string(b)) // as shared/auth.LoadSecret
	}
	if secret == "" {
		return nil, fmt.Errorf("no secret: set -secret-file, -secret, %s or %s", envSecretFile, envSecret)
	}
	return []byte(secret), nil
}

// minSecret is the shortest secret an edge accepts (shared/auth).
const minSecret = 16

// mintToken signs an HS256 token for user with the claims edges check:
// sub, iat and exp. It matches shared/auth.Mint, which protocol/ may not
// import.
func mintToken(secret []byte, user string, ttl time.Duration, now time.Time) (string, error) {
	if err := protocol.ValidateID(user); err != nil {
		return "", fmt.Errorf("user %q: %w", user, err)
	}
	if len(secret) < minSecret {
		return "", fmt.Errorf("secret of %d bytes: edges require at least %d", len(secret), minSecret)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ttl %v: must be positive", ttl)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

func runToken(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("hearth-chat token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf secretFlags
	sf.register(fs)
	user := fs.String("user", "", "user id the token names (sub claim); required")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: hearth-chat token -secret-file F -user alice [-ttl 24h]\n\nPrints a signed HS256 token. Flags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *user == "" {
		fmt.Fprintln(stderr, "-user is required")
		fs.Usage()
		return errUsage
	}
	secret, err := sf.load(env)
	if err != nil {
		return err
	}
	tok, err := mintToken(secret, *user, *ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
