// Package app holds what every Hearth binary's main does the same way:
// logging flags, the broker flags, and a context cancelled by SIGINT or
// SIGTERM. It keeps mains thin.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/broker"
	"github.com/hearth-gateway/hearth/shared/conf"
)

// LogConfig selects the log level and format.
type LogConfig struct {
	// Level is a zerolog level name. Zero value means "info".
	Level string `flag:"log-level" env:"HEARTH_LOG_LEVEL" default:"info" usage:"log level: debug, info, warn, error"`
	// Format is "json" or "console". Zero value means "json".
	Format string `flag:"log-format" env:"HEARTH_LOG_FORMAT" default:"json" usage:"log format: json or console"`
}

// Logger builds the process logger, tagged with component and pid.
func (c LogConfig) Logger(component string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if c.Level != "" {
		l, err := zerolog.ParseLevel(c.Level)
		if err != nil {
			return zerolog.Nop(), fmt.Errorf("log level %q: %w", c.Level, err)
		}
		lvl = l
	}
	var w io.Writer = os.Stderr
	switch c.Format {
	case "", "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json or console", c.Format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("component", component).Int("pid", os.Getpid()).Logger(), nil
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM. A second
// signal exits at once.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// Fatal prints err for a main and exits with status 1.
func Fatal(log zerolog.Logger, err error) {
	log.Error().Err(err).Msg("exiting")
	os.Exit(1)
}

// BrokerConfig selects the RabbitMQ a process connects to.
type BrokerConfig struct {
	// URLs are tried in turn, so a cluster's nodes can all be listed.
	// Zero value means amqp://guest:guest@127.0.0.1:5672/.
	URLs []string `flag:"amqp-url" env:"AMQP_URL" default:"amqp://guest:guest@127.0.0.1:5672/" usage:"RabbitMQ URL(s), comma-separated for a cluster"`
}

// Connect dials RabbitMQ, retrying until ctx is done; once connected the
// broker reconnects by itself for the rest of the process's life.
func (c BrokerConfig) Connect(ctx context.Context, name string, log zerolog.Logger) (broker.Broker, error) {
	urls := c.URLs
	if len(urls) == 0 {
		urls = []string{"amqp://guest:guest@127.0.0.1:5672/"}
	}
	b, err := broker.NewAMQP(ctx, broker.AMQPConfig{URLs: urls, Name: name, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	return b, nil
}

// Setup is the start of every main: it loads cfg (a pointer to the binary's
// config struct, whose Log field is logCfg) from the command line and the
// environment, builds the logger for component, and a Prometheus registry
// with the Go and process collectors. It exits on a configuration error.
func Setup(component string, cfg any, logCfg *LogConfig) (zerolog.Logger, *prometheus.Registry) {
	if err := conf.Load(flag.CommandLine, cfg, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := logCfg.Logger(component)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return log, reg
}

// DebugConfig holds the profiling endpoint every binary can expose.
type DebugConfig struct {
	// PprofListen serves net/http/pprof (/debug/pprof/) on this address.
	// Zero value means off; bind it to loopback: profiles reveal internals.
	PprofListen string `flag:"pprof-listen" env:"HEARTH_PPROF_LISTEN" usage:"address for /debug/pprof/ (off when empty; keep it on loopback)"`
}

// Serve starts the pprof listener when configured; it closes when ctx is
// done.
func (c DebugConfig) Serve(ctx context.Context, log zerolog.Logger) error {
	if c.PprofListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", c.PprofListen)
	if err != nil {
		return fmt.Errorf("pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening")
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return nil
}
