package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearth-gateway/hearth/shared/testenv"
)

// TestChaosLong is the soak behind `make chaos`: for HEARTH_CHAOS_DURATION
// it publishes steadily across 20 rooms while killing a random hub with
// SIGKILL every HEARTH_CHAOS_EVERY (default 10s) and starting a fresh one,
// then prints the checker's table and fails on any loss, duplicate,
// reordering or divergence. It does not run in `make test`.
func TestChaosLong(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("HEARTH_CHAOS_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("soak test: set HEARTH_CHAOS_DURATION (make chaos)")
	}
	every := 10 * time.Second
	if e, err := time.ParseDuration(os.Getenv("HEARTH_CHAOS_EVERY")); err == nil && e > 0 {
		every = e
	}
	r := newChaosRig(t, 16)
	live := []string{"hub-0", "hub-1", "hub-2"}
	rooms, clients := r.startPipeline(live...)
	start := time.Now()
	nextKill := start.Add(every)
	kills, sent, nextHub := 0, 0, 3
	var takeovers []time.Duration
	for time.Since(start) < d {
		c := clients[sent%len(clients)]
		c.publish(r, rooms[(sent/len(clients))%len(rooms)], sent)
		sent++
		if sent%20 == 0 {
			time.Sleep(10 * time.Millisecond) // ~2,000 publishes/s at most, a steady load
		}
		if time.Now().After(nextKill) {
			victim := live[rand.IntN(len(live))]
			r.kill(victim)
			kills++
			for i, id := range live {
				if id == victim {
					live = append(live[:i], live[i+1:]...)
					break
				}
			}
			killed := time.Now()
			testenv.WaitFor(t, 15*time.Second, func() bool { return r.balanced() && len(r.shardCounts()) == len(live) }, "takeover after killing %s", victim)
			takeovers = append(takeovers, time.Since(killed))
			id := fmt.Sprintf("hub-%d", nextHub)
			nextHub++
			r.spawnHub(id)
			live = append(live, id)
			nextKill = time.Now().Add(every)
		}
	}
	acked := 0
	deadline := time.After(120 * time.Second)
	for i, c := range clients {
		want := sent / len(clients)
		if i < sent%len(clients) {
			want++
		}
		for n := 0; n < want; n++ {
			select {
			case <-c.acks:
				acked++
			case <-deadline:
				t.Fatalf("%d of %d publishes acked after 120s", acked, sent)
			}
		}
	}
	testenv.WaitFor(t, 120*time.Second, func() bool { return r.check.Report().Lost == 0 }, "every acknowledged message delivered")
	rep := r.check.Report()
	var b strings.Builder
	rep.WriteTable(&b)
	fmt.Printf("\nchaos: %v, %d messages over %d rooms, %d hubs killed; takeover times %v\n%s\n",
		time.Since(start).Round(time.Second), sent, len(rooms), kills, takeovers, b.String())
	if !rep.OK() {
		t.Fatal("checker verdict not clean")
	}
}
