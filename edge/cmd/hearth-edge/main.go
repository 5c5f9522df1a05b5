// Command hearth-edge holds client WebSocket connections and forwards their
// frames to the hubs over RabbitMQ. See the README for its flags.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/shared/app"
	"github.com/hearth-gateway/hearth/shared/conf"
)

type config struct {
	Edge   edge.Config
	Broker app.BrokerConfig
	Log    app.LogConfig
}

func main() {
	var cfg config
	if err := conf.Load(flag.CommandLine, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := cfg.Log.Logger("edge")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := app.SignalContext()
	defer stop()
	b, err := cfg.Broker.Connect(ctx, "hearth-edge", log)
	if err != nil {
		app.Fatal(log, err)
	}
	defer b.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := edge.New(cfg.Edge, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	if err := srv.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
