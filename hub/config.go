package hub

import (
	"errors"
	"fmt"
	"time"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/topology"
)

// Config configures a hub worker. Each field's comment gives its zero-value
// default, which New applies.
type Config struct {
	// ID names the hub in logs. Zero value means a random id.
	ID string `flag:"id" env:"HEARTH_HUB_ID" usage:"hub id; random when empty"`
	// Prefetch bounds unacknowledged envelopes per shard. Zero value means 64.
	Prefetch int `flag:"prefetch" env:"HEARTH_HUB_PREFETCH" default:"64" usage:"unacknowledged envelopes per shard consumer"`
	// MaxBody bounds a message body accepted from the ingress, in bytes. It
	// should match the edges' max message. Zero value means 65536.
	MaxBody int `flag:"max-body" env:"HEARTH_MAX_MESSAGE" default:"65536" usage:"largest message body accepted from the ingress"`
	// ListenAdmin serves /healthz, /readyz and /metrics. Zero value means ":9091"; "-" disables it.
	ListenAdmin string `flag:"admin-listen" env:"HEARTH_HUB_ADMIN_LISTEN" default:":9091" usage:"address for /healthz, /readyz, /metrics (- to disable)"`
	// PublishTimeout bounds one broker publish. Zero value means 5s.
	PublishTimeout time.Duration `flag:"publish-timeout" env:"HEARTH_HUB_PUBLISH_TIMEOUT" default:"5s" usage:"deadline of one broker publish"`
	// AckDelay is how long a shard may hold back the acknowledgements of
	// envelopes it has processed, so that RabbitMQ gets them together as one
	// multiple ack (broker.ConsumeSpec.AckDelay): every ack sent to a quorum
	// shard queue is a Raft command, and a shard that gets a few envelopes
	// a second would otherwise send one per envelope. A graceful stop or
	// handover sends them first; after a crash or a lost connection the
	// envelopes processed in the last AckDelay are delivered again to the
	// shard's next owner, which answers them from the de-duplication window
	// like any redelivered envelope. Zero value means 250ms; negative sends
	// each ack at once.
	AckDelay time.Duration `flag:"ack-delay" env:"HEARTH_HUB_ACK_DELAY" default:"250ms" usage:"longest a shard holds processed envelopes' acks to send them together (negative: never)"`

	// HubHeartbeat is how often the hub announces itself to the others.
	// Zero value means 1s.
	HubHeartbeat time.Duration `flag:"hub-heartbeat" env:"HEARTH_HUB_HEARTBEAT" default:"1s" usage:"interval of the hub's liveness announcements"`
	// HubTimeout is how long a silent hub keeps its shards; after it, the
	// other hubs take them over. Zero value means 3s.
	HubTimeout time.Duration `flag:"hub-timeout" env:"HEARTH_HUB_TIMEOUT" default:"3s" usage:"a hub silent this long loses its shards to the others"`
	// EdgeTimeout is how long a silent edge's connections stay members of
	// their rooms. Zero value means 6s.
	EdgeTimeout time.Duration `flag:"edge-timeout" env:"HEARTH_EDGE_TIMEOUT" default:"6s" usage:"members of an edge silent this long are removed"`
	// HistoryMessages and HistoryBytes bound each room's retained history.
	// Zero values mean 1000 and 1 MiB.
	HistoryMessages int `flag:"history-messages" env:"HEARTH_HISTORY_MESSAGES" default:"1000" usage:"messages retained per room"`
	HistoryBytes    int `flag:"history-bytes" env:"HEARTH_HISTORY_BYTES" default:"1048576" usage:"body bytes retained per room"`
	// HistoryTotalBytes bounds the history of all rooms together; each
	// shard gets an equal share, so the bound holds however many shards the
	// hub owns. When a shard's share is full, the least recently active
	// rooms lose their oldest messages. Zero value means 256 MiB.
	HistoryTotalBytes int `flag:"history-total-bytes" env:"HEARTH_HISTORY_TOTAL_BYTES" default:"268435456" usage:"body bytes retained over all rooms (shared equally by the shards)"`
	// DedupTotal bounds the remembered client message ids of all rooms
	// together, shared like HistoryTotalBytes. Zero value means 1,000,000.
	DedupTotal int `flag:"dedup-total" env:"HEARTH_DEDUP_TOTAL" default:"1000000" usage:"client message ids remembered over all rooms (shared equally by the shards)"`
	// JoinHistory is how many recent messages a fresh join receives.
	// Zero value means 50.
	JoinHistory int `flag:"join-history" env:"HEARTH_JOIN_HISTORY" default:"50" usage:"recent messages sent with a fresh join"`
	// DedupWindow is how many client message ids per room are remembered
	// to answer retried publishes. Zero value means 10000.
	DedupWindow int `flag:"dedup-window" env:"HEARTH_DEDUP_WINDOW" default:"10000" usage:"client message ids remembered per room for idempotent publish"`
	// SnapshotEvery writes a shard's whole state to its log after this many
	// records. Zero value means 5000.
	SnapshotEvery int `flag:"snapshot-every" env:"HEARTH_SNAPSHOT_EVERY" default:"5000" usage:"records between snapshots of a shard's state"`
	// StateBytes bounds each shard's state stream on disk. It must hold a
	// snapshot plus SnapshotEvery records. Zero value means 64 MiB.
	StateBytes int `flag:"state-bytes" env:"HEARTH_STATE_BYTES" default:"67108864" usage:"retention of each shard's state stream in bytes"`
	// ReplayTimeout bounds rebuilding a shard when taking it over. Zero value means 30s.
	ReplayTimeout time.Duration `flag:"replay-timeout" env:"HEARTH_REPLAY_TIMEOUT" default:"30s" usage:"deadline for replaying a shard's state on takeover"`

	// Topology is shared with the edges and must match theirs.
	Topology topology.Config
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("hub: invalid config")

func (c *Config) normalize() error {
	if c.Prefetch <= 0 {
		c.Prefetch = 64
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 65536
	}
	if c.ListenAdmin == "" {
		c.ListenAdmin = ":9091"
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.AckDelay == 0 {
		c.AckDelay = 250 * time.Millisecond
	}
	if c.ID == "" {
		c.ID = "hub-" + randomHex(4)
	}
	if err := protocol.ValidateID(c.ID); err != nil {
		return fmt.Errorf("%w: id %q: %v", ErrConfig, c.ID, err)
	}
	setDur(&c.HubHeartbeat, time.Second)
	setDur(&c.HubTimeout, 3*time.Second)
	setDur(&c.EdgeTimeout, 6*time.Second)
	setDur(&c.ReplayTimeout, 30*time.Second)
	setInt(&c.HistoryMessages, 1000)
	setInt(&c.HistoryBytes, 1<<20)
	setInt(&c.HistoryTotalBytes, 256<<20)
	setInt(&c.DedupTotal, 1000000)
	setInt(&c.JoinHistory, 50)
	setInt(&c.DedupWindow, 10000)
	setInt(&c.SnapshotEvery, 5000)
	setInt(&c.StateBytes, 64<<20)
	if c.HubTimeout <= 2*c.HubHeartbeat {
		return fmt.Errorf("%w: hub-timeout %v must exceed twice hub-heartbeat %v", ErrConfig, c.HubTimeout, c.HubHeartbeat)
	}
	if c.JoinHistory > protocol.MaxHistoryLimit {
		c.JoinHistory = protocol.MaxHistoryLimit
	}
	return c.Topology.Validate()
}

func setDur(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func setInt(n *int, v int) {
	if *n <= 0 {
		*n = v
	}
}
