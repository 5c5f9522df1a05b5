// Package edge holds client WebSocket connections and nothing of the chat
// logic: it authenticates, validates and wraps client frames into envelopes
// for the hubs, and writes the hubs' broadcasts, byte for byte, to the local
// connections that subscribed to them. It speaks the WebSocket wire itself
// (handshake, frame reader and writer; ADR 0002 and 0003).
//
// Concurrency: an idle connection has no goroutine. One epoll set watches
// every socket (poll_linux.go); when one becomes readable, a reader
// goroutine reads and handles its frames, in order, and ends once the
// socket is empty, so at most one goroutine reads a connection at a time
// (with ReadGoroutines, or without epoll, a reader runs for the life of
// each connection instead). New connections' user keys are bound by one
// goroutine, in turn (userbind.go). Broker deliveries arrive on one
// consumer goroutine that queues each broadcast on its recipients under
// the index's read lock and, once the deliveries that arrived together are
// queued, hands the recipients to the edge's socket writer goroutine,
// which writes each one's frames with one non-blocking system call. Only a
// socket that cannot take its frames at once gets a goroutine of its own,
// the connection's flusher, which waits for it (WriteTimeout) and ends
// when the queue is empty; so fan-out never blocks on a socket.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/auth"
	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// Server is one edge process.
type Server struct {
	cfg       Config
	log       zerolog.Logger
	b         broker.Broker
	verifier  *auth.Verifier
	proxies   []netip.Prefix
	origins   []string
	index     *index
	binder    *binder
	userBinds *userBinds
	ingress   *ingress
	stats     stats
	metrics   http.Handler
	queue     string

	incarnation string
	connSeq     atomic.Uint64

	ln       net.Listener
	ready    chan struct{}
	draining atomic.Bool

	mu    sync.Mutex // guards conns and byID
	conns map[*conn]struct{}
	byID  map[string]*conn

	// pending and batched belong to the egress consumer's goroutine: the
	// connections with frames queued since its last hand-over to the
	// socket writer, and the number of deliveries since then.
	pending []*conn
	batched int
	scratch []byte // the consumer's, when it writes itself (no writer)
	// handed holds the connections handed over and not yet taken by the
	// socket writer (writeLoop), which writerWake wakes; nil writerWake
	// means there is no writer and the consumer writes itself.
	handedMu   sync.Mutex
	handed     []*conn
	writerWake chan struct{}

	// poller waits for readable sockets (nil: a goroutine reads each
	// connection).
	poller *poller

	wg sync.WaitGroup // connection goroutines and the heartbeat loop

	// hbNext hands out connections' heartbeat slots in turn.
	hbNext atomic.Uint32
}

// New validates cfg and builds an edge on broker b. reg receives the edge's
// metrics; nil means a private registry served on /metrics.
func New(cfg Config, b broker.Broker, log zerolog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	secret, err := auth.LoadSecret(cfg.JWTSecret, cfg.JWTSecretFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	verifier, err := auth.NewVerifier(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	proxies, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		log:         log.With().Str("edge_id", cfg.ID).Logger(),
		b:           b,
		verifier:    verifier,
		proxies:     proxies,
		origins:     cfg.AllowedOrigins,
		index:       newIndex(),
		queue:       protocol.EdgeQueue(cfg.ID),
		incarnation: randomHex(3),
		ready:       make(chan struct{}),
		conns:       make(map[*conn]struct{}),
		byID:        make(map[string]*conn),
		writerWake:  make(chan struct{}, 1),
	}
	s.binder = newBinder(b, s.queue)
	s.userBinds = newUserBinds()
	s.ingress = newIngress(b, &s.cfg, &s.stats)
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		s.metrics = promhttp.HandlerFor(r, promhttp.HandlerOpts{})
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	}
	if err := s.stats.register(reg, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ID returns the edge id.
func (s *Server) ID() string { return s.cfg.ID }

// Addr returns the listen address once Ready is closed.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Ready is closed once the edge listens and its broker topology is declared.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run declares the topology, starts consuming the edge's queue and serves
// until ctx is done, then drains: it stops accepting, closes every client
// with 1001 and a reconnect hint, and waits up to DrainTimeout.
func (s *Server) Run(ctx context.Context) error {
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := s.setup(setupCtx)
	cancel()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("edge: listen: %w", err)
	}
	s.ln = ln
	if !s.cfg.ReadGoroutines {
		if s.poller, err = newPoller(); err != nil {
			s.log.Warn().Err(err).Msg("reading each connection on a goroutine of its own")
		}
	}
	if s.poller != nil {
		go s.poller.run(s.readable)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", s.serveReady)
	if s.metrics != nil {
		mux.Handle("/metrics", s.metrics)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	// The ingress publisher outlives the connections: a closing connection
	// still publishes its disconnect envelopes.
	ingressCtx, stopIngress := context.WithCancel(context.Background())
	s.ingress.start(ingressCtx)
	hbCtx, stopHB := context.WithCancel(context.Background())
	s.wg.Add(4)
	go s.userBinds.run(hbCtx, s)
	go s.heartbeatLoop(hbCtx)
	go s.announceLoop(hbCtx)
	go s.writeLoop(hbCtx)
	s.log.Info().Str("addr", ln.Addr().String()).Msg("edge listening")
	close(s.ready)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		s.log.Error().Err(err).Msg("http server stopped")
	}
	s.drain(hs)
	if s.poller != nil {
		// After the drain no socket is left to watch; readers still
		// running are counted in wg.
		s.poller.stop()
	}
	stopHB()
	s.wg.Wait()
	stopIngress()
	s.ingress.wait()
	s.announce(true)
	return err
}

// announceLoop tells the hubs this edge is alive, so they can remove the
// members of an edge that died without saying goodbye.
func (s *Server) announceLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Announce)
	defer t.Stop()
	s.announce(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.announce(false)
		}
	}
}

func (s *Server) announce(leaving bool) {
	body, err := protocol.EncodeHeartbeat(&protocol.Heartbeat{ID: s.cfg.ID, Incarnation: s.incarnation, Leaving: leaving})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Announce)
	defer cancel()
	if err := s.b.Publish(ctx, protocol.ExchangeControl, broker.Message{Key: protocol.EdgeHeartbeatKey(s.cfg.ID), Body: body}); err != nil {
		s.log.Debug().Err(err).Msg("liveness announcement not published")
	}
}

func (s *Server) setup(ctx context.Context) error {
	if err := topology.Declare(ctx, s.b, s.cfg.Topology); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	q := broker.QueueSpec{Name: s.queue, Exclusive: true, MaxLength: s.cfg.EgressQueueMax, Overflow: broker.DropHead}
	if err := s.b.DeclareQueue(ctx, q); err != nil {
		return fmt.Errorf("edge: declaring own queue: %w", err)
	}
	if err := s.b.Bind(ctx, s.queue, protocol.ExchangeEgress, protocol.EdgeKey(s.cfg.ID)); err != nil {
		return fmt.Errorf("edge: binding own queue: %w", err)
	}
	// The consumer stops when the broker closes, after the drain.
	err := s.b.Consume(context.Background(), broker.ConsumeSpec{Queue: s.queue, AutoAck: true, Exclusive: true, OnIdle: s.handOver}, s.onDelivery)
	if err != nil {
		return fmt.Errorf("edge: consuming own queue: %w", err)
	}
	return nil
}

// drain implements the shutdown sequence.
func (s *Server) drain(hs *http.Server) {
	s.draining.Store(true)
	s.log.Info().Msg("draining")
	// Closing the listener stops new connections; hijacked WebSockets are
	// not the http.Server's to close.
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	_ = hs.Shutdown(sctx)
	reason := closeReason{protocol.CloseGoingAway, protocol.DrainReason(int(s.cfg.ReconnectHint / time.Millisecond))}
	s.mu.Lock()
	for c := range s.conns {
		s.goClose(c, reason)
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-sctx.Done():
			s.log.Warn().Int("connections", n).Msg("drain timeout; closing the rest")
			s.mu.Lock()
			for c := range s.conns {
				c.shutdownSocket()
			}
			s.mu.Unlock()
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.log.Info().Msg("drained")
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	st := s.b.State()
	switch {
	case s.draining.Load():
		http.Error(w, "draining", http.StatusServiceUnavailable)
	case !st.Connected:
		http.Error(w, "broker disconnected", http.StatusServiceUnavailable)
	case st.Blocked:
		http.Error(w, "broker blocked", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ready\n"))
	}
}

// serveWS authenticates and checks a WebSocket request before upgrading.
// Every refusal is an HTTP status; no WebSocket exists yet.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "edge is draining", http.StatusServiceUnavailable)
		return
	}
	if !s.originAllowed(r.Header.Get("Origin")) {
		s.stats.rejectedHandshakes.Add(1)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	id, err := s.verifier.Verify(tokenOf(r))
	if err != nil {
		s.stats.rejectedHandshakes.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	accept, err := acceptKey(r)
	if err != nil {
		s.stats.rejectedHandshakes.Add(1)
		refuseUpgrade(w, err)
		return
	}
	if !offersSubprotocol(r) {
		s.stats.rejectedHandshakes.Add(1)
		http.Error(w, "subprotocol "+protocol.Subprotocol+" required", http.StatusBadRequest)
		return
	}
	if st := s.b.State(); !st.Connected {
		w.Header().Set("Retry-After", "2")
		http.Error(w, "broker unavailable", http.StatusServiceUnavailable)
		return
	}
	remote := s.clientAddr(r)
	raw, br, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	nc := &lockedConn{Conn: raw}
	_ = nc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	err = writeUpgrade(nc, accept)
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		_ = nc.Close()
		s.log.Debug().Err(err).Msg("writing the handshake response")
		return
	}
	// Bytes the client sent past its request are its first frames.
	var early []byte
	if n := br.Reader.Buffered(); n > 0 {
		early, _ = br.Reader.Peek(n)
	}
	c := newConn(s, s.nextConnID(), id.User, remote, nc)
	c.grants = id.Rooms
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.byID[c.id] = c
	s.mu.Unlock()
	s.index.addUser(c)
	s.stats.connections.Add(1)
	s.userBinds.add(c)
	c.welcome()
	if len(early) > 0 && !c.consume(early, false) {
		c.finish()
		return
	}
	s.startReading(c)
}

// handshakeTimeout bounds writing the handshake response.
const handshakeTimeout = 5 * time.Second

func (s *Server) releaseUser(user string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	_ = s.binder.release(ctx, protocol.UserKey(user))
}

func (s *Server) nextConnID() string {
	return s.incarnation + "-" + strconv.FormatUint(s.connSeq.Add(1), 36)
}

// tokenOf finds the client's token: "Authorization: Bearer" first (Go and
// app clients), then the "token" query parameter (browsers cannot set
// headers on a WebSocket).
func tokenOf(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}

func offersSubprotocol(r *http.Request) bool {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if strings.TrimSpace(p) == protocol.Subprotocol {
				return true
			}
		}
	}
	return false
}

func (s *Server) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	if len(s.origins) == 0 {
		return isLocalOrigin(origin)
	}
	for _, o := range s.origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func isLocalOrigin(origin string) bool {
	rest, ok := strings.CutPrefix(origin, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(origin, "https://")
	}
	if !ok {
		return false
	}
	host := rest
	if h, _, err := net.SplitHostPort(rest); err == nil {
		host = h
	}
	return host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1"
}

// clientAddr returns the client's address: the peer, or the last untrusted
// hop of X-Forwarded-For when the peer is a trusted proxy.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		a, err := netip.ParseAddr(h)
		if err != nil {
			break
		}
		if !s.trusted(a) {
			return a.String()
		}
		host = a.String()
	}
	return host
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// heartbeatSlices is how many parts the connections are checked in: one
// part every Heartbeat/heartbeatSlices, so each connection is checked once
// per Heartbeat and the pings of many connections never leave together (a
// burst of 10,000 pings and pongs stalled everything else for ~100 ms).
const heartbeatSlices = 32

// heartbeatLoop checks every connection once per Heartbeat, one slice at a
// time. A connection silent for longer than HeartbeatTimeout, or to which
// nothing was written for Heartbeat/2, gets a ping (so the client hears
// from the edge at least every 1.5 Heartbeats, PROTOCOL.md §5.9); one that
// has not answered a ping within HeartbeatTimeout is closed. A connection
// that talks and is talked to is not pinged: its own frames prove it alive
// and ours reach it. One loop serves all connections, so idle connections
// cost no timer each.
func (s *Server) heartbeatLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(max(s.cfg.Heartbeat/heartbeatSlices, time.Millisecond))
	defer t.Stop()
	var batch []*conn
	for slot := uint32(0); ; slot = (slot + 1) % heartbeatSlices {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		batch = s.heartbeatSlice(slot, time.Now().UnixNano(), batch)
	}
}

// heartbeatSlice checks the connections of one heartbeat slot at time now
// (Unix nanoseconds) and returns batch, emptied, for the next call.
func (s *Server) heartbeatSlice(slot uint32, now int64, batch []*conn) []*conn {
	timeout := s.cfg.HeartbeatTimeout.Nanoseconds()
	unheard := (s.cfg.Heartbeat / 2).Nanoseconds()
	s.mu.Lock()
	for c := range s.conns {
		if c.hbSlot == slot {
			batch = append(batch, c)
		}
	}
	s.mu.Unlock()
	for _, c := range batch {
		seen, pinged := c.lastSeen.Load(), c.lastPing.Load()
		if pinged > seen { // a ping is out and unanswered
			if now-pinged > timeout {
				s.stats.heartbeatTimeouts.Add(1)
				s.goClose(c, closeHeartbeat)
			}
			continue
		}
		c.trim()
		if now-seen > timeout || now-c.lastSent.Load() > unheard {
			c.lastPing.Store(now)
			c.enqueue(pingFrame)
		}
	}
	clear(batch)
	return batch[:0]
}

// goClose closes c on a goroutine of its own, so a stalled socket never
// holds up the caller.
func (s *Server) goClose(c *conn, r closeReason) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.closeWith(r)
	}()
}

var (
	closeSlow      = closeReason{protocol.CloseSlowConsumer, "slow consumer"}
	closeHeartbeat = closeReason{protocol.CloseHeartbeat, "heartbeat timeout"}
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
