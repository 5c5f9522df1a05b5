package tlstier

// The upgrade proxy is hand-written (dial, write the request, read the
// response, hijack, splice) rather than built on httputil.ReverseProxy,
// which has supported Upgrade since Go 1.12, because what the tier needs
// happens around the round trip, not inside it:
//   - an edge that cannot be dialled, does not answer, or answers 503
//     (draining) is skipped for the next one before anything is written to
//     the client; with ReverseProxy the edge is fixed once Rewrite runs and
//     a retry means a Transport per attempt;
//   - the least-connections count must cover exactly the life of the
//     spliced connection; here it is released where the splice returns;
//   - memory per idle connection matters more than for request traffic: a
//     connection holds two small copy buffers and no bufio buffers (both
//     are drained and dropped before the splice), where ReverseProxy keeps
//     32 KiB per direction;
//   - every spliced connection is registered, so shutdown can wait for
//     them and then close them, which http.Server does not do for
//     hijacked connections.
// The part that is easy to get wrong in a hand-written proxy, the header
// rules, is in forwardedHeader and follows ReverseProxy's (RFC 9110 §7.6.1
// hop-by-hop removal, X-Forwarded-For appended).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

const (
	// copyBufSize is the per-direction copy buffer of a spliced connection.
	// Chat frames are small; a larger buffer only saves syscalls on bulk
	// transfers and costs memory on every idle connection.
	copyBufSize = 8 << 10
	// maxRelayBody bounds the body of a refusal (401, 403, ...) relayed
	// from an edge to the client.
	maxRelayBody = 64 << 10
)

// hopHeaders are removed from a forwarded request and a relayed response
// (RFC 9110 §7.6.1); Connection and Upgrade are set again for the upgrade.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// isWebSocketUpgrade reports whether r asks for a WebSocket (RFC 6455 §4.1).
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && r.ProtoAtLeast(1, 1) &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(part), token) {
				return true
			}
		}
	}
	return false
}

// removeHopHeaders deletes the hop-by-hop headers of h, including the ones
// its Connection header names.
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// forwardedHeader is the header of the request sent to an edge: the
// client's (Origin, Sec-WebSocket-*, Authorization and cookies included)
// minus hop-by-hop headers, plus the upgrade and X-Forwarded-* headers.
// X-Forwarded-For is appended to, so that a load balancer in front of the
// tier can pass its own view; edges trust it only from configured proxies
// and read the entry this tier appended, the last one.
func forwardedHeader(r *http.Request) http.Header {
	h := r.Header.Clone()
	removeHopHeaders(h)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	clientIP, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		clientIP = r.RemoteAddr
	}
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
		clientIP = strings.Join(prior, ", ") + ", " + clientIP
	}
	h.Set("X-Forwarded-For", clientIP)
	h.Set("X-Forwarded-Proto", "https")
	h.Set("X-Forwarded-Host", r.Host)
	return h
}

// attemptError is why one edge could not take an upgrade.
type attemptError struct {
	reason string // errReason*
	err    error
}

func (e *attemptError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// upstream is a connection to an edge whose response head has been read.
type upstream struct {
	conn net.Conn
	br   *bufio.Reader // holds the bytes the edge sent after the head
}

// forward proxies the upgrade r to an edge, trying up to EdgeAttempts
// edges, and splices the connections once the edge switches protocols.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	if !p.track.enter() {
		p.unavailable(w, "shutting down")
		return
	}
	defer p.track.leave()

	hdr := forwardedHeader(r)
	tried := make([]bool, len(p.pool.edges))
	for range p.cfg.EdgeAttempts {
		e := p.pool.acquire(tried)
		if e == nil {
			break
		}
		tried[e.idx] = true
		up, resp, err := p.exchange(r.Context(), e, r, hdr)
		if err != nil {
			p.pool.release(e)
			if r.Context().Err() != nil {
				return // the client went away; nobody to answer
			}
			var ae *attemptError
			reason := errReasonHandshake
			if errors.As(err, &ae) {
				reason = ae.reason
			}
			p.met.errors.WithLabelValues(e.name, reason).Inc()
			if reason == errReasonDial && p.pool.markDown(e) == healthDown {
				p.log.Warn().Str("edge", e.name).Err(err).Msg("edge unreachable: no new connections until it passes checks")
			} else {
				p.log.Warn().Str("edge", e.name).Err(err).Msg("edge failed an upgrade; trying another")
			}
			continue
		}
		switch resp.StatusCode {
		case http.StatusSwitchingProtocols:
			p.splice(w, r, e, up, resp) // releases e
			return
		case http.StatusServiceUnavailable:
			// Draining (or its broker is down) and the checks have not
			// noticed yet: someone else should take this client.
			up.conn.Close()
			p.pool.release(e)
			p.met.errors.WithLabelValues(e.name, errReasonRefused).Inc()
			p.log.Debug().Str("edge", e.name).Msg("edge refused an upgrade with 503; trying another")
			continue
		default:
			// The edge's answer to this client (bad token, bad origin...):
			// another edge would say the same.
			p.relay(w, resp)
			up.conn.Close()
			p.pool.release(e)
			return
		}
	}
	p.met.errors.WithLabelValues(noEdgeLabel, errReasonNoEdge).Inc()
	p.unavailable(w, "no edge available")
}

// exchange dials e, sends the upgrade request and reads the response head.
// It gives up after DialTimeout to connect, UpgradeTimeout to answer, or
// when ctx (the client's request) is done.
func (p *Proxy) exchange(ctx context.Context, e *edge, r *http.Request, hdr http.Header) (*upstream, *http.Response, error) {
	conn, err := p.dialEdge(ctx, e)
	if err != nil {
		return nil, nil, &attemptError{reason: errReasonDial, err: err}
	}
	if err := conn.SetDeadline(time.Now().Add(p.cfg.UpgradeTimeout)); err != nil {
		conn.Close()
		return nil, nil, &attemptError{reason: errReasonHandshake, err: err}
	}
	// A client that leaves mid-exchange unblocks it at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })

	var head bytes.Buffer
	fmt.Fprintf(&head, "GET %s HTTP/1.1\r\nHost: %s\r\n", r.URL.RequestURI(), r.Host)
	_ = hdr.Write(&head) // sanitizes values; a bytes.Buffer does not fail
	head.WriteString("\r\n")
	var resp *http.Response
	br := bufio.NewReader(conn)
	_, err = conn.Write(head.Bytes())
	if err == nil {
		resp, err = http.ReadResponse(br, nil)
	}
	if !stop() && err == nil {
		err = context.Cause(ctx) // the deadline may be in the past now
	}
	if err != nil {
		conn.Close()
		return nil, nil, &attemptError{reason: errReasonHandshake, err: err}
	}
	return &upstream{conn: conn, br: br}, resp, nil
}

// dialEdge connects to e, with TLS for an https edge.
func (p *Proxy) dialEdge(ctx context.Context, e *edge) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	conn, err := p.dialer.DialContext(ctx, "tcp", e.addr)
	if err != nil || !e.useTLS {
		return conn, err
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName: e.host,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// relay passes an edge's refusal (any status but 101 and 503) to the
// client.
func (p *Proxy) relay(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	h := resp.Header.Clone()
	removeHopHeaders(h)
	h.Del("Content-Length") // the body may be truncated to maxRelayBody
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxRelayBody))
}

// unavailable answers 503 with a Retry-After of the time an edge needs to
// come back into rotation.
func (p *Proxy) unavailable(w http.ResponseWriter, msg string) {
	retry := time.Duration(p.cfg.HealthyAfter) * p.cfg.HealthInterval
	secs := max(1, int((retry+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, "hearth: "+msg, http.StatusServiceUnavailable)
}

// splice completes the upgrade: it hijacks the client connection, sends it
// the edge's 101 response, and copies bytes both ways until either side
// closes. It releases e when the connection ends.
func (p *Proxy) splice(w http.ResponseWriter, r *http.Request, e *edge, up *upstream, resp *http.Response) {
	defer p.pool.release(e)
	client, clientBuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.conn.Close()
		p.log.Error().Err(err).Msg("cannot hijack client connection")
		return
	}

	// The 101 head, then whatever the edge already sent after it; then the
	// bytes the client sent after its request. Both bufio buffers are
	// dropped afterwards so an idle connection keeps only its copy buffers.
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %s\r\n", resp.Status)
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	if n := up.br.Buffered(); n > 0 {
		b, _ := up.br.Peek(n)
		head.Write(b)
	}
	var early []byte
	if n := clientBuf.Reader.Buffered(); n > 0 {
		b, _ := clientBuf.Reader.Peek(n)
		early = bytes.Clone(b)
	}
	// Hijacked connections may carry the server's deadlines; the edge's
	// still has the handshake deadline. Long-lived from here on: liveness
	// is the edge's heartbeat's job.
	_ = client.SetDeadline(time.Time{})
	_ = up.conn.SetDeadline(time.Time{})

	s := &session{client: client, edge: up.conn}
	if !p.track.add(s) {
		s.close() // shutdown is already closing every connection
		return
	}
	defer p.track.remove(s)

	if _, err := client.Write(head.Bytes()); err != nil {
		s.close()
		return
	}
	if len(early) > 0 {
		if _, err := up.conn.Write(early); err != nil {
			s.close()
			return
		}
	}
	p.met.proxied.WithLabelValues(e.name).Inc()
	start := time.Now()
	clientAddr := r.RemoteAddr
	p.log.Debug().Str("edge", e.name).Str("client", clientAddr).Str("path", r.URL.Path).Msg("connection proxied")

	var toEdge int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		toEdge = copyStream(up.conn, client)
		s.close()
	}()
	toClient := copyStream(client, up.conn)
	s.close()
	<-done
	p.log.Debug().Str("edge", e.name).Str("client", clientAddr).
		Dur("duration", time.Since(start)).Int64("bytes_to_edge", toEdge).Int64("bytes_to_client", toClient).
		Msg("proxied connection closed")
}

// copyStream copies src to dst until either fails, with its own small
// buffer (io.Copy would pick 32 KiB through net.TCPConn's WriterTo).
func copyStream(dst, src net.Conn) int64 {
	buf := make([]byte, copyBufSize)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total
			}
			total += int64(n)
		}
		if err != nil {
			return total
		}
	}
}
