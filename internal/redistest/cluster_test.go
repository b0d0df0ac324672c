package redistest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/redistest"
)

func TestClusterSpreadsSlots(t *testing.T) {
	cl := redistest.StartCluster(t)
	cc := cl.Client()
	ctx := context.Background()
	owners := map[string]bool{}
	for _, k := range []string{"{a}", "{b}", "{c}", "{d}", "{e}", "{f}", "{g}", "{h}"} {
		if err := cc.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		n, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		owners[n.Options().Addr] = true
	}
	if len(owners) < 2 {
		t.Fatalf("eight hash tags on %d node(s): not a working cluster", len(owners))
	}
	// A transaction over two keys of one hash tag works; over two tags it
	// is refused (CROSSSLOT), which is why stream keys carry a tag.
	if _, err := cc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "x:{wallet}", 1, 0)
		p.Set(ctx, "x:{wallet}:dlq", 1, 0)
		return nil
	}); err != nil {
		t.Fatalf("same-slot MULTI: %v", err)
	}
}
