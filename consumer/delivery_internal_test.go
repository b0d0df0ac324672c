package consumer

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// internalConsumer returns a consumer "pod-a" of group rolling_service on
// the wallet stream under prefix, for tests that call its methods directly.
func internalConsumer(t *testing.T, rdb redis.UniversalClient, stream string) *Consumer {
	t.Helper()
	c, err := New(Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet, Group: "rolling_service",
		Consumer: "pod-a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handlers: map[event.Type]Handler{platform.BetSettledConfirmed: func(context.Context, *Message) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDeliveryCountsInterleaved: the batch's entries are spread over a
// pending list of this consumer that holds many other entries between them
// (a reclaim's entries among this consumer's own): every count is found.
func TestDeliveryCountsInterleaved(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	stream := prefix + event.StreamKey(platform.StreamWallet)
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	const n, every = 2000, 100
	p := rdb.Pipeline()
	for i := range n {
		p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"i", i}})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-a",
		Streams: []string{stream, ">"}, Count: n}).Result()
	if err != nil || len(res[0].Messages) != n {
		t.Fatalf("read %v %v", len(res), err)
	}
	all := res[0].Messages
	// The batch: every 100th entry, each with a delivery count of its own.
	var batch []redis.XMessage
	want := map[string]int64{}
	for i := 0; i < n; i += every {
		id := all[i].ID
		count := int64(2 + i/every)
		if err := rdb.Do(ctx, "XCLAIM", stream, "rolling_service", "pod-a", 0, id, "RETRYCOUNT", count, "JUSTID").Err(); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, all[i])
		want[id] = count
	}
	c := internalConsumer(t, rdb, stream)
	got := c.deliveryCounts(ctx, batch)
	for i, m := range batch {
		if got[i] != want[m.ID] {
			t.Errorf("entry %d (%s): delivery count %d, want %d", i, m.ID, got[i], want[m.ID])
		}
	}
	// A consecutive batch (one read of this consumer's own pending list)
	// is found by the first query.
	got = c.deliveryCounts(ctx, all[1:every])
	for i, m := range all[1:every] {
		if got[i] != 1 {
			t.Fatalf("consecutive entry %s: delivery count %d, want 1", m.ID, got[i])
		}
	}
}
