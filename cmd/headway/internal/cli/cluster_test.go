package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// TestCluster runs status, list and redrive against a three-node Redis
// Cluster: the redrive script touches the stream and its dead-letter
// stream, which share a hash slot.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	cc := cl.Client()
	ctx := context.Background()
	url := "redis://" + cl.Addrs()[0] + "?addr=" + cl.Addrs()[1]
	stream, dlq := walletKeys("")
	// The other streams live in other slots, on other nodes.
	for _, name := range []string{"rolling", "player", "agent"} {
		if err := cc.XAdd(ctx, &redis.XAddArgs{Stream: event.StreamKey(name), Values: []any{"k", "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter(t, cc, "", envelope("c1", platform.BetSettledConfirmed), "handler_permanent")
	deadLetter(t, cc, "", envelope("c2", platform.BetSettledConfirmed), "max_deliveries")

	r := mustRun(t, "status", "--cluster", "--redis-url", url)
	if !strings.Contains(r.stdout, "wallet") || !strings.Contains(r.stdout, "agent") {
		t.Errorf("status:\n%s", r.stdout)
	}
	if r := mustRun(t, "dlq", "list", "--cluster", "--redis-url", url); strings.Count(r.stdout, "BET_SETTLED_CONFIRMED") != 2 {
		t.Errorf("list:\n%s", r.stdout)
	}
	mustRun(t, "dlq", "redrive", "--cluster", "--redis-url", url, "--all")
	if ids := eventIDs(t, cc, stream); len(ids) != 2 || ids["c1"] != 1 || ids["c2"] != 1 {
		t.Errorf("stream after redrive: %v", ids)
	}
	if n := cc.XLen(ctx, dlq).Val(); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}
