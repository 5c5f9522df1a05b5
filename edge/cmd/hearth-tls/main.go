// Command hearth-tls is Hearth's TLS tier: it terminates TLS (certmagic)
// and proxies WebSocket upgrades to a pool of edges. Run with -h for its
// settings; each has a HEARTH_TLS_* environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	stdlog "log"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/edge/tlstier"
	"github.com/hearth-gateway/hearth/shared/conf"
)

type config struct {
	tlstier.Config
	LogLevel string `flag:"log-level" env:"HEARTH_TLS_LOG_LEVEL" default:"info" usage:"log level: trace, debug, info, warn, error"`
}

func main() {
	log := zerolog.New(os.Stderr).With().Timestamp().Str("component", "tls").Int("pid", os.Getpid()).Logger()

	var cfg config
	if err := conf.Load(flag.CommandLine, &cfg, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Fatal().Err(err).Msg("config")
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		log.Fatal().Err(err).Msg("config")
	}
	log = log.Level(level)
	// certmagic's ACME solvers write a few lines through the standard logger.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	proxy, err := tlstier.New(cfg.Config, log, reg)
	if err != nil {
		log.Fatal().Err(err).Msg("config")
	}

	// Run logs the wss:// URL and, in self-signed mode, the CA certificate
	// clients must trust, once it is listening.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := proxy.Run(ctx); err != nil {
		log.Fatal().Err(err).Msg("tls tier")
	}
}
