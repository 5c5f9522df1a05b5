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
	// Index and Count assign shards statically: this hub consumes every
	// shard k with k mod Count == Index. Zero values mean one hub owning all.
	Index int `flag:"index" env:"HEARTH_HUB_INDEX" default:"0" usage:"this hub's index, 0..count-1 (static shard assignment)"`
	Count int `flag:"count" env:"HEARTH_HUB_COUNT" default:"1" usage:"number of hubs sharing the shards"`
	// Prefetch bounds unacknowledged envelopes per shard. Zero value means 64.
	Prefetch int `flag:"prefetch" env:"HEARTH_HUB_PREFETCH" default:"64" usage:"unacknowledged envelopes per shard consumer"`
	// MaxBody bounds a message body accepted from the ingress, in bytes. It
	// should match the edges' max message. Zero value means 65536.
	MaxBody int `flag:"max-body" env:"HEARTH_MAX_MESSAGE" default:"65536" usage:"largest message body accepted from the ingress"`
	// ListenAdmin serves /healthz, /readyz and /metrics. Zero value means ":9091"; "-" disables it.
	ListenAdmin string `flag:"admin-listen" env:"HEARTH_HUB_ADMIN_LISTEN" default:":9091" usage:"address for /healthz, /readyz, /metrics (- to disable)"`
	// PublishTimeout bounds one broker publish. Zero value means 5s.
	PublishTimeout time.Duration `flag:"publish-timeout" env:"HEARTH_HUB_PUBLISH_TIMEOUT" default:"5s" usage:"deadline of one broker publish"`

	// Topology is shared with the edges and must match theirs.
	Topology topology.Config
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("hub: invalid config")

func (c *Config) normalize() error {
	if c.Count <= 0 {
		c.Count = 1
	}
	if c.Index < 0 || c.Index >= c.Count {
		return fmt.Errorf("%w: index %d not in [0, %d)", ErrConfig, c.Index, c.Count)
	}
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
	if c.ID == "" {
		c.ID = "hub-" + randomHex(4)
	}
	if err := protocol.ValidateID(c.ID); err != nil {
		return fmt.Errorf("%w: id %q: %v", ErrConfig, c.ID, err)
	}
	if c.Count > c.Topology.NumShards() {
		return fmt.Errorf("%w: %d hubs for %d shards", ErrConfig, c.Count, c.Topology.NumShards())
	}
	return c.Topology.Validate()
}
