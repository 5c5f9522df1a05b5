package edge

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// Config configures an edge. Flags and environment variables map onto it
// through package conf; each field's comment gives its zero-value default,
// which New applies.
type Config struct {
	// ID names the edge in routing keys and logs. Zero value means a random id.
	ID string `flag:"id" env:"HEARTH_EDGE_ID" usage:"edge id (letters, digits, _-:@+=); random when empty"`
	// Listen is the address for WebSocket, health and metrics endpoints.
	// Zero value means ":8081".
	Listen string `flag:"listen" env:"HEARTH_EDGE_LISTEN" default:":8081" usage:"listen address for /ws, /healthz, /readyz, /metrics"`
	// JWTSecret is the HS256 secret tokens are checked with (16 bytes or more).
	JWTSecret string `flag:"jwt-secret" env:"HEARTH_JWT_SECRET" usage:"HS256 secret for client tokens"`
	// JWTSecretFile, when set, is read instead of JWTSecret.
	JWTSecretFile string `flag:"jwt-secret-file" env:"HEARTH_JWT_SECRET_FILE" usage:"file holding the HS256 secret (overrides -jwt-secret)"`
	// AllowedOrigins lists the Origin values browsers may connect from; "*"
	// allows any. Requests without an Origin header (non-browser clients)
	// are always allowed. Zero value means localhost and 127.0.0.1 on any
	// port, over http or https: right for development, too open for nothing.
	AllowedOrigins []string `flag:"allowed-origins" env:"HEARTH_ALLOWED_ORIGINS" usage:"comma-separated allowed Origin values, * for any; empty allows localhost only"`
	// TrustedProxies lists addresses or CIDR prefixes whose X-Forwarded-For
	// header is believed. Zero value means loopback only.
	TrustedProxies []string `flag:"trusted-proxies" env:"HEARTH_TRUSTED_PROXIES" default:"127.0.0.0/8,::1/128" usage:"proxies (IPs or CIDRs) whose X-Forwarded-For is trusted"`
	// MaxMessage bounds one client message in bytes; larger ones close the
	// connection with 1009. Zero value means 65536.
	MaxMessage int `flag:"max-message" env:"HEARTH_MAX_MESSAGE" default:"65536" usage:"largest client message in bytes (close 1009 beyond)"`
	// ReadBuffer is how many bytes the edge reads from a socket at a time.
	// Buffers are pooled and held only while a connection is being read,
	// which includes its broker round trips (each connection holds one with
	// ReadGoroutines). Client frames are small; a larger message takes
	// several reads. Zero value means 512.
	ReadBuffer int `flag:"read-buffer" env:"HEARTH_READ_BUFFER" default:"512" usage:"bytes read from a socket at a time (pooled buffers)"`
	// ReadGoroutines reads every connection on a goroutine of its own, as
	// on systems without epoll, instead of waiting for all of them with one
	// epoll set and reading a connection only when it has bytes (ADR 0003).
	// Zero value means epoll on Linux.
	ReadGoroutines bool `flag:"read-goroutines" env:"HEARTH_READ_GOROUTINES" default:"false" usage:"read each connection on its own goroutine instead of one epoll set"`
	// SendQueueMessages bounds a connection's send queue in messages.
	// Zero value means 1024.
	SendQueueMessages int `flag:"send-queue-messages" env:"HEARTH_SEND_QUEUE_MESSAGES" default:"1024" usage:"per-connection send queue bound in messages (overflow closes 4001)"`
	// SendQueueBytes bounds a connection's send queue in bytes. Zero value means 4 MiB.
	SendQueueBytes int `flag:"send-queue-bytes" env:"HEARTH_SEND_QUEUE_BYTES" default:"4194304" usage:"per-connection send queue bound in bytes (overflow closes 4001)"`
	// WriteTimeout bounds one socket write. Zero value means 10s.
	WriteTimeout time.Duration `flag:"write-timeout" env:"HEARTH_WRITE_TIMEOUT" default:"10s" usage:"deadline for one socket write"`
	// Heartbeat is how often each connection is checked and, if quiet,
	// pinged (Server.heartbeatLoop). Zero value means 25s.
	Heartbeat time.Duration `flag:"heartbeat" env:"HEARTH_HEARTBEAT" default:"25s" usage:"how often each connection is checked; a quiet one gets a ping"`
	// HeartbeatTimeout is how long a connection may be silent before it is
	// pinged, and how long it may leave a ping unanswered before it is
	// closed (4002). Zero value means 10s.
	HeartbeatTimeout time.Duration `flag:"heartbeat-timeout" env:"HEARTH_HEARTBEAT_TIMEOUT" default:"10s" usage:"ping a connection silent this long; close one that leaves a ping unanswered this long"`
	// MaxRoomsPerConn bounds the rooms one connection may join. Zero value means 100.
	MaxRoomsPerConn int `flag:"max-rooms" env:"HEARTH_MAX_ROOMS" default:"100" usage:"rooms one connection may join"`
	// RatePerSecond and RateBurst limit frames per connection. Zero values mean 50 and 100.
	RatePerSecond float64 `flag:"rate" env:"HEARTH_RATE" default:"50" usage:"frames per second one connection may send"`
	RateBurst     int     `flag:"rate-burst" env:"HEARTH_RATE_BURST" default:"100" usage:"burst of frames one connection may send"`
	// EgressQueueMax bounds the edge's own queue in messages (overflow
	// drop-head: the oldest broadcast is dropped). Zero value means 100000.
	EgressQueueMax int `flag:"egress-queue-max" env:"HEARTH_EGRESS_QUEUE_MAX" default:"100000" usage:"length limit of the edge's own queue (overflow: drop-head)"`
	// DrainTimeout bounds the graceful drain on shutdown. Zero value means 10s.
	DrainTimeout time.Duration `flag:"drain-timeout" env:"HEARTH_DRAIN_TIMEOUT" default:"10s" usage:"longest graceful drain on SIGTERM"`
	// ReconnectHint is the upper bound, in the 1001 close reason, of the
	// random delay before clients reconnect. Zero value means 2s.
	ReconnectHint time.Duration `flag:"reconnect-hint" env:"HEARTH_RECONNECT_HINT" default:"2s" usage:"clients spread their reconnects over this long after a drain"`
	// Announce is the interval of the edge's liveness announcements to the
	// hubs. Zero value means 2s; it must stay well below the hubs' edge timeout.
	Announce time.Duration `flag:"announce" env:"HEARTH_EDGE_ANNOUNCE" default:"2s" usage:"interval of liveness announcements to the hubs"`
	// RequestTimeout bounds a broker round trip made for a client request. Zero value means 5s.
	RequestTimeout time.Duration `flag:"request-timeout" env:"HEARTH_REQUEST_TIMEOUT" default:"5s" usage:"deadline of a broker round trip for a client request"`

	// IngressMaxDelay is the longest a client frame waits to share an AMQP
	// message with other frames for the same shard. Frames wait only while
	// an earlier message to their shard is unconfirmed; an idle shard's
	// frame goes at once. Zero value means 1ms; a negative value turns
	// batching off (one message per frame, sent at once).
	IngressMaxDelay time.Duration `flag:"ingress-max-delay" env:"HEARTH_INGRESS_MAX_DELAY" default:"1ms" usage:"longest a frame waits to be batched with others for its shard (negative: never)"`
	// IngressBatch bounds the frames one ingress message carries. Zero
	// value means 256; 1 turns batching off.
	IngressBatch int `flag:"ingress-batch" env:"HEARTH_INGRESS_BATCH" default:"256" usage:"most frames in one ingress message (1: no batching)"`

	// Topology is shared with hubs and must match theirs.
	Topology topology.Config
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("edge: invalid config")

func (c *Config) normalize() error {
	setDefault(&c.Listen, ":8081")
	setDefaultInt(&c.MaxMessage, 65536)
	setDefaultInt(&c.SendQueueMessages, 1024)
	setDefaultInt(&c.ReadBuffer, 512)
	setDefaultInt(&c.SendQueueBytes, 4<<20)
	setDefaultDur(&c.WriteTimeout, 10*time.Second)
	if c.IngressMaxDelay == 0 {
		c.IngressMaxDelay = time.Millisecond
	}
	setDefaultInt(&c.IngressBatch, 256)
	if c.IngressBatch > protocol.MaxBatchEnvelopes {
		return fmt.Errorf("%w: ingress-batch %d is more than %d", ErrConfig, c.IngressBatch, protocol.MaxBatchEnvelopes)
	}
	setDefaultDur(&c.Heartbeat, 25*time.Second)
	setDefaultDur(&c.HeartbeatTimeout, 10*time.Second)
	setDefaultInt(&c.MaxRoomsPerConn, 100)
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 50
	}
	setDefaultInt(&c.RateBurst, 100)
	setDefaultInt(&c.EgressQueueMax, 100000)
	setDefaultDur(&c.DrainTimeout, 10*time.Second)
	setDefaultDur(&c.ReconnectHint, 2*time.Second)
	setDefaultDur(&c.RequestTimeout, 5*time.Second)
	setDefaultDur(&c.Announce, 2*time.Second)
	if len(c.TrustedProxies) == 0 {
		c.TrustedProxies = []string{"127.0.0.0/8", "::1/128"}
	}
	if c.ID == "" {
		c.ID = "edge-" + randomHex(4)
	}
	if err := protocol.ValidateID(c.ID); err != nil {
		return fmt.Errorf("%w: id %q: %v", ErrConfig, c.ID, err)
	}
	if c.MaxMessage < 256 {
		return fmt.Errorf("%w: max-message %d is below 256 bytes", ErrConfig, c.MaxMessage)
	}
	return c.Topology.Validate()
}

// parsePrefixes parses addresses and CIDR prefixes.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%w: trusted proxy %q: %v", ErrConfig, s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted proxy %q: %v", ErrConfig, s, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setDefaultInt(n *int, v int) {
	if *n <= 0 {
		*n = v
	}
}

func setDefaultDur(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}
