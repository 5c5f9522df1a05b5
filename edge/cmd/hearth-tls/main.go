// Command hearth-tls is Hearth's TLS tier: it terminates TLS (certmagic)
// and proxies WebSocket upgrades to a pool of edges. Run with -h for its
// settings; each has a HEARTH_TLS_* environment variable.
package main

import (
	"errors"
	"flag"
	"fmt"
	stdlog "log"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearth-gateway/hearth/edge/tlstier"
	"github.com/hearth-gateway/hearth/shared/app"
	"github.com/hearth-gateway/hearth/shared/conf"
)

type config struct {
	TLS tlstier.Config
	Log app.LogConfig
}

func main() {
	var cfg config
	if err := conf.Load(flag.CommandLine, &cfg, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := cfg.Log.Logger("tls")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// certmagic's ACME solvers write a few lines through the standard logger.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	proxy, err := tlstier.New(cfg.TLS, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	// Run logs the wss:// URL and, in self-signed mode, the CA certificate
	// clients must trust, once it is listening.
	ctx, stop := app.SignalContext()
	defer stop()
	if err := proxy.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
