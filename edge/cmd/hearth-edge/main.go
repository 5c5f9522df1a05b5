// Command hearth-edge holds client WebSocket connections and forwards their
// frames to the hubs over RabbitMQ. See the README for its flags.
package main

import (
	"github.com/hearth-gateway/hearth/edge"
	"github.com/hearth-gateway/hearth/shared/app"
)

type config struct {
	Edge   edge.Config
	Broker app.BrokerConfig
	Log    app.LogConfig
	Debug  app.DebugConfig
}

func main() {
	var cfg config
	log, reg := app.Setup("edge", &cfg, &cfg.Log)
	ctx, stop := app.SignalContext()
	defer stop()
	if err := cfg.Debug.Serve(ctx, log); err != nil {
		app.Fatal(log, err)
	}
	b, err := cfg.Broker.Connect(ctx, "hearth-edge", log)
	if err != nil {
		app.Fatal(log, err)
	}
	defer b.Close()
	srv, err := edge.New(cfg.Edge, b, log, reg)
	if err != nil {
		app.Fatal(log, err)
	}
	if err := srv.Run(ctx); err != nil {
		app.Fatal(log, err)
	}
}
