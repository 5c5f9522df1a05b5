package loadtest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lxzan/gws"

	"github.com/hearth-gateway/hearth/protocol"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: with a source
// address bound, the port is still chosen at connect time, per destination,
// so each source address offers the whole ephemeral range to every target.
const ipBindAddressNoPort = 24

// dialer opens the tool's WebSocket connections.
type dialer struct {
	urls    []string
	tls     []*tls.Config // per URL; nil for ws://
	sources []net.IP
	secret  []byte
	ttl     time.Duration
	timeout time.Duration
}

func newDialer(c *Config) (*dialer, error) {
	secret, err := loadSecret(c.Secret, c.SecretFile)
	if err != nil {
		return nil, err
	}
	d := &dialer{urls: c.URLs, secret: secret, ttl: c.hardTimeout() + time.Hour, timeout: c.ConnectTimeout}
	var roots *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %v", ErrConfig, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, c.CAFile)
		}
	}
	for _, s := range c.URLs {
		u, _ := url.Parse(s)
		if u.Scheme != "wss" {
			d.tls = append(d.tls, nil)
			continue
		}
		// One config per URL with ServerName set: gws would otherwise set it
		// on a config shared by concurrent dials. No session cache: every
		// simulated client does a full handshake, as a new client would.
		d.tls = append(d.tls, &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
	}
	if c.SourceIPs > 0 && c.targetIsLoopback() {
		for i := 0; i < c.SourceIPs; i++ {
			d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(2+i)))
		}
	}
	return d, nil
}

func loadSecret(value, file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: secret file: %v", ErrConfig, err)
		}
		value = strings.TrimSpace(string(b))
	}
	if len(value) < 16 {
		return nil, fmt.Errorf("%w: the JWT secret must be at least 16 bytes", ErrConfig)
	}
	return []byte(value), nil
}

// token mints an HS256 token for user, as PROTOCOL.md §2 describes.
func (d *dialer) token(user string) (string, error) {
	now := time.Now()
	c := jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(d.ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(d.secret)
}

// option builds the gws client options of global connection g.
func (d *dialer) option(g int, token string) *gws.ClientOption {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	i := g % len(d.urls)
	nd := &net.Dialer{Timeout: d.timeout}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[g%len(d.sources)]}
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return &gws.ClientOption{
		Addr:               d.urls[i],
		RequestHeader:      h,
		TlsConfig:          d.tls[i],
		HandshakeTimeout:   d.timeout,
		ReadMaxPayloadSize: 16 << 20,
		ReadBufferSize:     4096,
		NewDialer:          func() (gws.Dialer, error) { return nd, nil },
		NewSession:         func() gws.SessionStorage { return noSession{} },
	}
}

// noSession is a SessionStorage that stores nothing: the tool keeps its
// per-connection state in its own struct, and gws's default allocates a map
// per connection.
type noSession struct{}

func (noSession) Len() int                     { return 0 }
func (noSession) Load(string) (any, bool)      { return nil, false }
func (noSession) Delete(string)                {}
func (noSession) Store(string, any)            {}
func (noSession) Range(func(string, any) bool) {}
