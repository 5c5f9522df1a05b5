// Command hearth-hub runs the chat logic for its share of the ingress
// shards. See the README for its flags.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearth-gateway/hearth/hub"
	"github.com/hearth-gateway/hearth/shared/app"
	"github.com/hearth-gateway/hearth/shared/conf"
)

type config struct {
	Hub    hub.Config
	Broker app.BrokerConfig
	Log    app.LogConfig
}

func main() {
	var cfg config
	if err := conf.Load(flag.CommandLine, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := cfg.Log.Logger("hub")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := app.SignalContext()
	defer stop()
	b, err := cfg.Broker.Connect(ctx, "hearth-hub", log)
	if err != nil {
		app.Fatal(log, err)
	}
	defer b.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := hub.New(cfg.Hub, hub.Hooks{}, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	if err := w.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
