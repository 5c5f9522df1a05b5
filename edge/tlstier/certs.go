package tlstier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
)

// ErrNameNotAllowed is returned by the on-demand decision when the ask
// endpoint does not allow a name.
var ErrNameNotAllowed = errors.New("tlstier: on-demand certificate not allowed")

// askTimeout bounds one question to the on-demand ask endpoint; the TLS
// handshake that triggered it waits for the answer.
const askTimeout = 10 * time.Second

// tls12Ciphers are the TLS 1.2 suites offered: forward-secret AEAD only
// (Mozilla's "intermediate" profile). TLS 1.3 suites are not configurable
// in Go and are all sound.
var tls12Ciphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// certs is the certificate side of a running Proxy: a certmagic cache and
// the one certmagic.Config that serves every handshake.
type certs struct {
	magic *certmagic.Config
	cache *certmagic.Cache
}

// newCerts builds the certmagic cache and config for p's mode without
// loading or obtaining anything. The cache starts a maintenance goroutine:
// the caller must call stop.
func (p *Proxy) newCerts() *certs {
	zl := newZapLogger(p.log.With().Str("lib", "certmagic").Logger())

	// The cache asks for the config of a certificate when it maintains it
	// (renewals, OCSP). There is only one config; it exists only after the
	// cache does, hence the indirection.
	var current atomic.Pointer[certmagic.Config]
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := current.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("tlstier: certmagic config not ready")
		},
		Logger: zl,
	})

	tmpl := certmagic.Config{Logger: zl}
	switch p.cfg.CertMode {
	case CertModeSelfSigned:
		tmpl.Storage = &certmagic.FileStorage{Path: p.leafStorageDir()}
		tmpl.Issuers = []certmagic.Issuer{p.ca}
		tmpl.DefaultServerName = p.cfg.Hostnames[0]
		tmpl.FallbackServerName = p.cfg.Hostnames[0]
		tmpl.OCSP.DisableStapling = true // the local CA runs no responder
		tmpl.DisableARI = true           // ARI is an ACME feature
	case CertModeFiles:
		tmpl.Storage = &certmagic.FileStorage{Path: p.cfg.StorageDir}
		tmpl.DefaultServerName = p.fileName
		tmpl.FallbackServerName = p.fileName
		// Static certificates are never issued here; an empty issuer list
		// would make certmagic default to ACME, so name none explicitly.
		tmpl.Issuers = []certmagic.Issuer{}
	case CertModeACME:
		tmpl.Storage = &certmagic.FileStorage{Path: p.cfg.StorageDir}
		if p.cfg.OnDemand {
			tmpl.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: askDecision(p.cfg.OnDemandAsk, newAskClient())}
		}
	}
	magic := certmagic.New(cache, tmpl)
	if p.cfg.CertMode == CertModeACME {
		magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, p.acmeIssuerTemplate(zl))}
	}
	current.Store(magic)
	return &certs{magic: magic, cache: cache}
}

// acmeIssuerTemplate is the ACMEIssuer configuration of acme mode.
func (p *Proxy) acmeIssuerTemplate(zl *zap.Logger) certmagic.ACMEIssuer {
	return certmagic.ACMEIssuer{
		CA:    p.cfg.ACMECA,
		Email: p.cfg.ACMEEmail,
		// Choosing cert-mode=acme is the operator's agreement to the CA's
		// terms, as with Caddy; there is no one to ask interactively.
		Agreed: true,
		// TLS-ALPN-01 challenges arrive on port 443, which is expected to
		// reach Listen. Naming Listen's port makes certmagic find it in use
		// and leave the answer to GetCertificate on this very listener
		// instead of trying to bind a second one.
		AltTLSALPNPort: listenPort(p.cfg.Listen),
		Logger:         zl,
	}
}

// stop ends the cache's maintenance and waits for it.
func (c *certs) stop() { c.cache.Stop() }

// loadCerts makes certificates available for handshakes: self-signed
// leaves are loaded or issued now (local, fast, and a failure should stop
// startup); files are cached; ACME names are managed in the background so
// that a slow or unreachable CA does not keep the tier from starting.
func (p *Proxy) loadCerts(ctx context.Context, c *certs) error {
	switch p.cfg.CertMode {
	case CertModeSelfSigned:
		if err := c.magic.ManageSync(ctx, p.cfg.Hostnames); err != nil {
			return fmt.Errorf("tlstier: issuing local certificates: %w", err)
		}
	case CertModeFiles:
		if _, err := c.magic.CacheUnmanagedCertificatePEMFile(ctx, p.cfg.CertFile, p.cfg.KeyFile, nil); err != nil {
			return fmt.Errorf("tlstier: loading %s: %w", p.cfg.CertFile, err)
		}
	case CertModeACME:
		if p.cfg.OnDemand {
			return nil // every name is obtained at its first handshake
		}
		if err := c.magic.ManageAsync(ctx, p.cfg.Hostnames); err != nil {
			return fmt.Errorf("tlstier: managing ACME certificates: %w", err)
		}
	}
	return nil
}

// tlsConfig is the server TLS configuration: TLS 1.2 minimum, AEAD
// suites, certificates from certmagic, HTTP/1.1 only (WebSocket upgrades
// are HTTP/1.1; RFC 8441 over HTTP/2 is not supported by the edges).
func (p *Proxy) tlsConfig(c *certs) *tls.Config {
	protos := []string{"http/1.1"}
	if p.cfg.CertMode == CertModeACME {
		// Lets certmagic answer TLS-ALPN-01 challenges on this listener.
		protos = append(protos, acmez.ACMETLS1Protocol)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12Ciphers,
		GetCertificate: c.magic.GetCertificate,
		NextProtos:     protos,
	}
}

// leafStorageDir is where certmagic keeps the local CA's leaves.
func (p *Proxy) leafStorageDir() string { return filepath.Join(p.cfg.CADir, "certmagic") }

// listenPort is the port of Listen, or 0 if it has none.
func listenPort(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// newAskClient returns the client for on-demand questions: bounded, no
// environment proxy, and no redirects (a redirect is not an answer).
func newAskClient() *http.Client {
	return &http.Client{
		Timeout:       askTimeout,
		Transport:     &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: askTimeout}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// askDecision returns certmagic's on-demand DecisionFunc, in the manner of
// Caddy's `ask`: GET ask?domain=<name>; any 2xx allows the certificate,
// anything else, or no answer, denies it.
func askDecision(ask string, client *http.Client) func(ctx context.Context, name string) error {
	return func(ctx context.Context, name string) error {
		u, err := url.Parse(ask)
		if err != nil {
			return fmt.Errorf("%w: ask URL %q: %v", ErrNameNotAllowed, ask, err)
		}
		q := u.Query()
		q.Set("domain", name)
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNameNotAllowed, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%w: asking about %q: %v", ErrNameNotAllowed, name, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("%w: %q: ask endpoint answered %d", ErrNameNotAllowed, name, resp.StatusCode)
		}
		return nil
	}
}
