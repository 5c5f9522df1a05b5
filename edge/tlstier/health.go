package tlstier

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// newHealthClient returns the client for readiness checks. It never uses
// an environment HTTP proxy (edges are internal) and keeps one idle
// connection per edge so a check costs a request, not a handshake.
func newHealthClient(dialTimeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       time.Minute,
			ResponseHeaderTimeout: 0, // bounded by the per-check context
		},
		// A redirect from /readyz is not "ready".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe checks e once: GET /readyz, 200 means ready. It returns a reason
// when e is not ready.
func (p *Proxy) probe(ctx context.Context, e *edge) (ok bool, reason string) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.readyURL, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := p.healthClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	// Drain a little so the connection can be reused; a /readyz body is tiny.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("readyz answered %d", resp.StatusCode)
	}
	return true, ""
}

// check probes e and applies the result to the pool, logging transitions.
func (p *Proxy) check(ctx context.Context, e *edge) {
	ok, reason := p.probe(ctx, e)
	if ctx.Err() != nil {
		return // shutting down: a cancelled probe says nothing about the edge
	}
	switch p.pool.record(e, ok) {
	case healthUp:
		p.log.Info().Str("edge", e.name).Msg("edge ready: receiving new connections")
	case healthDown:
		p.log.Warn().Str("edge", e.name).Str("reason", reason).Msg("edge not ready: no new connections")
	}
}

// checkAll probes every edge concurrently and returns when all are done.
func (p *Proxy) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range p.pool.edges {
		wg.Go(func() { p.check(ctx, e) })
	}
	wg.Wait()
}

// healthLoop checks e every HealthInterval until ctx is done.
func (p *Proxy) healthLoop(ctx context.Context, e *edge) {
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.check(ctx, e)
		}
	}
}
