package loadtest

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
)

// Scenario names a built-in load shape.
type Scenario string

// The built-in scenarios.
const (
	// ScenarioIdle opens Conns connections, joins each to one of Rooms rooms
	// and holds them: it reports the edges' RSS per connection and idle CPU.
	ScenarioIdle Scenario = "idle"
	// ScenarioFanout puts Members connections in one room; Publishers of
	// them publish at a rate that steps up (StepStart × StepFactor^step)
	// until a step loses a message, disconnects a member, gets fewer than
	// 90 % of its publishes acknowledged within the step (the pipeline
	// held its publishers back), or its p99 goes over StepP99. It reports
	// deliveries/s and the edges' CPU per delivery.
	ScenarioFanout Scenario = "fanout"
	// ScenarioChat puts Members connections in each of Rooms rooms, all of
	// them publishing, at Rate publishes/s in total for Duration.
	ScenarioChat Scenario = "chat"
	// ScenarioStorm connects Conns connections as fast as DialConcurrency
	// allows and reports connections/s and errors.
	ScenarioStorm Scenario = "storm"
	// ScenarioAMQPBaseline publishes to and consumes from a temporary
	// RabbitMQ queue with amqp091-go, no Hearth involved: the broker's own
	// ceiling on this machine.
	ScenarioAMQPBaseline Scenario = "amqp-baseline"
)

// Scenarios lists the built-in scenarios in the order make bench-load runs them.
var Scenarios = []Scenario{ScenarioAMQPBaseline, ScenarioStorm, ScenarioIdle, ScenarioChat, ScenarioFanout}

// Config is one run. Flags and environment variables map onto it through
// package conf (`hearth-load -h`). Each field's comment gives its zero-value
// meaning; normalize applies the scenario's defaults.
type Config struct {
	// Scenario is the load shape. Zero value means chat.
	Scenario Scenario `flag:"scenario" env:"HEARTH_LOAD_SCENARIO" default:"chat" usage:"idle, fanout, chat, storm or amqp-baseline"`
	// Name labels the run in reports. Zero value means the scenario's name.
	Name string `flag:"name" env:"HEARTH_LOAD_NAME" usage:"label of the run in reports; empty means the scenario"`
	// URLs are the WebSocket endpoints; connection i uses URLs[i mod len].
	// ws:// edges directly, or wss:// the TLS tier. Zero value means
	// ws://127.0.0.1:8081/ws.
	URLs []string `flag:"url" env:"HEARTH_LOAD_URL" default:"ws://127.0.0.1:8081/ws" usage:"comma-separated WebSocket URLs (ws:// edges round-robin, or wss:// the TLS tier)"`
	// CAFile is a PEM CA that wss:// servers are checked against. Zero
	// value means the system roots.
	CAFile string `flag:"ca" env:"HEARTH_LOAD_CA" usage:"PEM CA file for wss:// (e.g. .hearth/tls/ca.pem)"`
	// Secret and SecretFile give the HS256 JWT secret tokens are minted
	// with; the file wins. One of them is required for WebSocket scenarios.
	Secret     string `flag:"secret" env:"HEARTH_LOAD_SECRET" usage:"JWT HS256 secret"`
	SecretFile string `flag:"secret-file" env:"HEARTH_LOAD_SECRET_FILE" usage:"file holding the JWT HS256 secret (e.g. .hearth/jwt-secret)"`

	// Conns is the number of connections. Zero value means Rooms × Members
	// (10,000 for idle and storm).
	Conns int `flag:"conns" env:"HEARTH_LOAD_CONNS" usage:"connections; 0 means rooms×members, or 10000 for idle and storm"`
	// Rooms is the number of rooms; connection i joins room i mod Rooms.
	// Zero value means 100 for idle, 500 for chat, 1 for fanout.
	Rooms int `flag:"rooms" env:"HEARTH_LOAD_ROOMS" usage:"rooms; 0 means 100 for idle, 500 for chat (fanout: always 1)"`
	// Members is the number of connections per room. Zero value means 10
	// for chat and 10,000 for fanout.
	Members int `flag:"members" env:"HEARTH_LOAD_MEMBERS" usage:"connections per room; 0 means 10 for chat, 10000 for fanout"`
	// ConnsPerUser makes consecutive connections share a user id. Presence
	// and the joined member list are per user and grow with a room's
	// distinct users; fan-out to connections does not. Zero value means 1
	// (every connection its own user), 100 for fanout.
	ConnsPerUser int `flag:"conns-per-user" env:"HEARTH_LOAD_CONNS_PER_USER" usage:"consecutive connections sharing one user id; 0 means 1, or 100 for fanout"`
	// Publishers is the number of publishing connections. Zero value means
	// every connection for chat and 10 for fanout.
	Publishers int `flag:"publishers" env:"HEARTH_LOAD_PUBLISHERS" usage:"publishing connections; 0 means all for chat, 10 for fanout"`
	// Rate is the total publish rate in messages/s (chat). Zero value means 1000.
	Rate float64 `flag:"rate" env:"HEARTH_LOAD_RATE" usage:"chat: total publishes per second; 0 means 1000"`
	// RatePerClient, when set, overrides Rate: Rate = RatePerClient × Publishers.
	RatePerClient float64 `flag:"rate-per-client" env:"HEARTH_LOAD_RATE_PER_CLIENT" usage:"publishes per second per publishing connection (overrides -rate)"`
	// Payload is the message body size in bytes, at least 22 (the tool's
	// header: send time, step, publisher, counter). Zero value means 64.
	Payload int `flag:"payload" env:"HEARTH_LOAD_PAYLOAD" usage:"message body bytes, >= 22; 0 means 64"`
	// Duration is how long publishing (chat), holding (idle) or the whole
	// step sequence (fanout, at most) lasts. Zero value means 30s
	// (fanout: MaxSteps × StepDuration).
	Duration time.Duration `flag:"duration" env:"HEARTH_LOAD_DURATION" usage:"publishing / holding time; 0 means 30s"`
	// Ramp spreads the connection attempts over this long; zero connects as
	// fast as DialConcurrency allows. Negative (the flag's default) means
	// 10s, or 0 for storm.
	Ramp time.Duration `flag:"ramp" env:"HEARTH_LOAD_RAMP" default:"-1ns" usage:"spread connection attempts over this long; 0 = as fast as possible; default 10s, or 0 for storm"`
	// DialConcurrency bounds connection attempts in flight per worker. Zero value means 256.
	DialConcurrency int `flag:"dial-concurrency" env:"HEARTH_LOAD_DIAL_CONCURRENCY" usage:"connection attempts in flight per worker; 0 means 256"`
	// ConnectTimeout bounds one handshake, welcome included. Zero value means 10s.
	ConnectTimeout time.Duration `flag:"connect-timeout" env:"HEARTH_LOAD_CONNECT_TIMEOUT" usage:"bound on one WebSocket handshake + welcome; 0 means 10s"`
	// JoinTimeout bounds the wait for every joined reply after the last
	// connection opened. Zero value means 60s.
	JoinTimeout time.Duration `flag:"join-timeout" env:"HEARTH_LOAD_JOIN_TIMEOUT" usage:"bound on waiting for joined replies; 0 means 60s"`
	// Grace is how long after publishing stops the tool waits for the last
	// acks and deliveries before counting losses. Zero value means 3s.
	Grace time.Duration `flag:"grace" env:"HEARTH_LOAD_GRACE" usage:"wait for late acks/deliveries after publishing stops; 0 means 3s"`
	// Settle is how long idle waits after the last join before sampling the
	// edges' RSS. Zero value means 5s.
	Settle time.Duration `flag:"settle" env:"HEARTH_LOAD_SETTLE" usage:"idle: wait this long after joins before sampling RSS; 0 means 5s"`

	// StepStart, StepFactor, StepDuration, MaxSteps and StepP99 shape the
	// fan-out steps. Zero values mean 5 msgs/s, ×1.6, 5s, 10 steps, 100ms.
	StepStart    float64       `flag:"step-start" env:"HEARTH_LOAD_STEP_START" usage:"fanout: publishes/s of the first step; 0 means 5"`
	StepFactor   float64       `flag:"step-factor" env:"HEARTH_LOAD_STEP_FACTOR" usage:"fanout: rate multiplier per step; 0 means 1.6"`
	StepDuration time.Duration `flag:"step-duration" env:"HEARTH_LOAD_STEP_DURATION" usage:"fanout: length of one step; 0 means 5s"`
	MaxSteps     int           `flag:"max-steps" env:"HEARTH_LOAD_MAX_STEPS" usage:"fanout: most steps; 0 means 10"`
	StepP99      time.Duration `flag:"step-p99" env:"HEARTH_LOAD_STEP_P99" usage:"fanout: a step whose p99 exceeds this fails; 0 means 100ms"`

	// Workers is the number of worker processes. Zero value means
	// ceil(Conns / 15000).
	Workers int `flag:"workers" env:"HEARTH_LOAD_WORKERS" usage:"worker processes; 0 means ceil(conns/15000)"`
	// SourceIPs spreads connections to a loopback target over source
	// addresses 127.0.0.2 … 127.0.0.(1+SourceIPs), each with its own
	// ephemeral port range. Zero value means 8; -1 lets the kernel choose.
	SourceIPs int `flag:"source-ips" env:"HEARTH_LOAD_SOURCE_IPS" usage:"loopback source addresses 127.0.0.2.. to spread over; 0 means 8; -1 lets the kernel choose"`

	// EdgePIDs and EdgePIDFiles name the edge processes whose CPU and RSS
	// are sampled from /proc.
	EdgePIDs     []string `flag:"edge-pids" env:"HEARTH_LOAD_EDGE_PIDS" usage:"comma-separated edge PIDs to sample from /proc"`
	EdgePIDFiles []string `flag:"edge-pid-files" env:"HEARTH_LOAD_EDGE_PID_FILES" usage:"comma-separated files holding edge PIDs"`
	// Watch names other processes to sample, as name=PID or name=@pidfile
	// (hubs, the TLS tier, RabbitMQ).
	Watch []string `flag:"watch" env:"HEARTH_LOAD_WATCH" usage:"other processes to sample: name=PID or name=@pidfile, comma-separated"`

	// AMQPURL is the broker of amqp-baseline. Zero value means amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string `flag:"amqp-url" env:"AMQP_URL" default:"amqp://guest:guest@127.0.0.1:5672/" usage:"amqp-baseline: RabbitMQ URL"`
	// AMQPPublishers is the number of publishing channels. Zero value means 4.
	AMQPPublishers int `flag:"amqp-publishers" env:"HEARTH_LOAD_AMQP_PUBLISHERS" usage:"amqp-baseline: publishing channels; 0 means 4"`
	// AMQPWindow bounds unconfirmed publishes per channel; 1 waits for each
	// confirm like a single Hearth publish does. Zero value means 64.
	AMQPWindow int `flag:"amqp-window" env:"HEARTH_LOAD_AMQP_WINDOW" usage:"amqp-baseline: unconfirmed publishes per channel; 1 = wait for each; 0 means 64"`
	// AMQPQueueType is classic or quorum. Zero value means classic.
	AMQPQueueType string `flag:"amqp-queue-type" env:"HEARTH_LOAD_AMQP_QUEUE_TYPE" default:"classic" usage:"amqp-baseline: classic or quorum"`
	// AMQPPersistent publishes with delivery mode 2.
	AMQPPersistent bool `flag:"amqp-persistent" env:"HEARTH_LOAD_AMQP_PERSISTENT" usage:"amqp-baseline: persistent messages (delivery mode 2)"`

	// Out is the path prefix of the result: Out.json and Out.html. Zero
	// value means ./hearth-load-<scenario>.
	Out string `flag:"out" env:"HEARTH_LOAD_OUT" usage:"write <out>.json and <out>.html; empty means ./hearth-load-<name>"`
	// Timeout is the hard deadline of the whole run. Zero value means the
	// scenario's planned length plus two minutes.
	Timeout time.Duration `flag:"timeout" env:"HEARTH_LOAD_TIMEOUT" usage:"hard deadline of the whole run; 0 means its planned length + 2m"`
	// Quiet turns off the progress line.
	Quiet bool `flag:"quiet" env:"HEARTH_LOAD_QUIET" usage:"no progress line"`
	// Check also records every publish, ack, join and delivery and runs
	// them through shared/checker at the end: lost, duplicated, reordered
	// and diverged messages fail the run. Chat and fanout only, and refused
	// when the run would record more than 5,000,000 events. Zero value
	// means off.
	Check bool `flag:"check" env:"HEARTH_LOAD_CHECK" usage:"verify every delivery with shared/checker (chat, fanout; at most 5M events); a failed verdict exits non-zero"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("loadtest: invalid config")

// bodyHeader is the size of the tool's header at the start of every body:
// send time (8), step (2), publisher (4), counter (8).
const bodyHeader = 22

// connsPerWorker is the default share of one worker process: below the
// 20,000 open files a process may have here, with room for the rest.
const connsPerWorker = 15000

// normalize applies defaults and validates. It is idempotent.
func (c *Config) normalize() error {
	if c.Scenario == "" {
		c.Scenario = ScenarioChat
	}
	switch c.Scenario {
	case ScenarioIdle, ScenarioFanout, ScenarioChat, ScenarioStorm, ScenarioAMQPBaseline:
	default:
		return fmt.Errorf("%w: unknown scenario %q", ErrConfig, c.Scenario)
	}
	if c.Check && !c.publishes() {
		return fmt.Errorf("%w: -check needs a scenario that publishes (chat or fanout)", ErrConfig)
	}
	if c.Name == "" {
		c.Name = string(c.Scenario)
	}
	if c.Out == "" {
		c.Out = "hearth-load-" + c.Name
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	if c.Payload < bodyHeader {
		return fmt.Errorf("%w: payload %d is below the %d-byte header", ErrConfig, c.Payload, bodyHeader)
	}
	if c.Scenario == ScenarioAMQPBaseline {
		return c.normalizeAMQP()
	}
	switch c.Scenario {
	case ScenarioIdle:
		def(&c.Rooms, 100)
		def(&c.Conns, 10000)
		def(&c.Members, ceilDiv(c.Conns, c.Rooms))
	case ScenarioStorm:
		def(&c.Rooms, 1)
		def(&c.Conns, 10000)
		def(&c.Members, c.Conns)
	case ScenarioChat:
		def(&c.Rooms, 500)
		def(&c.Members, 10)
		def(&c.Conns, c.Rooms*c.Members)
		def(&c.Publishers, c.Conns)
	case ScenarioFanout:
		c.Rooms = 1
		def(&c.Members, 10000)
		def(&c.Conns, c.Members)
		def(&c.Publishers, 10)
		def(&c.ConnsPerUser, 100)
	}
	def(&c.ConnsPerUser, 1)
	if c.Ramp < 0 {
		c.Ramp = 10 * time.Second
		if c.Scenario == ScenarioStorm {
			c.Ramp = 0
		}
	}
	def(&c.DialConcurrency, 256)
	defDur(&c.ConnectTimeout, 10*time.Second)
	defDur(&c.JoinTimeout, 60*time.Second)
	defDur(&c.Grace, 3*time.Second)
	defDur(&c.Settle, 5*time.Second)
	if c.StepStart <= 0 {
		c.StepStart = 5
	}
	if c.StepFactor <= 1 {
		c.StepFactor = 1.6
	}
	defDur(&c.StepDuration, 5*time.Second)
	def(&c.MaxSteps, 10)
	defDur(&c.StepP99, 100*time.Millisecond)
	if c.Scenario == ScenarioFanout && c.MaxSteps > maxPhases {
		return fmt.Errorf("%w: at most %d steps", ErrConfig, maxPhases)
	}
	if c.Publishers > c.Conns {
		c.Publishers = c.Conns
	}
	if c.Scenario == ScenarioChat {
		if c.RatePerClient > 0 {
			c.Rate = c.RatePerClient * float64(c.Publishers)
		}
		if c.Rate <= 0 {
			c.Rate = 1000
		}
	}
	if c.Workers <= 0 {
		c.Workers = max(1, ceilDiv(c.Conns, connsPerWorker))
	}
	if c.Workers > c.Conns {
		c.Workers = c.Conns
	}
	if c.SourceIPs == 0 {
		c.SourceIPs = 8
	}
	if c.SourceIPs > 250 {
		return fmt.Errorf("%w: at most 250 source addresses", ErrConfig)
	}
	if c.Conns <= 0 || c.Rooms <= 0 || c.Members <= 0 {
		return fmt.Errorf("%w: conns, rooms and members must be positive", ErrConfig)
	}
	if len(c.URLs) == 0 {
		c.URLs = []string{"ws://127.0.0.1:8081/ws"}
	}
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("%w: url %q: want ws://host:port/ws or wss://…", ErrConfig, s)
		}
	}
	if c.Check {
		if n := c.checkEvents(); n > maxCheckEvents {
			return fmt.Errorf("%w: -check would record about %s events (publishes × (2 + members) + 2 × conns), over the limit of %s: shorten -duration or lower -rate or -members",
				ErrConfig, thousands(n), thousands(maxCheckEvents))
		}
	}
	if c.Secret == "" && c.SecretFile == "" {
		return fmt.Errorf("%w: -secret-file (or -secret) is required to mint tokens", ErrConfig)
	}
	return nil
}

func (c *Config) normalizeAMQP() error {
	def(&c.AMQPPublishers, 4)
	def(&c.AMQPWindow, 64)
	if c.AMQPURL == "" {
		c.AMQPURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	switch c.AMQPQueueType {
	case "":
		c.AMQPQueueType = "classic"
	case "classic", "quorum":
	default:
		return fmt.Errorf("%w: amqp-queue-type %q: want classic or quorum", ErrConfig, c.AMQPQueueType)
	}
	c.Workers = 0
	return nil
}

// publishes reports whether the scenario publishes messages.
func (c *Config) publishes() bool {
	return c.Scenario == ScenarioChat || c.Scenario == ScenarioFanout
}

// joins reports whether connections join a room after the welcome.
func (c *Config) joins() bool { return c.Scenario != ScenarioStorm }

// steps is the number of phases of the publishing schedule.
func (c *Config) steps() int {
	if c.Scenario == ScenarioFanout {
		return c.MaxSteps
	}
	return 1
}

// phaseRate is the total publish rate of phase p.
func (c *Config) phaseRate(p int) float64 {
	if c.Scenario == ScenarioFanout {
		return math.Round(c.StepStart*math.Pow(c.StepFactor, float64(p))*100) / 100
	}
	return c.Rate
}

// phaseLen is the length of one phase.
func (c *Config) phaseLen() time.Duration {
	if c.Scenario == ScenarioFanout {
		return c.StepDuration
	}
	return c.Duration
}

// runLen is the length of the running stage (publishing or holding).
func (c *Config) runLen() time.Duration {
	if c.Scenario == ScenarioFanout {
		return time.Duration(c.MaxSteps) * c.StepDuration
	}
	if c.Scenario == ScenarioStorm {
		return 0
	}
	return c.Duration
}

// plannedLen is the expected length of the whole run.
func (c *Config) plannedLen() time.Duration {
	if c.Scenario == ScenarioAMQPBaseline {
		return c.Duration + 10*time.Second
	}
	connect := c.Ramp + c.ConnectTimeout
	if c.joins() {
		connect += c.JoinTimeout
	}
	return connect + c.Settle + c.runLen() + c.Grace + 10*time.Second
}

// hardTimeout is the deadline of the run.
func (c *Config) hardTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return c.plannedLen() + 2*time.Minute
}

// room returns the room index of global connection g.
func (c *Config) room(g int) int { return g % c.Rooms }

// isPublisher reports whether global connection g publishes.
func (c *Config) isPublisher(g int) bool { return c.publishes() && g < c.Publishers }

// roomName and userName are unique per run, so runs never share hub state.
func roomName(run string, r int) string { return fmt.Sprintf("lt-%s-r%d", run, r) }
func userName(run string, u int) string { return fmt.Sprintf("lt-%s-u%d", run, u) }

// targetIsLoopback reports whether every URL points at a loopback host.
func (c *Config) targetIsLoopback() bool {
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if h != "localhost" && !strings.HasPrefix(h, "127.") && h != "::1" {
			return false
		}
	}
	return true
}

func def(n *int, v int) {
	if *n <= 0 {
		*n = v
	}
}

func defDur(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func ceilDiv(a, b int) int {
	if b <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
