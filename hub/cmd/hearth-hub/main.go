// Command hearth-hub runs the chat logic for its share of the ingress
// shards. See the README for its flags.
package main

import (
	"github.com/hearth-gateway/hearth/hub"
	"github.com/hearth-gateway/hearth/shared/app"
)

type config struct {
	Hub    hub.Config
	Broker app.BrokerConfig
	Log    app.LogConfig
	Debug  app.DebugConfig
}

func main() {
	var cfg config
	log, reg := app.Setup("hub", &cfg, &cfg.Log)
	ctx, stop := app.SignalContext()
	defer stop()
	if err := cfg.Debug.Serve(ctx, log); err != nil {
		app.Fatal(log, err)
	}
	b, err := cfg.Broker.Connect(ctx, "hearth-hub", log)
	if err != nil {
		app.Fatal(log, err)
	}
	defer b.Close()
	w, err := hub.New(cfg.Hub, hub.Hooks{}, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	if err := w.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
