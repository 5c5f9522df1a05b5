// Command hearth-load is Hearth's load generator (package loadtest).
//
//	hearth-load -scenario chat -url ws://127.0.0.1:8081/ws -secret-file .hearth/jwt-secret -out docs/bench/chat
//	hearth-load summary docs/bench/*.json     print a table of results
//	hearth-load report docs/bench/chat.json   re-render the HTML report of a result
//
// `hearth-load worker` is how the coordinator re-executes itself; it is not
// meant to be run by hand. `hearth-load -h` lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hearth-gateway/hearth/loadtest"
	"github.com/hearth-gateway/hearth/shared/conf"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "worker":
			if err := loadtest.RunWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, "hearth-load worker:", err)
				os.Exit(1)
			}
			return
		case "summary":
			os.Exit(summary(os.Args[2:]))
		case "report":
			os.Exit(report(os.Args[2:]))
		}
	}
	var cfg loadtest.Config
	if err := conf.Load(flag.CommandLine, &cfg, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r, err := loadtest.New(cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r.Command = strings.Join(os.Args, " ")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := r.Run(ctx)
	if res != nil {
		loadtest.WriteSummary(os.Stdout, []*loadtest.Result{res})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func summary(files []string) int {
	var rs []*loadtest.Result
	for _, f := range files {
		r, err := loadtest.ReadResult(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		rs = append(rs, r)
	}
	loadtest.WriteSummary(os.Stdout, rs)
	return 0
}

func report(files []string) int {
	for _, f := range files {
		r, err := loadtest.ReadResult(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out := strings.TrimSuffix(f, ".json") + ".html"
		w, err := os.Create(out)
		if err == nil {
			err = loadtest.WriteHTML(w, r)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "wrote", out)
	}
	return 0
}
