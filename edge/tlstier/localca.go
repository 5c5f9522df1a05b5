package tlstier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/certmagic"
)

// Files of the local CA inside Config.CADir.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

const (
	// caLifetime is the validity of a generated local CA. Clients trust it
	// explicitly, so it is long-lived; delete CADir to rotate it.
	caLifetime = 10 * 365 * 24 * time.Hour
	// leafLifetime is the validity of a leaf the local CA issues. certmagic
	// renews it in the background when a third of it remains (its default
	// renewal window), so short-lived leaves cost nothing.
	leafLifetime = 7 * 24 * time.Hour
	// clockSkew backdates certificates so that a client whose clock is a
	// little behind still accepts them.
	clockSkew = 5 * time.Minute
)

// ErrLocalCA is wrapped by errors about the persisted local CA.
var ErrLocalCA = errors.New("tlstier: local CA")

// localCA is a development certificate authority persisted in a directory.
// It implements certmagic.Issuer, so certmagic manages the leaves it signs
// (storage, caching, background renewal) exactly as it manages ACME
// certificates: the same code path serves both modes, and a long-running
// dev tier never serves an expired leaf.
//
// It is immutable after loadOrCreateLocalCA and safe for concurrent use.
type localCA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPath string
	// issuerKey names this CA in certmagic's storage; it includes the CA's
	// fingerprint, so leaves of a replaced CA are never served.
	issuerKey string
}

var _ certmagic.Issuer = (*localCA)(nil)

// loadOrCreateLocalCA loads the CA persisted in dir, or generates and
// persists a new ECDSA P-256 CA if dir holds none.
func loadOrCreateLocalCA(dir string) (*localCA, error) {
	certPath := filepath.Join(dir, caCertFile)
	keyPath := filepath.Join(dir, caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseLocalCA(certPEM, keyPEM, certPath)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createLocalCA(dir, certPath, keyPath)
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: reading %s: %v", ErrLocalCA, certPath, certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: reading %s: %v", ErrLocalCA, keyPath, keyErr)
	default:
		return nil, fmt.Errorf("%w: %s holds only one of %s and %s; restore the other or remove both to generate a new CA (clients will have to trust the new %s)",
			ErrLocalCA, dir, caCertFile, caKeyFile, caCertFile)
	}
}

func parseLocalCA(certPEM, keyPEM []byte, certPath string) (*localCA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrLocalCA, certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing %s: %v", ErrLocalCA, certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrLocalCA, certPath)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: %s expired on %s; remove the CA directory to generate a new one", ErrLocalCA, certPath, cert.NotAfter.Format(time.DateOnly))
	}
	signer, err := certmagic.PEMDecodePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing CA key: %v", ErrLocalCA, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: CA key: %v", ErrLocalCA, err)
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, fmt.Errorf("%w: CA key does not match %s", ErrLocalCA, certPath)
	}
	return newLocalCA(cert, signer, certPath), nil
}

func createLocalCA(dir, certPath, keyPath string) (*localCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: creating %s: %v", ErrLocalCA, dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generating key: %v", ErrLocalCA, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Hearth development"},
			CommonName:   "Hearth Local CA " + now.UTC().Format("2006-01-02") + " " + serial.Text(16)[:8],
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("%w: self-signing: %v", ErrLocalCA, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	keyPEM, err := certmagic.PEMEncodePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding key: %v", ErrLocalCA, err)
	}
	// The key goes first: a crash between the two writes leaves a key
	// without a certificate, which loadOrCreateLocalCA reports instead of
	// silently trusting half a CA.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return newLocalCA(cert, key, certPath), nil
}

func newLocalCA(cert *x509.Certificate, key crypto.Signer, certPath string) *localCA {
	sum := sha256.Sum256(cert.Raw)
	return &localCA{
		cert:      cert,
		key:       key,
		certPath:  certPath,
		issuerKey: "hearth-local-" + hex.EncodeToString(sum[:8]),
	}
}

// IssuerKey identifies this CA in certmagic's storage.
func (ca *localCA) IssuerKey() string { return ca.issuerKey }

// Issue signs a server certificate for the names in csr.
func (ca *localCA) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature: %v", ErrLocalCA, err)
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, fmt.Errorf("%w: CSR names no DNS name or IP address", ErrLocalCA)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, isRSA := csr.PublicKey.(*rsa.PublicKey); isRSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	cn := ""
	if len(csr.DNSNames) > 0 {
		cn = csr.DNSNames[0]
	} else {
		cn = csr.IPAddresses[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing leaf for %v %v: %v", ErrLocalCA, csr.DNSNames, csr.IPAddresses, err)
	}
	return &certmagic.IssuedCertificate{
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("%w: serial number: %v", ErrLocalCA, err)
	}
	return serial, nil
}

// writeFileAtomic writes data to path through a temporary file and a rename,
// so readers never see a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: writing %s: %v", ErrLocalCA, path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%w: %v", ErrLocalCA, err)
	}
	return nil
}
