package tlstier

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/rs/zerolog"
)

// handshake connects to addr with cfg and returns the connection state.
func handshake(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

func TestSelfSignedCAPersistsAndServes(t *testing.T) {
	t.Parallel()
	edge := newFakeEdge(t)
	cfg := testConfig(t, edge.URL())

	p1, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	caPath := p1.CACertPath()
	if !filepath.IsAbs(caPath) || caPath != filepath.Join(cfg.CADir, "ca.pem") {
		t.Fatalf("CACertPath = %q, want %s/ca.pem", caPath, cfg.CADir)
	}
	ca1, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatalf("ca.pem not written: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.CADir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	block, _ := pem.Decode(ca1)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !caCert.IsCA {
		t.Fatalf("ca.pem is not a CA certificate: %v", err)
	}
	if _, ok := caCert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("CA key is %T, want ECDSA", caCert.PublicKey)
	}

	stop := runProxy(t, p1)
	roots := caPool(t, caPath)

	st, err := handshake(t, p1.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS handshake for localhost trusting only ca.pem: %v", err)
	}
	if st.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated %s, want TLS 1.2+", tls.VersionName(st.Version))
	}
	leaf := st.PeerCertificates[0]
	if err := leaf.CheckSignatureFrom(caCert); err != nil {
		t.Fatalf("leaf not signed by ca.pem: %v", err)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > leafLifetime+clockSkew {
		t.Fatalf("leaf lifetime %s, want at most %s", life, leafLifetime+clockSkew)
	}

	// TLS 1.2 exactly, with the AEAD suites only.
	st12, err := handshake(t, p1.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	if !slices.Contains(tls12Ciphers, st12.CipherSuite) {
		t.Fatalf("TLS 1.2 suite %s not in the allowed list", tls.CipherSuiteName(st12.CipherSuite))
	}

	// An IP address: the client sends no SNI and verifies the IP SAN.
	if _, err := handshake(t, p1.Addr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err != nil {
		t.Fatalf("TLS handshake for 127.0.0.1 (no SNI): %v", err)
	}

	// TLS 1.1 is refused.
	if _, err := handshake(t, p1.Addr(), &tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
	}); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded; want refused")
	}

	// A client that trusts the system roots only does not accept the leaf.
	if _, err := handshake(t, p1.Addr(), &tls.Config{ServerName: "localhost"}); err == nil {
		t.Fatal("handshake succeeded without trusting ca.pem")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Restart on the same directory: same CA, same leaf (from storage).
	p2, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := os.ReadFile(p2.CACertPath())
	if err != nil || !bytes.Equal(ca1, ca2) {
		t.Fatalf("restart did not reuse the CA (err %v)", err)
	}
	stop2 := runProxy(t, p2)
	defer stop2()
	st2, err := handshake(t, p2.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake after restart with the old ca.pem: %v", err)
	}
	if got, want := st2.PeerCertificates[0].SerialNumber, leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("restart issued a new leaf (serial %x, was %x); want it reused from storage", got, want)
	}
}

func TestLocalCARejectsHalfACA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := loadOrCreateLocalCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, caCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateLocalCA(dir); !errors.Is(err, ErrLocalCA) {
		t.Fatalf("key without certificate: err = %v, want ErrLocalCA", err)
	}
}

// writeTestCert writes a certificate for names signed by a fresh test CA
// and returns the files and the CA.
func writeTestCert(t *testing.T, names []string, ips []net.IP) (certFile, keyFile string, ca *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyPEM, _ := certmagic.PEMEncodePrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, ca
}

func TestFilesMode(t *testing.T) {
	t.Parallel()
	certFile, keyFile, ca := writeTestCert(t, []string{"chat.hearth.test"}, []net.IP{net.ParseIP("127.0.0.1")})
	edge := newFakeEdge(t)
	cfg := testConfig(t, edge.URL())
	cfg.CertMode = CertModeFiles
	cfg.CertFile, cfg.KeyFile = certFile, keyFile
	cfg.StorageDir = t.TempDir()
	p, _ := startProxy(t, cfg)

	if p.CACertPath() != "" {
		t.Fatalf("CACertPath = %q in files mode, want empty", p.CACertPath())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"chat.hearth.test", "127.0.0.1"} {
		st, err := handshake(t, p.Addr(), &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Fatalf("handshake for %s: %v", name, err)
		}
		if got := st.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{"chat.hearth.test"}) {
			t.Fatalf("served certificate for %v, want chat.hearth.test", got)
		}
	}
	if got, want := p.URL(), "wss://chat.hearth.test:"; len(got) < len(want) || got[:len(want)] != want {
		t.Fatalf("URL = %q, want %s<port>/", got, want)
	}
}

func TestFilesModeBadFiles(t *testing.T) {
	t.Parallel()
	certFile, _, _ := writeTestCert(t, []string{"a.test"}, nil)
	_, otherKey, _ := writeTestCert(t, []string{"b.test"}, nil)
	cfg := Config{Edges: []string{"http://127.0.0.1:1"}, CertMode: CertModeFiles, CertFile: certFile, KeyFile: otherKey}
	if _, err := New(cfg, zerolog.Nop(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("mismatched key: err = %v, want ErrInvalidConfig", err)
	}
}

func TestACMEConfig(t *testing.T) {
	t.Parallel()
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("domain") != "allowed.example.com" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(ask.Close)

	tests := []struct {
		name     string
		onDemand bool
	}{
		{"managed", false},
		{"on-demand", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			storage := t.TempDir()
			cfg := Config{
				Listen:     ":8443",
				Edges:      []string{"http://127.0.0.1:8081"},
				CertMode:   CertModeACME,
				Hostnames:  []string{"chat.example.com"},
				ACMEEmail:  "ops@example.com",
				ACMECA:     certmagic.LetsEncryptStagingCA,
				StorageDir: storage,
				OnDemand:   tt.onDemand,
			}
			if tt.onDemand {
				cfg.OnDemandAsk = ask.URL + "/check"
			}
			p, err := New(cfg, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			c := p.newCerts()
			defer c.stop()

			fs, ok := c.magic.Storage.(*certmagic.FileStorage)
			if !ok || fs.Path != storage {
				t.Fatalf("storage = %#v, want FileStorage at %s", c.magic.Storage, storage)
			}
			if len(c.magic.Issuers) != 1 {
				t.Fatalf("%d issuers, want 1", len(c.magic.Issuers))
			}
			iss, ok := c.magic.Issuers[0].(*certmagic.ACMEIssuer)
			if !ok {
				t.Fatalf("issuer is %T, want *certmagic.ACMEIssuer", c.magic.Issuers[0])
			}
			if iss.CA != certmagic.LetsEncryptStagingCA || iss.Email != "ops@example.com" || !iss.Agreed {
				t.Fatalf("issuer CA %q email %q agreed %v", iss.CA, iss.Email, iss.Agreed)
			}
			if iss.AltTLSALPNPort != 8443 {
				t.Fatalf("AltTLSALPNPort = %d, want the listen port 8443", iss.AltTLSALPNPort)
			}
			if iss.Logger == nil || c.magic.Logger == nil {
				t.Fatal("certmagic would log through its default logger")
			}
			tc := p.tlsConfig(c)
			if tc.MinVersion != tls.VersionTLS12 || !slices.Contains(tc.NextProtos, acmez.ACMETLS1Protocol) {
				t.Fatalf("tls config min %x protos %v; want TLS 1.2 and acme-tls/1", tc.MinVersion, tc.NextProtos)
			}

			if !tt.onDemand {
				if c.magic.OnDemand != nil {
					t.Fatal("on-demand enabled without being asked for")
				}
				return
			}
			if c.magic.OnDemand == nil || c.magic.OnDemand.DecisionFunc == nil {
				t.Fatal("on-demand not configured")
			}
			ctx := context.Background()
			if err := c.magic.OnDemand.DecisionFunc(ctx, "allowed.example.com"); err != nil {
				t.Fatalf("allowed name denied: %v", err)
			}
			if err := c.magic.OnDemand.DecisionFunc(ctx, "evil.example.net"); !errors.Is(err, ErrNameNotAllowed) {
				t.Fatalf("denied name: err = %v, want ErrNameNotAllowed", err)
			}
		})
	}
}

func TestAskDecision(t *testing.T) {
	t.Parallel()
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("domain") {
		case "ok.example.com", "xn--bcher-kva.example":
			w.WriteHeader(http.StatusOK)
		case "created.example.com":
			w.WriteHeader(http.StatusNoContent)
		case "moved.example.com":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(ask.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tests := []struct {
		name, ask, domain string
		allow             bool
	}{
		{"allowed", ask.URL, "ok.example.com", true},
		{"any 2xx allows", ask.URL, "created.example.com", true},
		{"punycode passed through", ask.URL + "/?tenant=7", "xn--bcher-kva.example", true},
		{"404 denies", ask.URL, "nope.example.com", false},
		{"redirect denies", ask.URL, "moved.example.com", false},
		{"unreachable denies", deadURL, "ok.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := askDecision(tt.ask, newAskClient())(context.Background(), tt.domain)
			if tt.allow && err != nil {
				t.Fatalf("denied: %v", err)
			}
			if !tt.allow && !errors.Is(err, ErrNameNotAllowed) {
				t.Fatalf("err = %v, want ErrNameNotAllowed", err)
			}
		})
	}
	queries := make(chan string, 1)
	probe := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { queries <- r.URL.RawQuery }))
	t.Cleanup(probe.Close)
	if err := askDecision(probe.URL+"/ask?tenant=7", newAskClient())(context.Background(), "a.example.com"); err != nil {
		t.Fatal(err)
	}
	if query := <-queries; query != "domain=a.example.com&tenant=7" {
		t.Fatalf("ask query = %q, want domain=a.example.com&tenant=7", query)
	}
}
