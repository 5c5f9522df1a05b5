package tlstier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// ErrAlreadyRun is returned by Run when called more than once.
var ErrAlreadyRun = errors.New("tlstier: Run called more than once")

const (
	// maxHeaderBytes bounds a client's request head. Generous for JWTs in
	// a header or query and cookies, far below net/http's 1 MiB default.
	maxHeaderBytes = 64 << 10
	// idleTimeout closes keep-alive connections that never upgrade.
	idleTimeout = 60 * time.Second
)

// Proxy is the TLS tier: it terminates TLS and proxies WebSocket upgrades
// to the healthiest, least-loaded edge. Build it with New, start it with
// Run.
type Proxy struct {
	cfg          Config
	log          zerolog.Logger
	gatherer     prometheus.Gatherer // nil if the Registerer cannot gather
	met          *metrics
	pool         *pool
	ca           *localCA // self-signed mode only
	fileName     string   // files mode: first name on the certificate
	dialer       *net.Dialer
	healthClient *http.Client
	track        tracker

	ran      atomic.Bool
	draining atomic.Bool
	ready    chan struct{}

	mu          sync.Mutex
	addr        string // guarded by mu; set once listening
	metricsAddr string // guarded by mu; set once listening
}

// New validates cfg, applies its defaults and prepares the certificates'
// sources: in self-signed mode it loads the local CA from CADir, creating
// and persisting it on first use; in files mode it checks that the files
// load. It starts nothing. Metrics are registered on reg unless it is nil;
// if reg is also a prometheus.Gatherer (a *prometheus.Registry is), the
// admin listener serves it at /metrics.
func New(cfg Config, log zerolog.Logger, reg prometheus.Registerer) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		log:          log,
		dialer:       &net.Dialer{}, // timeouts come from contexts
		healthClient: newHealthClient(cfg.DialTimeout),
		ready:        make(chan struct{}),
	}
	switch cfg.CertMode {
	case CertModeSelfSigned:
		dir, err := absDir(cfg.CADir)
		if err != nil {
			return nil, err
		}
		cfg.CADir = dir
		if p.ca, err = loadOrCreateLocalCA(dir); err != nil {
			return nil, err
		}
	case CertModeFiles:
		name, err := firstCertName(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		p.fileName = name
		if cfg.StorageDir, err = absDir(cfg.StorageDir); err != nil {
			return nil, err
		}
	case CertModeACME:
		var err error
		if cfg.StorageDir, err = absDir(cfg.StorageDir); err != nil {
			return nil, err
		}
	}
	p.cfg = cfg
	met, err := newMetrics(reg, cfg.Edges)
	if err != nil {
		return nil, err
	}
	p.met = met
	if p.pool, err = newPool(cfg.Edges, cfg.UnhealthyAfter, cfg.HealthyAfter, met); err != nil {
		return nil, err // unreachable: validate parsed the edges
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		p.gatherer = g
	}
	return p, nil
}

// firstCertName loads a certificate pair and returns the first name on its
// leaf, served to clients that send no (or an unknown) SNI.
func firstCertName(certFile, keyFile string) (string, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", fmt.Errorf("%w: cert-file/key-file: %v", ErrInvalidConfig, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return "", fmt.Errorf("%w: cert-file: %v", ErrInvalidConfig, err)
		}
	}
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0], nil
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String(), nil
	}
	return "", fmt.Errorf("%w: %s names no DNS name or IP address", ErrInvalidConfig, certFile)
}

// Run loads or obtains certificates, checks the edges once, listens, and
// serves until ctx is done. Then it drains: the listener closes, proxied
// connections get DrainTimeout to end and are closed after it. Run returns
// once every goroutine it started has exited; the error is nil after a
// shutdown caused by ctx. Run may be called once.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	c := p.newCerts()
	defer c.stop()
	if err := p.loadCerts(runCtx, c); err != nil {
		return err
	}

	// Know the edges' state before the first client arrives.
	p.checkAll(runCtx)
	if ctx.Err() != nil {
		return nil // stopped before it started
	}

	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("tlstier: listen %s: %w", p.cfg.Listen, err)
	}
	var adminLn net.Listener
	if p.cfg.MetricsListen != metricsOff {
		if adminLn, err = net.Listen("tcp", p.cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("tlstier: listen %s: %w", p.cfg.MetricsListen, err)
		}
	}

	errLog := stdlog.New(serverLogWriter{p.log.With().Str("src", "http").Logger()}, "", 0)
	var h1 http.Protocols
	h1.SetHTTP1(true)
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.handle),
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
		Protocols:         &h1,
	}
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{
			Handler:           p.adminHandler(),
			ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
			ErrorLog:          errLog,
		}
	}

	var bg sync.WaitGroup
	serveErr := make(chan error, 2)
	bg.Go(func() {
		if err := srv.Serve(tls.NewListener(ln, p.tlsConfig(c))); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("tlstier: serving %s: %w", p.cfg.Listen, err)
		}
	})
	if adminSrv != nil {
		bg.Go(func() {
			if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("tlstier: serving %s: %w", p.cfg.MetricsListen, err)
			}
		})
	}
	for _, e := range p.pool.edges {
		bg.Go(func() { p.healthLoop(runCtx, e) })
	}

	p.mu.Lock()
	p.addr = ln.Addr().String()
	if adminLn != nil {
		p.metricsAddr = adminLn.Addr().String()
	}
	p.mu.Unlock()
	close(p.ready)
	ev := p.log.Info().Str("addr", p.Addr()).Str("url", p.URL()).Str("cert_mode", p.cfg.CertMode).Strs("edges", p.cfg.Edges)
	if p.ca != nil {
		ev = ev.Str("ca_cert", p.CACertPath())
	}
	if adminLn != nil {
		ev = ev.Str("metrics_addr", p.MetricsAddr())
	}
	ev.Msg("tls tier listening")

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	p.shutdown(srv, adminSrv)
	cancel()
	bg.Wait()
	p.healthClient.CloseIdleConnections()
	return runErr
}

// shutdown stops accepting, lets proxied connections run for up to
// DrainTimeout, then closes them.
func (p *Proxy) shutdown(srv, adminSrv *http.Server) {
	p.draining.Store(true)
	p.log.Info().Dur("drain_timeout", p.cfg.DrainTimeout).Int("connections", p.track.count()).Msg("tls tier draining")
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	p.track.stop()
	if err := srv.Shutdown(ctx); err != nil {
		// Upgrades still talking to an edge: cancelling their requests
		// ends them.
		srv.Close()
	}
	closed := p.track.drain(ctx)
	if adminSrv != nil {
		adminSrv.Close()
	}
	p.log.Info().Int("closed_connections", closed).Msg("tls tier stopped")
}

// handle serves the TLS listener: WebSocket upgrades are proxied, GET
// /healthz answers for the tier itself, anything else is refused with 426.
func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	if isWebSocketUpgrade(r) {
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			// RFC 6455 handshakes have no body; one here could only be
			// misread by the edge once hop-by-hop framing is stripped.
			http.Error(w, "hearth: a WebSocket upgrade request has no body", http.StatusBadRequest)
			return
		}
		p.forward(w, r)
		return
	}
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	w.Header().Set("Upgrade", "websocket")
	w.Header().Set("Connection", "Upgrade")
	http.Error(w, "hearth: this endpoint only accepts WebSocket upgrades", http.StatusUpgradeRequired)
}

// adminHandler serves the admin listener: /metrics, /healthz (the process
// is alive) and /readyz (not draining and at least one edge is ready).
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	if p.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(p.gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case p.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !p.pool.anyHealthy():
			http.Error(w, "no edge ready", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	return mux
}

// Ready returns a channel closed once Run is listening; Addr and URL are
// valid from then on.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addr returns the TLS listener's bound address (host:port), or "" before
// Run is listening.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// MetricsAddr returns the admin listener's bound address, or "" if it is
// disabled ("-") or not listening yet.
func (p *Proxy) MetricsAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.metricsAddr
}

// URL returns the wss:// URL clients use: the first certificate name with
// the bound port, or "" before Run is listening.
func (p *Proxy) URL() string {
	addr := p.Addr()
	if addr == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(addr)
	host := p.fileName
	if host == "" {
		host = p.cfg.Hostnames[0]
	}
	return "wss://" + net.JoinHostPort(host, port) + "/"
}

// CACertPath returns the absolute path of the local CA certificate that
// clients must trust in self-signed mode, or "" in the other modes.
func (p *Proxy) CACertPath() string {
	if p.ca == nil {
		return ""
	}
	return p.ca.certPath
}

// serverLogWriter turns net/http's error log into zerolog events: TLS
// handshake failures (scanners, clients that do not trust the certificate)
// at debug level, anything else (accept errors, panics) as warnings.
type serverLogWriter struct{ log zerolog.Logger }

func (d serverLogWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	if strings.Contains(msg, "TLS handshake error") {
		d.log.Debug().Msg(msg)
	} else {
		d.log.Warn().Msg(msg)
	}
	return len(b), nil
}
