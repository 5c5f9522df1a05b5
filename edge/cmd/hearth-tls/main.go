// Command hearth-tls is Hearth's TLS tier: it terminates TLS (certmagic)
// and proxies WebSocket upgrades to a pool of edges. Run with -h for its
// settings; each has a HEARTH_TLS_* environment variable.
package main

import (
	stdlog "log"

	"github.com/hearth-gateway/hearth/edge/tlstier"
	"github.com/hearth-gateway/hearth/shared/app"
)

type config struct {
	TLS   tlstier.Config
	Log   app.LogConfig
	Debug app.DebugConfig
}

func main() {
	var cfg config
	log, reg := app.Setup("tls", &cfg, &cfg.Log)
	// certmagic's ACME solvers write a few lines through the standard logger.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log)
	proxy, err := tlstier.New(cfg.TLS, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	// Run logs the wss:// URL and, in self-signed mode, the CA certificate
	// clients must trust, once it is listening.
	ctx, stop := app.SignalContext()
	defer stop()
	if err := cfg.Debug.Serve(ctx, log); err != nil {
		app.Fatal(log, err)
	}
	if err := proxy.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
