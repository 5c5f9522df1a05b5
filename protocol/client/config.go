package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
)

// Defaults of Config's zero values.
const (
	DefaultReconnectMin   = 100 * time.Millisecond
	DefaultReconnectMax   = 10 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultRecvBuffer     = 1024
	DefaultHoldLimit      = 1000
)

// eventBuffer is the capacity of the Events channel.
const eventBuffer = 64

// Config configures a Client. Only URL is required.
type Config struct {
	// URL is the edge's WebSocket endpoint, ws:// or wss://, for example
	// "wss://localhost:8443/ws". Required.
	URL string

	// Token is the JWT sent as "Authorization: Bearer <token>" on every
	// connection attempt. Empty means no Authorization header.
	Token string

	// TokenFunc, when set, is called before every connection attempt for
	// the token to send, so a long-lived client can refresh an expiring
	// token. A reconnection refused with 401 is tried once more with a new
	// token from TokenFunc and ends the client if the token is unchanged.
	// Nil means use Token. Setting both Token and TokenFunc is an error.
	TokenFunc func(ctx context.Context) (string, error)

	// CAFile is a PEM file of CA certificates that wss:// trusts instead of
	// the system roots, for example the TLS tier's development ca.pem.
	// Empty means the system roots (or TLSConfig's).
	CAFile string

	// TLSConfig is the TLS configuration for wss://. It is cloned, never
	// modified. Nil means TLS 1.2 or later with the system roots. Setting
	// both CAFile and TLSConfig is an error: put the pool in RootCAs.
	TLSConfig *tls.Config

	// Origin is sent as the Origin header. Empty means no Origin header.
	Origin string

	// Logger receives the client's logs. The zero value discards them.
	Logger zerolog.Logger

	// ReconnectMin and ReconnectMax bound the full-jitter exponential
	// backoff between connection attempts: attempt n waits a random time
	// in [0, min(ReconnectMax, ReconnectMin·2^(n-1))]. Zero means 100ms and
	// 10s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration

	// RequestTimeout bounds each request's wait for its reply, each write,
	// and each connection attempt (dial, TLS, upgrade and welcome). A
	// request's context may end it sooner. Zero means 10s.
	RequestTimeout time.Duration

	// RecvBuffer is the capacity of the Messages channel. A room message
	// that finds it full is set aside and fetched again from the room's
	// history once the consumer has caught up (Stats.Refetched); other
	// frames are dropped and counted (Stats.Dropped). Zero means 1024.
	RecvBuffer int

	// HoldLimit bounds, per room, the messages held back while the client
	// fetches the ones missing before them (a gap in the room's sequence).
	// Beyond it the newest are discarded and fetched from history too, so
	// it bounds memory, not what is delivered. Zero means 1000.
	HoldLimit int

	// OnDeliver, when set, is called for every frame the client puts on
	// Messages, in the order they are put there, right after each one is
	// (the application may already be reading it). recovered is true for a
	// room message that did not arrive live but through a joined reply's
	// History (a fresh join's recent messages, a resume) or a history
	// request of the client's own that filled a gap; false for live
	// broadcasts and for every other frame. It runs on the connection's
	// reader: it must return quickly and must not wait for the client (no
	// requests, no Close); Stats, Rooms and the like are fine.
	// Nil means no hook.
	OnDeliver func(f protocol.Frame, recovered bool)

	// RetryPublish makes Publish and PublishCMID survive reconnections: a
	// publish that fails with ErrDisconnected waits for the next
	// connection (and the re-join of its rooms) and is sent again with the
	// same client message id; one that gets no reply within
	// RequestTimeout is sent again at once; one refused with a retryable
	// load code (429, 500, 503) is sent again after a backoff. The hub
	// de-duplicates client message ids, so the caller gets exactly one
	// ack, with the seq of the message's first sequencing. Only the
	// caller's ctx (or Close) ends the retries: give it a deadline. False
	// (the zero value) keeps the fail-fast contract: ErrDisconnected and
	// ErrTimeout are returned and retrying is the caller's choice.
	RetryPublish bool
}

// normalize validates c, fills in defaults and returns the TLS
// configuration to use for wss:// (nil for ws://) and the host:port to dial.
func (c *Config) normalize() (*tls.Config, string, error) {
	if c.URL == "" {
		return nil, "", errors.New("client: Config.URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, "", fmt.Errorf("client: Config.URL: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, "", fmt.Errorf("client: Config.URL: scheme %q, want ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return nil, "", errors.New("client: Config.URL has no host")
	}
	if c.Token != "" && c.TokenFunc != nil {
		return nil, "", errors.New("client: set Config.Token or Config.TokenFunc, not both")
	}
	if c.CAFile != "" && c.TLSConfig != nil {
		return nil, "", errors.New("client: set Config.CAFile or Config.TLSConfig, not both")
	}
	if c.ReconnectMin < 0 || c.ReconnectMax < 0 || c.RequestTimeout < 0 || c.RecvBuffer < 0 || c.HoldLimit < 0 {
		return nil, "", errors.New("client: negative durations and sizes are not allowed")
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RecvBuffer == 0 {
		c.RecvBuffer = DefaultRecvBuffer
	}
	if c.HoldLimit == 0 {
		c.HoldLimit = DefaultHoldLimit
	}

	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "wss" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "ws" {
		return nil, addr, nil
	}
	var tc *tls.Config
	if c.TLSConfig != nil {
		tc = c.TLSConfig.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, "", fmt.Errorf("client: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("client: CA file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	return tc, addr, nil
}

// redactURL returns raw without its query and user info, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.RawQuery, u.User, u.Fragment = "", nil, ""
	return u.String()
}
