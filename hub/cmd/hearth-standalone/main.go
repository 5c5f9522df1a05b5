// Command hearth-standalone runs the whole pipeline in one process on the
// in-process broker: the TLS tier, one edge and one hub. It is the embedded
// default for a single machine (`make run` without RabbitMQ), never the
// scale-out path.
package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/edge/tlstier"
	"github.com/hearth-gateway/hearth/hub"
	"github.com/hearth-gateway/hearth/shared/app"
	"github.com/hearth-gateway/hearth/shared/broker"
)

type config struct {
	TLSListen     string   `flag:"tls-listen" env:"HEARTH_TLS_LISTEN" default:":8443" usage:"TLS address clients connect to"`
	EdgeListen    string   `flag:"edge-listen" env:"HEARTH_EDGE_LISTEN" default:"127.0.0.1:8081" usage:"the edge's plain listen address (/ws, /readyz, /metrics)"`
	AdminListen   string   `flag:"hub-admin-listen" env:"HEARTH_HUB_ADMIN_LISTEN" default:"127.0.0.1:9091" usage:"the hub's /healthz, /readyz, /metrics"`
	CADir         string   `flag:"ca-dir" env:"HEARTH_TLS_CA_DIR" default:"./.hearth/tls" usage:"local CA directory; clients trust <dir>/ca.pem"`
	Hostnames     []string `flag:"hostnames" env:"HEARTH_TLS_HOSTNAMES" default:"localhost,127.0.0.1" usage:"names the development certificate covers"`
	JWTSecret     string   `flag:"jwt-secret" env:"HEARTH_JWT_SECRET" usage:"HS256 secret for client tokens"`
	JWTSecretFile string   `flag:"jwt-secret-file" env:"HEARTH_JWT_SECRET_FILE" usage:"file holding the HS256 secret"`
	Log           app.LogConfig
}

func main() {
	var cfg config
	log, reg := app.Setup("standalone", &cfg, &cfg.Log)
	ctx, stop := app.SignalContext()
	defer stop()
	log.Warn().Msg("no RabbitMQ: running the whole pipeline in one process on the embedded in-process broker")

	b := broker.NewLocal(broker.LocalConfig{})
	defer b.Close()

	w, err := hub.New(hub.Config{ID: "hub-local", ListenAdmin: cfg.AdminListen}, hub.Hooks{}, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	e, err := edge.New(edge.Config{ID: "edge-local", Listen: cfg.EdgeListen, JWTSecret: cfg.JWTSecret, JWTSecretFile: cfg.JWTSecretFile}, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(name string, run func(context.Context) error, ctx context.Context) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	// Stop order on shutdown: the TLS tier first, then the edge drains,
	// then the hub. Each gets its own context for that.
	hubCtx, stopHub := context.WithCancel(context.Background())
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	start("hub", w.Run, hubCtx)
	select {
	case <-w.Ready():
	case <-runCtx.Done():
	}
	start("edge", e.Run, edgeCtx)
	select {
	case <-e.Ready():
	case <-runCtx.Done():
	}
	if runCtx.Err() == nil {
		p, err := tlstier.New(tlstier.Config{
			Listen:    cfg.TLSListen,
			Edges:     []string{"http://" + e.Addr().String()},
			CADir:     cfg.CADir,
			Hostnames: cfg.Hostnames,
		}, log, reg)
		if err != nil {
			errs <- err
			cancel()
		} else {
			start("tls", p.Run, runCtx)
		}
	}
	<-runCtx.Done()
	cancel()
	stopEdge()
	stopHub()
	wg.Wait()
	close(errs)
	for err := range errs {
		app.Fatal(log, err)
	}
}
