// Command hearth-chat is a small terminal client for a Hearth gateway, and
// a development token minter.
//
//	hearth-chat token -secret-file .hearth/jwt.secret -user alice -ttl 24h
//	hearth-chat chat -url wss://localhost:8443/ws -ca .hearth/tls/ca.pem -token "$T" -room general
//
// Run "hearth-chat <command> -h" for a command's flags. Flags use the
// standard flag package rather than shared/conf because everything under
// protocol/ depends on package protocol alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// errUsage marks a command line that could not be parsed (exit status 2).
var errUsage = errors.New("usage")

// run executes one command and returns the process exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "token":
		err = runToken(args[1:], stdout, stderr, env)
	case "chat":
		err = runChat(ctx, args[1:], stdin, stdout, stderr, env)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "hearth-chat: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "hearth-chat:", err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprint(w, `hearth-chat: a terminal client for a Hearth gateway.

Commands:
  token   print a signed HS256 token for a user (development)
  chat    join a room, print its messages, send stdin's lines

Run "hearth-chat <command> -h" for the command's flags.
`)
}

// parse parses args on fs, mapping parse failures to errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(env func(string) (string, bool), key, def string) string {
	if v, ok := env(key); ok {
		return v
	}
	return def
}
