package e2e

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearth-gateway/hearth/protocol"
	"github.com/hearth-gateway/hearth/shared/testenv"
)

// TestIntegratorPublish: a backend service that knows only PROTOCOL.md and
// a plain amqp091-go client publishes a room message; a member receives it,
// sequenced, from the service.
func TestIntegratorPublish(t *testing.T) {
	c := newCluster(t, kindAMQP, clusterOpts{edges: 1, hubs: 1})
	member := dial(t, c.edgeURL(0), dialOpts{token: token(t, "dana")})
	j := member.join("announcements")

	conn, err := amqp.Dial(c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// The envelope as PROTOCOL.md spells it, built without Hearth's types.
	body, err := msgpack.Marshal(map[string]any{
		"v":    1,
		"k":    3,
		"user": "billing-service",
		"f":    map[string]any{"t": 3, "room": "announcements", "cmid": "invoice-42", "body": []byte("invoice ready")},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := "shard." + itoa(protocol.ShardOf("announcements", testShards))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "hearth.ingress", key, true, false, amqp.Publishing{
		ContentType: "application/msgpack", DeliveryMode: amqp.Persistent, Body: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := conf.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("broker did not confirm the integrator's publish: %v %v", ok, err)
	}
	m := collect(t, member, "announcements", 1, 0).messages[0]
	if m.From != "billing-service" || m.CMID != "invoice-42" || string(m.Body) != "invoice ready" || m.Seq != j.Seq+1 {
		t.Fatalf("member received %+v", m)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBrokerRestart: RabbitMQ restarts under connected clients. Clients stay
// connected; afterwards joins and publishes work and a broadcast reaches
// members on both edges, which proves the edges restored their bindings.
func TestBrokerRestart(t *testing.T) {
	c := newCluster(t, kindAMQP, clusterOpts{edges: 2, hubs: 2})
	alice := dial(t, c.edgeURL(0), dialOpts{token: token(t, "alice")})
	bob := dial(t, c.edgeURL(1), dialOpts{token: token(t, "bob")})
	alice.join("general")
	bob.join("general")

	testenv.RestartBroker(t)

	for i := range c.edges {
		url := "http://" + c.edges[i].Addr().String() + "/readyz"
		testenv.WaitFor(t, 60*time.Second, func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "edge %d ready again after the broker restart", i)
	}
	if alice.isClosed() || bob.isClosed() {
		t.Fatalf("clients were disconnected by the broker restart (alice %v, bob %v)", alice.isClosed(), bob.isClosed())
	}
	// The hubs may still be re-registering their consumers; the publish
	// waits in the durable shard queue until they are back.
	alice.send(protocol.Frame{Type: protocol.TypePublish, Room: "general", CMID: "after-restart", Body: []byte("back")})
	la := collect(t, alice, "general", 1, 1)
	lb := collect(t, bob, "general", 1, 0)
	if la.messages[0].CMID != "after-restart" || lb.messages[0].CMID != "after-restart" || la.messages[0].Seq != lb.messages[0].Seq {
		t.Fatalf("after restart alice saw %+v, bob saw %+v", la.messages[0], lb.messages[0])
	}
	carol := dial(t, c.edgeURL(1), dialOpts{token: token(t, "carol")})
	j := carol.join("general")
	if j.Seq != la.messages[0].Seq {
		t.Fatalf("carol joined at seq %d, want %d", j.Seq, la.messages[0].Seq)
	}
}
