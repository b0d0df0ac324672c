package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// BenchmarkDrain drains N pre-filled entries three ways in one run and
// reports events/s and the ratios against the raw loop:
//
//	go test -run '^$' -bench Drain -benchtime 1x ./consumer
//
// HEADWAY_BENCH_N sets N (default 200000).
func BenchmarkDrain(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("HEADWAY_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	rdb, prefix := redistest.Client(b)
	var raw, plain, deduped float64
	for i := 0; b.Loop(); i++ {
		base := fmt.Sprintf("%sbench%d:", prefix, i)
		raw += drainRaw(b, rdb, prefill(b, rdb, base+"raw:"+event.StreamKey("wallet"), n), n)
		plain += drainHeadway(b, rdb, prefill(b, rdb, base+"hw:"+event.StreamKey("wallet"), n), n, nil)
		store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: base + "dedup:"})
		if err != nil {
			b.Fatal(err)
		}
		deduped += drainHeadway(b, rdb, prefill(b, rdb, base+"dd:"+event.StreamKey("wallet"), n), n, store)
	}
	runs := float64(b.N)
	b.ReportMetric(raw/runs, "raw_events/s")
	b.ReportMetric(plain/runs, "headway_events/s")
	b.ReportMetric(deduped/runs, "dedup_events/s")
	b.ReportMetric(plain/raw, "headway/raw")
	b.ReportMetric(deduped/raw, "dedup/raw")
}

func prefill(b testing.TB, rdb redis.UniversalClient, stream string, n int) string {
	b.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range n {
		fields, err := event.Encode(envelope(fmt.Sprintf("ev-%d", i), platform.BetSettledConfirmed,
			fmt.Sprintf("bet-%d", i%1000), 3, map[string]any{"bet_id": i, "amount": "12.50", "currency": "EUR"}))
		if err != nil {
			b.Fatal(err)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
		if pipe.Len() == 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	if err := rdb.XGroupCreate(ctx, stream, "rolling_service", "0").Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Del(context.Background(), stream, stream+":dlq") })
	return stream
}

// drainRaw is the ceiling: XREADGROUP COUNT 500 and one XACK per batch,
// nothing decoded.
func drainRaw(b testing.TB, rdb redis.UniversalClient, stream string, n int) float64 {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	done := 0
	for done < n {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "raw",
			Streams: []string{stream, ">"}, Count: 500, Block: 100 * time.Millisecond}).Result()
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, len(res[0].Messages))
		for i, m := range res[0].Messages {
			ids[i] = m.ID
		}
		if err := rdb.XAck(ctx, stream, "rolling_service", ids...).Err(); err != nil {
			b.Fatal(err)
		}
		done += len(ids)
	}
	return float64(n) / time.Since(start).Seconds()
}

func drainHeadway(b testing.TB, rdb redis.UniversalClient, stream string, n int, store dedup.Store) float64 {
	b.Helper()
	var applied atomic.Int64
	finished := make(chan struct{})
	h := func(context.Context, *consumer.Message) error {
		if applied.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	}
	cfg := consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet, Group: "rolling_service",
		Consumer: "bench", Handlers: handlersFor(h), BatchSize: 500, Block: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if store != nil {
		cfg.Dedup = store
	}
	c, err := consumer.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.Serve(ctx) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatalf("drained %d of %d in 5 minutes", applied.Load(), n)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	return float64(n) / elapsed.Seconds()
}
