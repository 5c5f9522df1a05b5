package tlstier

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// Certificate modes accepted in Config.CertMode.
const (
	// CertModeSelfSigned issues certificates for Config.Hostnames from a
	// local CA kept in Config.CADir. It never needs the internet.
	CertModeSelfSigned = "self-signed"
	// CertModeFiles serves the static certificate in Config.CertFile and
	// Config.KeyFile.
	CertModeFiles = "files"
	// CertModeACME obtains and renews certificates from an ACME CA (Let's
	// Encrypt by default), eagerly for Config.Hostnames or on demand.
	CertModeACME = "acme"
)

// ErrInvalidConfig is wrapped by every validation error New returns.
var ErrInvalidConfig = errors.New("tlstier: invalid config")

// Config configures a Proxy. Flags and environment variables map onto it
// through shared/conf; the `default` tags are what the hearth-tls binary
// uses, and New applies the same defaults to zero values, so a Config built
// in Go behaves like the binary with no flags.
type Config struct {
	// Listen is the TLS address WebSocket clients connect to.
	// Zero value means ":8443".
	Listen string `flag:"listen" env:"HEARTH_TLS_LISTEN" default:":8443" usage:"TLS address WebSocket clients connect to"`

	// Edges are the base URLs of the edge processes (scheme, host and port,
	// no path), e.g. "http://127.0.0.1:8081". Required.
	Edges []string `flag:"edges" env:"HEARTH_TLS_EDGES" usage:"comma-separated edge base URLs, e.g. http://127.0.0.1:8081 (required)"`

	// CertMode is where certificates come from: "self-signed", "files" or
	// "acme". Zero value means "self-signed".
	CertMode string `flag:"cert-mode" env:"HEARTH_TLS_CERT_MODE" default:"self-signed" usage:"certificate source: self-signed, files or acme"`

	// CertFile is the PEM certificate chain served in "files" mode.
	// Zero value: none (required in files mode).
	CertFile string `flag:"cert-file" env:"HEARTH_TLS_CERT_FILE" usage:"PEM certificate chain (cert-mode=files)"`
	// KeyFile is the PEM private key of CertFile.
	// Zero value: none (required in files mode).
	KeyFile string `flag:"key-file" env:"HEARTH_TLS_KEY_FILE" usage:"PEM private key (cert-mode=files)"`

	// CADir holds the local CA in "self-signed" mode: ca.pem (the
	// certificate clients must trust), ca-key.pem, and certmagic's storage
	// for the leaf certificates it issues. Created on first start, reused
	// afterwards. Zero value means "./.hearth/tls".
	CADir string `flag:"ca-dir" env:"HEARTH_TLS_CA_DIR" default:"./.hearth/tls" usage:"local CA directory; clients trust <dir>/ca.pem (cert-mode=self-signed)"`

	// Hostnames are the names (DNS names or IP addresses) certificates are
	// issued for in "self-signed" and "acme" modes. The first one is served
	// to clients that send no SNI. In acme mode they must be public names;
	// with OnDemand they are ignored (every name is decided by OnDemandAsk).
	// Zero value means "localhost,127.0.0.1".
	Hostnames []string `flag:"hostnames" env:"HEARTH_TLS_HOSTNAMES" default:"localhost,127.0.0.1" usage:"names to issue certificates for (self-signed and acme modes)"`

	// ACMEEmail is the account e-mail given to the ACME CA (recommended:
	// the CA uses it for expiry and incident notices). Zero value: no email.
	ACMEEmail string `flag:"acme-email" env:"HEARTH_TLS_ACME_EMAIL" usage:"ACME account e-mail (cert-mode=acme)"`
	// ACMECA is the ACME directory URL. Choosing cert-mode=acme means
	// agreeing to this CA's subscriber agreement.
	// Zero value means Let's Encrypt production.
	ACMECA string `flag:"acme-ca" env:"HEARTH_TLS_ACME_CA" default:"https://acme-v02.api.letsencrypt.org/directory" usage:"ACME directory URL (cert-mode=acme)"`
	// StorageDir is certmagic's storage in "acme" and "files" modes: ACME
	// accounts, certificates, locks and OCSP staples. Replicas of the tier
	// should share it so they coordinate issuance.
	// Zero value means "./.hearth/certmagic".
	StorageDir string `flag:"storage-dir" env:"HEARTH_TLS_STORAGE_DIR" default:"./.hearth/certmagic" usage:"certmagic storage directory (cert-mode=acme and files)"`
	// OnDemand obtains ACME certificates during the first TLS handshake for
	// a name, if OnDemandAsk allows it. Zero value: off.
	OnDemand bool `flag:"on-demand" env:"HEARTH_TLS_ON_DEMAND" default:"false" usage:"obtain ACME certificates on demand at handshake time (cert-mode=acme)"`
	// OnDemandAsk is the endpoint asked before an on-demand certificate is
	// obtained: GET <ask>?domain=<name>; a 2xx answer allows it, anything
	// else (or no answer) denies it. Required with OnDemand.
	OnDemandAsk string `flag:"on-demand-ask" env:"HEARTH_TLS_ON_DEMAND_ASK" usage:"URL asked GET ?domain=<name> before an on-demand certificate; 2xx allows"`

	// HealthInterval is how often each edge's /readyz is checked.
	// Zero value means 2s.
	HealthInterval time.Duration `flag:"health-interval" env:"HEARTH_TLS_HEALTH_INTERVAL" default:"2s" usage:"interval between edge readiness checks"`
	// HealthTimeout bounds one readiness check. Zero value means 1s.
	HealthTimeout time.Duration `flag:"health-timeout" env:"HEARTH_TLS_HEALTH_TIMEOUT" default:"1s" usage:"timeout of one edge readiness check"`
	// UnhealthyAfter is how many consecutive failed checks (anything but
	// 200, including the 503 of a draining edge) take an edge out of
	// rotation. Zero value means 1: a 503 from /readyz is a deliberate
	// signal (drain, broker down), so it is obeyed at once; existing
	// connections are never cut by a failed check, so acting fast costs
	// nothing but a little less balance for one interval.
	UnhealthyAfter int `flag:"unhealthy-after" env:"HEARTH_TLS_UNHEALTHY_AFTER" default:"1" usage:"consecutive failed checks before an edge gets no new connections"`
	// HealthyAfter is how many consecutive successful checks bring an edge
	// back into rotation. Zero value means 2, so that an edge that is still
	// restarting does not attract a burst of reconnects (it holds zero
	// connections, so least-connections would send it every new one).
	HealthyAfter int `flag:"healthy-after" env:"HEARTH_TLS_HEALTHY_AFTER" default:"2" usage:"consecutive successful checks before an edge gets new connections again"`

	// DialTimeout bounds the TCP (and, for https edges, TLS) connection to
	// an edge. Zero value means 3s.
	DialTimeout time.Duration `flag:"dial-timeout" env:"HEARTH_TLS_DIAL_TIMEOUT" default:"3s" usage:"timeout for connecting to an edge"`
	// UpgradeTimeout bounds the edge's answer to a forwarded upgrade
	// request. Zero value means 10s.
	UpgradeTimeout time.Duration `flag:"upgrade-timeout" env:"HEARTH_TLS_UPGRADE_TIMEOUT" default:"10s" usage:"timeout for an edge to answer a WebSocket upgrade"`
	// EdgeAttempts is how many edges one client upgrade may try when an
	// edge cannot be dialled, does not answer, or answers 503.
	// Zero value means 3.
	EdgeAttempts int `flag:"edge-attempts" env:"HEARTH_TLS_EDGE_ATTEMPTS" default:"3" usage:"edges tried per client upgrade before answering 503"`
	// ReadHeaderTimeout bounds reading a client's request headers,
	// including the TLS handshake. Zero value means 10s.
	ReadHeaderTimeout time.Duration `flag:"read-header-timeout" env:"HEARTH_TLS_READ_HEADER_TIMEOUT" default:"10s" usage:"timeout for a client's TLS handshake and request headers"`

	// MetricsListen is the plain-HTTP admin address serving /metrics,
	// /healthz and /readyz; "-" disables it. Zero value means
	// "127.0.0.1:9443": metrics stay off the network unless asked for.
	MetricsListen string `flag:"metrics-listen" env:"HEARTH_TLS_METRICS_LISTEN" default:"127.0.0.1:9443" usage:"admin address for /metrics, /healthz, /readyz (- to disable)"`
	// DrainTimeout bounds graceful shutdown: after Run's context is done,
	// the listener closes at once and proxied connections get this long to
	// end on their own before they are closed. Zero value means 10s.
	DrainTimeout time.Duration `flag:"drain-timeout" env:"HEARTH_TLS_DRAIN_TIMEOUT" default:"10s" usage:"how long proxied connections may keep running after shutdown starts"`
}

// Defaults applied to zero values; they match the `default` tags above
// (config_test.go checks that they do).
const (
	defaultListen            = ":8443"
	defaultCADir             = "./.hearth/tls"
	defaultStorageDir        = "./.hearth/certmagic"
	defaultHealthInterval    = 2 * time.Second
	defaultHealthTimeout     = time.Second
	defaultUnhealthyAfter    = 1
	defaultHealthyAfter      = 2
	defaultDialTimeout       = 3 * time.Second
	defaultUpgradeTimeout    = 10 * time.Second
	defaultEdgeAttempts      = 3
	defaultReadHeaderTimeout = 10 * time.Second
	defaultDrainTimeout      = 10 * time.Second
	defaultMetricsListen     = "127.0.0.1:9443"
	// metricsOff as MetricsListen disables the admin listener.
	metricsOff = "-"
)

var defaultHostnames = []string{"localhost", "127.0.0.1"}

// withDefaults returns c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	setDefault(&c.Listen, defaultListen)
	setDefault(&c.CertMode, CertModeSelfSigned)
	setDefault(&c.CADir, defaultCADir)
	setDefault(&c.ACMECA, certmagic.LetsEncryptProductionCA)
	setDefault(&c.StorageDir, defaultStorageDir)
	setDefault(&c.HealthInterval, defaultHealthInterval)
	setDefault(&c.HealthTimeout, defaultHealthTimeout)
	setDefault(&c.UnhealthyAfter, defaultUnhealthyAfter)
	setDefault(&c.HealthyAfter, defaultHealthyAfter)
	setDefault(&c.DialTimeout, defaultDialTimeout)
	setDefault(&c.UpgradeTimeout, defaultUpgradeTimeout)
	setDefault(&c.EdgeAttempts, defaultEdgeAttempts)
	setDefault(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	setDefault(&c.DrainTimeout, defaultDrainTimeout)
	setDefault(&c.MetricsListen, defaultMetricsListen)
	if len(c.Hostnames) == 0 {
		c.Hostnames = slices.Clone(defaultHostnames)
	}
	c.Edges = slices.Clone(c.Edges)
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate checks c, which has had its defaults applied.
func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen %q: %v", c.Listen, err)
	}
	if c.MetricsListen != metricsOff {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return bad("metrics-listen %q: %v", c.MetricsListen, err)
		}
	}
	if len(c.Edges) == 0 {
		return bad("edges: at least one edge URL is required")
	}
	seen := make(map[string]bool, len(c.Edges))
	for _, raw := range c.Edges {
		if _, err := parseEdgeURL(raw); err != nil {
			return bad("edges: %v", err)
		}
		if seen[raw] {
			return bad("edges: %q listed twice", raw)
		}
		seen[raw] = true
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"health-interval", c.HealthInterval}, {"health-timeout", c.HealthTimeout},
		{"dial-timeout", c.DialTimeout}, {"upgrade-timeout", c.UpgradeTimeout},
		{"read-header-timeout", c.ReadHeaderTimeout}, {"drain-timeout", c.DrainTimeout},
	} {
		if d.v < 0 {
			return bad("%s must not be negative, got %s", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"unhealthy-after", c.UnhealthyAfter}, {"healthy-after", c.HealthyAfter}, {"edge-attempts", c.EdgeAttempts},
	} {
		if n.v < 1 {
			return bad("%s must be at least 1, got %d", n.name, n.v)
		}
	}

	switch c.CertMode {
	case CertModeSelfSigned:
		for _, h := range c.Hostnames {
			if !certmagic.SubjectQualifiesForCert(h) {
				return bad("hostnames: %q cannot be put in a certificate", h)
			}
		}
	case CertModeFiles:
		if c.CertFile == "" || c.KeyFile == "" {
			return bad("cert-mode=files needs both cert-file and key-file")
		}
	case CertModeACME:
		if u, err := url.Parse(c.ACMECA); err != nil || u.Scheme != "https" || u.Host == "" {
			return bad("acme-ca %q: want an https directory URL", c.ACMECA)
		}
		if c.OnDemand {
			if u, err := url.Parse(c.OnDemandAsk); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad("on-demand needs on-demand-ask, an http(s) URL (got %q); without it anyone could make the tier request certificates for any name", c.OnDemandAsk)
			}
			break
		}
		for _, h := range c.Hostnames {
			if !certmagic.SubjectQualifiesForPublicCert(h) {
				return bad("hostnames: %q cannot get a public ACME certificate; set -hostnames to the public names, or use on-demand", h)
			}
		}
	default:
		return bad("cert-mode %q: want %s, %s or %s", c.CertMode, CertModeSelfSigned, CertModeFiles, CertModeACME)
	}
	if c.OnDemand && c.CertMode != CertModeACME {
		return bad("on-demand needs cert-mode=acme")
	}
	return nil
}

// parseEdgeURL checks an edge base URL: http or https, a host, no path,
// query or user info.
func parseEdgeURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q: missing host", raw)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want a base URL (scheme://host:port) without path, query or credentials", raw)
	}
	return u, nil
}

// absDir makes dir absolute so that logs and CACertPath name an
// unambiguous file.
func absDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%w: directory %q: %v", ErrInvalidConfig, dir, err)
	}
	return abs, nil
}
