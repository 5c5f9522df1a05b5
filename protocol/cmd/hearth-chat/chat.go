package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/protocol/client"
)

const chatHelp = `Type a line to send it to the current room. Commands:
  /join ROOM    join ROOM and make it the current room
  /leave [ROOM] leave ROOM (default: the current room)
  /room ROOM    send to ROOM, which must be joined
  /rooms        list joined rooms
  /history [N]  show the current room's last N messages (default 20, at most 500)
  /read         mark the current room read up to its last message shown
  /quit         leave (so does end of input)
  //text        send "/text"
`

// defaultHistory is how many messages /history shows without N.
const defaultHistory = 20

func runChat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("hearth-chat chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr(env, "HEARTH_URL", "wss://localhost:8443/ws"), "edge or TLS tier WebSocket endpoint (env HEARTH_URL)")
	ca := fs.String("ca", envOr(env, "HEARTH_CA", ""), "PEM file of the CA to trust for wss://, e.g. .hearth/tls/ca.pem; empty means system roots (env HEARTH_CA)")
	token := fs.String("token", "", "JWT to connect with (env HEARTH_TOKEN)")
	user := fs.String("user", "", "development: mint a token for this user with the secret instead of -token")
	ttl := fs.Duration("ttl", time.Hour, "development: lifetime of minted tokens (a new one is minted at every reconnection)")
	var sf secretFlags
	sf.register(fs)
	room := fs.String("room", "general", "room to join at start; empty joins none")
	origin := fs.String("origin", "", "Origin header to send; empty sends none")
	timeout := fs.Duration("timeout", client.DefaultRequestTimeout, "bound on each request and connection attempt")
	verbose := fs.Bool("v", false, "print acknowledgements and the client's logs")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: hearth-chat chat [-url U] [-ca F] (-token T | -user U -secret-file F) [-room R]\n\n"+
			"Joins a room, prints its messages as \"[room #seq] user: text\", sends each line of input.\n\n"+chatHelp+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *token == "" && *user == "" {
		*token = envOr(env, "HEARTH_TOKEN", "") // not a flag default: -h would print it
	}

	// A line typed while reconnecting is sent once the connection is back
	// (within -timeout), and never twice.
	cfg := client.Config{URL: *url, CAFile: *ca, Origin: *origin, RequestTimeout: *timeout, RetryPublish: true}
	if *verbose {
		cfg.Logger = zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).
			Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	switch {
	case *token != "" && *user != "":
		return fmt.Errorf("%w: set -token or -user, not both", errUsage)
	case *token != "":
		cfg.Token = *token
	case *user != "":
		secret, err := sf.load(env)
		if err != nil {
			return err
		}
		if _, err := mintToken(secret, *user, *ttl, time.Now()); err != nil {
			return err
		}
		cfg.TokenFunc = func(context.Context) (string, error) { return mintToken(secret, *user, *ttl, time.Now()) }
	default:
		return fmt.Errorf("%w: need -token (or HEARTH_TOKEN), or -user with a secret", errUsage)
	}

	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	ch := &chat{c: c, out: stdout, info: stderr, verbose: *verbose, timeout: *timeout, shown: map[string]uint64{}}
	select { // Dial's EventConnected, so that it prints before the join
	case ev := <-c.Events():
		ch.printEvent(ev)
	default:
	}
	if *room != "" {
		if err := ch.join(ctx, *room); err != nil {
			return err
		}
	}
	fmt.Fprintln(stderr, "* type /help for commands")
	return ch.run(ctx, readLines(ctx, stdin))
}

// readLines sends the lines of r on the returned channel, which is closed
// at end of input. The goroutine may stay blocked reading after ctx ends:
// a terminal read cannot be interrupted portably, and main exits then.
func readLines(ctx context.Context, r io.Reader) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
			fmt.Fprintln(os.Stderr, "hearth-chat: reading input:", err)
		}
	}()
	return lines
}

// chat is one terminal session: it prints what arrives and sends what is typed.
type chat struct {
	c       *client.Client
	out     io.Writer // room messages and presence
	info    io.Writer // connection state, errors, acks
	verbose bool
	timeout time.Duration     // bounds a publish, retries included
	room    string            // where typed lines go
	shown   map[string]uint64 // room → seq of the last message printed, for /read
}

// run prints messages and events and handles input until /quit, end of
// input, ctx, or the client stopping (then its reason is returned).
func (ch *chat) run(ctx context.Context, lines <-chan string) error {
	msgs, events := ch.c.Messages(), ch.c.Events()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			ch.printFrame(f)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			ch.printEvent(ev)
		case <-ch.c.Done():
			for ev := range events {
				ch.printEvent(ev)
			}
			return ch.c.Err()
		case line, ok := <-lines:
			if !ok || ch.handle(ctx, line) {
				return nil
			}
		}
	}
}

// handle runs one input line and reports whether to quit.
func (ch *chat) handle(ctx context.Context, line string) (quit bool) {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return false
	}
	if strings.HasPrefix(line, "/") && !strings.HasPrefix(line, "//") {
		cmd, arg, _ := strings.Cut(line[1:], " ")
		arg = strings.TrimSpace(arg)
		switch cmd {
		case "quit", "q", "exit":
			return true
		case "join", "j":
			if arg == "" {
				fmt.Fprintln(ch.info, "! usage: /join ROOM")
			} else if err := ch.join(ctx, arg); err != nil {
				fmt.Fprintln(ch.info, "!", err)
			}
		case "leave":
			ch.leave(ctx, arg)
		case "room":
			switch {
			case arg == "":
				fmt.Fprintf(ch.info, "* current room: %q\n", ch.room)
			case slices.Contains(ch.c.Rooms(), arg):
				ch.room = arg
				fmt.Fprintf(ch.info, "* now sending to %s\n", arg)
			default:
				fmt.Fprintf(ch.info, "! not in %s: /join it first\n", arg)
			}
		case "rooms":
			rooms := ch.c.Rooms()
			slices.Sort(rooms)
			fmt.Fprintf(ch.info, "* joined: %s\n", strings.Join(rooms, ", "))
		case "history":
			ch.history(ctx, arg)
		case "read":
			ch.read(ctx)
		case "help", "h", "?":
			fmt.Fprint(ch.info, chatHelp)
		default:
			fmt.Fprintf(ch.info, "! unknown command /%s; /help lists them\n", cmd)
		}
		return false
	}
	line = strings.TrimPrefix(line, "/") // "//text" sends "/text"
	if ch.room == "" {
		fmt.Fprintln(ch.info, "! no current room: /join one")
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, ch.timeout)
	seq, err := ch.c.Publish(pctx, ch.room, []byte(line))
	cancel()
	switch {
	case err != nil:
		fmt.Fprintf(ch.info, "! not sent to %s: %v\n", ch.room, err)
	case ch.verbose:
		fmt.Fprintf(ch.info, "[%s] ack #%d\n", ch.room, seq)
	}
	return false
}

func (ch *chat) join(ctx context.Context, room string) error {
	j, err := ch.c.Join(ctx, room)
	if err != nil {
		return err
	}
	ch.room = room
	members := slices.Clone(j.Members)
	slices.Sort(members)
	fmt.Fprintf(ch.info, "* joined %s (at #%d; members: %s)\n", room, j.Seq, sanitize(strings.Join(members, ", ")))
	return nil
}

func (ch *chat) leave(ctx context.Context, room string) {
	if room == "" {
		room = ch.room
	}
	if room == "" {
		fmt.Fprintln(ch.info, "! usage: /leave ROOM")
		return
	}
	if err := ch.c.Leave(ctx, room); err != nil {
		fmt.Fprintln(ch.info, "!", err)
		return
	}
	fmt.Fprintf(ch.info, "* left %s\n", room)
	if room == ch.room {
		ch.room = ""
		if rooms := ch.c.Rooms(); len(rooms) > 0 {
			slices.Sort(rooms)
			ch.room = rooms[0]
			fmt.Fprintf(ch.info, "* now sending to %s\n", ch.room)
		}
	}
}

// history prints the current room's last messages, oldest first.
func (ch *chat) history(ctx context.Context, arg string) {
	n := defaultHistory
	if arg != "" {
		var err error
		if n, err = strconv.Atoi(arg); err != nil || n < 1 || n > protocol.MaxHistoryLimit {
			fmt.Fprintf(ch.info, "! usage: /history [N], N from 1 to %d\n", protocol.MaxHistoryLimit)
			return
		}
	}
	if ch.room == "" {
		fmt.Fprintln(ch.info, "! no current room: /join one")
		return
	}
	p, err := ch.c.History(ctx, ch.room, client.HistoryQuery{Limit: n})
	if err != nil {
		fmt.Fprintln(ch.info, "!", err)
		return
	}
	fmt.Fprintf(ch.info, "* last %d messages of %s (now at #%d):\n", len(p.Messages), ch.room, p.Seq)
	for _, f := range p.Messages {
		fmt.Fprintln(ch.out, formatMessage(f))
	}
}

// read marks the current room read up to the last message printed.
func (ch *chat) read(ctx context.Context) {
	seq := ch.shown[ch.room]
	switch {
	case ch.room == "":
		fmt.Fprintln(ch.info, "! no current room: /join one")
	case seq == 0:
		fmt.Fprintf(ch.info, "! nothing to mark read in %s yet\n", ch.room)
	default:
		if err := ch.c.MarkRead(ctx, ch.room, seq); err != nil {
			fmt.Fprintln(ch.info, "!", err)
		}
	}
}

// printFrame prints what Messages delivered. Messages that were recovered
// (a join's recent history, what was missed during a reconnection) look
// like live ones: the client delivers each once and in order either way.
func (ch *chat) printFrame(f protocol.Frame) {
	switch f.Type {
	case protocol.TypeMessage:
		fmt.Fprintln(ch.out, formatMessage(f))
		if f.Seq != 0 {
			ch.shown[f.Room] = f.Seq
		}
	case protocol.TypePresence:
		fmt.Fprintln(ch.out, formatPresence(f))
	case protocol.TypeTypingEvent:
		fmt.Fprintf(ch.out, "[%s] * %s is typing\n", sanitize(f.Room), sanitize(f.User))
	case protocol.TypeReceipt:
		if ch.verbose {
			fmt.Fprintf(ch.out, "[%s] * %s read up to #%d\n", sanitize(f.Room), sanitize(f.User), f.Seq)
		}
	}
}

// formatMessage renders a message frame: "[general #12] bob: hi".
func formatMessage(f protocol.Frame) string {
	return fmt.Sprintf("[%s #%d] %s: %s", sanitize(f.Room), f.Seq, sanitize(f.From), sanitize(string(f.Body)))
}

// formatPresence renders a presence frame: "[general] * bob joined".
func formatPresence(f protocol.Frame) string {
	what := f.Event
	switch f.Event {
	case protocol.EventJoin:
		what = "joined"
	case protocol.EventLeave:
		what = "left"
	}
	return fmt.Sprintf("[%s] * %s %s", sanitize(f.Room), sanitize(f.User), sanitize(what))
}

func (ch *chat) printEvent(ev client.Event) {
	switch ev.Kind {
	case client.EventConnected:
		fmt.Fprintf(ch.info, "* connected as %s (conn %s)\n", sanitize(ev.Welcome.User), sanitize(ev.Welcome.Conn))
	case client.EventDisconnected:
		fmt.Fprintf(ch.info, "* disconnected: %v\n", ev.Err)
	case client.EventReconnecting:
		fmt.Fprintf(ch.info, "* reconnecting in %v (attempt %d)\n", ev.Delay.Round(time.Millisecond), ev.Attempt)
	case client.EventRejoined:
		fmt.Fprintf(ch.info, "* rejoined %s at #%d\n", ev.Room, ev.Frame.Seq)
	case client.EventRejoinFailed:
		fmt.Fprintf(ch.info, "! could not rejoin %s: %v\n", ev.Room, ev.Err)
		if ev.Room == ch.room {
			ch.room = ""
		}
	case client.EventStopped:
		fmt.Fprintf(ch.info, "! stopped: %v\n", ev.Err)
	case client.EventOverflow:
		fmt.Fprintf(ch.info, "! falling behind: %d messages dropped so far\n", ev.Dropped)
	case client.EventServerError:
		fmt.Fprintf(ch.info, "! server: %v\n", ev.Err)
	case client.EventReset:
		fmt.Fprintf(ch.info, "! %s: messages after #%d are lost to this client (no longer retained); continuing with the oldest retained\n",
			sanitize(ev.Room), ev.Seq)
	}
}

// sanitize makes untrusted text safe to print on a terminal: invalid UTF-8
// and control characters (escape sequences) are replaced.
func sanitize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return '↵'
		case r == '\t':
			return ' '
		case unicode.IsControl(r), r == '\u2028', r == '\u2029':
			return '\uFFFD'
		}
		return r
	}, s)
}
