package outbox_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
	"github.com/headwaylabs/headway/platform"
)

func benchN(def int) int {
	if v, err := strconv.Atoi(os.Getenv("HEADWAY_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return def
}

func fill(b *testing.B, db *pgtest.DB, w *outbox.Writer, prefix string, n int) {
	b.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 1000 {
		var envs []event.Envelope
		for i := start; i < min(n, start+1000); i++ {
			envs = append(envs, env(fmt.Sprintf("%s-%d", prefix, i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%1000), 3))
		}
		if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 3, envs) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelay drains N outbox rows (default 20000) with a
// one-row-per-transaction loop (the baseline) and with the batched Relay,
// in one run, and reports rows/s and the ratio:
//
//	go test -run '^$' -bench Relay -benchtime 1x ./outbox
func BenchmarkRelay(b *testing.B) {
	n := benchN(20_000)
	db := pgtest.New(b)
	ctx := context.Background()
	outboxtest.MigratedPostgres(b, db.Pool)
	rdb, prefix := redistest.Client(b)
	var single, batched float64
	for i := 0; b.Loop(); i++ {
		w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: fmt.Sprintf("%ss%d:", prefix, i)})
		fill(b, db, w, fmt.Sprintf("s%d", i), n)
		start := time.Now()
		for done := 0; done < n; done++ {
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				var id int64
				var stream, eid, typ, agg, payload string
				var occurred time.Time
				if err := tx.QueryRow(ctx, `SELECT id, stream, event_id, event_type, aggregate_id, occurred_at, payload::text
					FROM headway_outbox WHERE published_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`).
					Scan(&id, &stream, &eid, &typ, &agg, &occurred, &payload); err != nil {
					return err
				}
				fields, err := event.Encode(event.Envelope{EventID: eid, EventType: event.Type(typ), SchemaVersion: 2,
					BrandID: 3, OccurredAt: occurred, AggregateID: agg, Payload: []byte(payload)})
				if err != nil {
					return err
				}
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
					return err
				}
				_, err = tx.Exec(ctx, "UPDATE headway_outbox SET published_at = now() WHERE id = $1", id)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		single += float64(n) / time.Since(start).Seconds()

		w2, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: fmt.Sprintf("%sb%d:", prefix, i)})
		fill(b, db, w2, fmt.Sprintf("b%d", i), n)
		var maxID int64
		if err := db.Pool.QueryRow(ctx, "SELECT max(id) FROM headway_outbox").Scan(&maxID); err != nil {
			b.Fatal(err)
		}
		last := strconv.FormatInt(maxID, 10)
		r, err := outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, Logger: quiet(), InfoInterval: time.Hour, BatchSize: relayBatch()})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- r.Serve(rctx) }()
		// One relay publishes in id order, so it is done when its position
		// (the last published id, in memory) is the last row's id.
		deadline := time.Now().Add(5 * time.Minute)
		for r.Watermark().Snapshot().Position != last {
			if time.Now().After(deadline) {
				b.Fatalf("the relay did not publish %d rows within 5 minutes (position %q, want %s): %v",
					n, r.Watermark().Snapshot().Position, last, r.Watermark().Snapshot().LastError)
			}
			time.Sleep(time.Millisecond)
		}
		batched += float64(n) / time.Since(start).Seconds()
		cancel()
		<-done
	}
	runs := float64(b.N)
	b.ReportMetric(single/runs, "one_row_rows/s")
	b.ReportMetric(batched/runs, "batched_rows/s")
	b.ReportMetric(batched/single, "batched/one_row")
}

// BenchmarkEndToEnd writes one event per transaction at a steady rate
// (default 1000/s for 5 s; HEADWAY_BENCH_RATE, HEADWAY_BENCH_SECONDS),
// relays it and consumes it, and reports the commit → handler latency
// percentiles:
//
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./outbox
func BenchmarkEndToEnd(b *testing.B) {
	rate, secs := 1000, 5
	if v, err := strconv.Atoi(os.Getenv("HEADWAY_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("HEADWAY_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	db := pgtest.New(b)
	ctx := context.Background()
	outboxtest.MigratedPostgres(b, db.Pool)
	rdb, prefix := redistest.Client(b)
	for i := 0; b.Loop(); i++ {
		keyPrefix := fmt.Sprintf("%se%d:", prefix, i)
		w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: keyPrefix})
		var mu sync.Mutex
		committed := map[string]time.Time{}
		arrived := map[string]time.Time{}
		total := rate * secs
		all := make(chan struct{})
		handler := func(_ context.Context, m *consumer.Message) error {
			now := time.Now()
			mu.Lock()
			if _, dup := arrived[m.Envelope.EventID]; !dup {
				arrived[m.Envelope.EventID] = now
				if len(arrived) == total {
					close(all)
				}
			}
			mu.Unlock()
			return nil
		}
		c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: keyPrefix + event.StreamKey("wallet"), CatalogStream: "wallet",
			Group: "rolling_service", Consumer: "bench", Block: 100 * time.Millisecond, Logger: quiet(),
			Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: handler, platform.BetRolledBackConfirmed: handler}})
		if err != nil {
			b.Fatal(err)
		}
		r, err := outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = c.Serve(sctx) })
		wg.Go(func() { _ = r.Serve(sctx) })
		tick := time.NewTicker(time.Second / time.Duration(rate))
		for j := range total {
			<-tick.C
			e := env(fmt.Sprintf("e2e-%d-%d", i, j), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", j%100), 3)
			if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, 3, e) }); err != nil {
				b.Fatal(err)
			}
			mu.Lock()
			committed[e.EventID] = time.Now()
			mu.Unlock()
		}
		tick.Stop()
		select {
		case <-all:
		case <-time.After(30 * time.Second):
			b.Fatalf("only %d of %d events arrived", len(arrived), total)
		}
		cancel()
		wg.Wait()
		lat := make([]time.Duration, 0, total)
		for id, t := range committed {
			lat = append(lat, arrived[id].Sub(t))
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(pct(0.50), "p50_ms")
		b.ReportMetric(pct(0.99), "p99_ms")
		b.ReportMetric(pct(0.999), "p99.9_ms")
	}
}

// relayBatch is the batched relay's BatchSize in BenchmarkRelay
// (HEADWAY_BENCH_BATCH, default the relay's default).
func relayBatch() int {
	if v, err := strconv.Atoi(os.Getenv("HEADWAY_BENCH_BATCH")); err == nil && v > 0 {
		return v
	}
	return 0
}
