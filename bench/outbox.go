package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// RelayResult is the relay section: the same number of outbox rows
// relayed one row per transaction (the baseline) and by headway's
// batched relay; Ratio is against the baseline.
type RelayResult struct {
	Section
	Cases []Case `json:"cases"`
}

func (b *bench) relaySection(ctx context.Context) error {
	res := &RelayResult{Section: Section{LoadStart: loadAvg()}}
	b.rep.Relay = res
	if err := migrateOutbox(ctx, b.pool); err != nil {
		return err
	}
	n := b.o.RelayN

	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: b.prefix + "relay-one:", Logger: b.quiet})
	if err != nil {
		return err
	}
	b.logf("one row per transaction: filling %d rows", n)
	if err := b.fillOutbox(ctx, w, "one", n); err != nil {
		return err
	}
	b.quiesce(ctx)
	var elapsed time.Duration
	cpu, err := b.measure(ctx, "relay-one-row", func(func()) (err error) {
		elapsed, err = b.relayOneRow(ctx, n)
		return err
	})
	if err != nil {
		return err
	}
	base := newCase("one row per transaction", n, elapsed, cpu)
	base.Note = "SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED, XADD, UPDATE, COMMIT"
	b.logf("one row per transaction: %s rows/s", thousands(base.PerSec))

	// The batched relay takes well under a second per run: it runs
	// -repeat times and counts by its median.
	var runs []Case
	for r := range b.o.Repeat {
		c, err := b.undisturbed("batched relay", func(attempt int) (Case, error) {
			tag := fmt.Sprintf("%d-%d", r+1, attempt)
			w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: b.prefix + "relay-batched-" + tag + ":", Logger: b.quiet})
			if err != nil {
				return Case{}, err
			}
			b.logf("batched relay: filling %d rows", n)
			if err := b.fillOutbox(ctx, w, "batched"+tag, n); err != nil {
				return Case{}, err
			}
			b.quiesce(ctx)
			cpu, err := b.measure(ctx, "relay-batched-"+tag, func(end func()) (err error) {
				elapsed, err = b.relayBatched(ctx, end)
				return err
			})
			if err != nil {
				return Case{}, err
			}
			c := newCase("headway batched relay", n, elapsed, cpu)
			b.logf("batched relay: %s rows/s", thousands(c.PerSec))
			return c, nil
		})
		if err != nil {
			return err
		}
		runs = append(runs, c)
	}
	batched := median(runs)
	batched.Note = fmt.Sprintf("BatchSize %d, InfoInterval 1h, otherwise defaults", cmp.Or(b.o.RelayBatch, outbox.DefaultBatchSize))

	base.Ratio, batched.Ratio = 1, batched.PerSec/base.PerSec
	res.Cases = []Case{base, batched}
	res.LoadEnd = loadAvg()

	sectionHeader(b.o.Out, "Relay", res.LoadStart, "CPU in cores (of the median run): this process / Redis / PostgreSQL / the rest of the machine / stolen by the hypervisor")
	t := newTable("relay", "runs", "rows", "rows/s (median)", "range", "× one-row", "CPU cores")
	for _, c := range res.Cases {
		rng := "—"
		if len(c.Runs) > 1 {
			rng = thousands(slices.Min(c.Runs)) + "–" + thousands(slices.Max(c.Runs))
		}
		t.add(c.Name, fmt.Sprint(max(1, len(c.Runs))), thousands(float64(c.Events)), thousands(c.PerSec), rng, ratio(c.Ratio), c.CPU.String())
	}
	t.write(b.o.Out)
	b.rep.target("relay ≥ 30,000 rows/s", batched.PerSec >= 30_000, "%s rows/s", thousands(batched.PerSec))
	return nil
}

// fillOutbox writes n events through w in transactions of 1000.
func (b *bench) fillOutbox(ctx context.Context, w *outbox.Writer, tag string, n int) error {
	for start := 0; start < n; start += 1000 {
		envs := make([]event.Envelope, 0, 1000)
		for i := start; i < min(n, start+1000); i++ {
			envs = append(envs, outboxEvent(tag+"-"+strconv.Itoa(i), i))
		}
		if err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 3, envs) }); err != nil {
			return err
		}
	}
	return nil
}

func outboxEvent(id string, i int) event.Envelope {
	payload, _ := json.Marshal(map[string]any{"bet_id": i, "amount": "12.50", "currency": "EUR"})
	return event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: 3,
		OccurredAt: time.Now().UTC().Truncate(time.Microsecond), AggregateID: "bet-" + strconv.Itoa(i%1000), Payload: payload}
}

// relayOneRow is the baseline: claim one row, append it, mark it, commit,
// n times.
func (b *bench) relayOneRow(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
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
			if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE headway_outbox SET published_at = now() WHERE id = $1", id)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// relayBatched runs headway's relay until its watermark's position (the
// last published id, in memory) is the newest row's id: one relay
// publishes in id order, so every row is then published. Nothing polls
// the database being measured.
func (b *bench) relayBatched(ctx context.Context, end func()) (time.Duration, error) {
	return b.relayDrain(ctx, b.rdb, 0, end)
}

// relayDrain drains the outbox with a batched relay appending to rdb,
// confirming each batch on replicas replicas (none: 0), and returns how
// long it took; it calls end once the last row is published, before the
// relay stops.
func (b *bench) relayDrain(ctx context.Context, rdb *redis.Client, replicas int, end func()) (time.Duration, error) {
	var maxID int64
	if err := b.pool.QueryRow(ctx, "SELECT max(id) FROM headway_outbox").Scan(&maxID); err != nil {
		return 0, err
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{Pool: b.pool, Client: rdb, Logger: b.quiet,
		BatchSize: b.o.RelayBatch, InfoInterval: time.Hour, Replicas: replicas})
	if err != nil {
		return 0, err
	}
	f := newFailure()
	start := time.Now()
	svc := goServe(ctx, f, r.Serve)
	limit := drainTimeout(b.o.RelayN)
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	err = awaitPosition(ctx, timeout.C, limit, f, r.Watermark(), strconv.FormatInt(maxID, 10))
	elapsed := time.Since(start)
	end()
	if serr := svc.stop(); err == nil {
		err = serr
	}
	return elapsed, err
}

// e2eWriters is how many goroutines write the end-to-end events.
const e2eWriters = 4

// E2EResult is the end-to-end section: commit → handler latency through
// the outbox, the relay and a consumer at a steady write rate.
type E2EResult struct {
	Section
	Rate      int     `json:"rate"`
	Seconds   int     `json:"seconds"`
	Events    int     `json:"events"`
	WriteRate float64 `json:"write_rate"` // achieved, events/s
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p99_9_ms"`
	Max       float64 `json:"max_ms"`
	CPU       CPU     `json:"cpu"`
}

func (b *bench) e2eSection(ctx context.Context) error {
	res := &E2EResult{Section: Section{LoadStart: loadAvg()}, Rate: b.o.Rate, Seconds: b.o.Seconds}
	b.rep.E2E = res
	if err := migrateOutbox(ctx, b.pool); err != nil {
		return err
	}
	keyPrefix := b.prefix + "e2e:"
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: keyPrefix, Logger: b.quiet})
	if err != nil {
		return err
	}
	total := b.o.Rate * b.o.Seconds
	res.Events = total
	origin := time.Now()
	committed := make([]time.Duration, total)
	arrived := make([]atomic.Int64, total) // since origin; 0: not yet
	cnt := newCounter(int64(total))
	handler := func(_ context.Context, m *consumer.Message) error {
		j, err := strconv.Atoi(strings.TrimPrefix(m.Envelope.EventID, "e2e-"))
		if err != nil || j < 0 || j >= total {
			err := consumer.Permanent(fmt.Errorf("bench: unexpected event %q", m.Envelope.EventID))
			cnt.set(err)
			return err
		}
		if arrived[j].CompareAndSwap(0, int64(time.Since(origin))) {
			cnt.add(1)
		}
		return nil
	}
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: b.rdb, Stream: keyPrefix + event.StreamKey(platform.StreamWallet),
		CatalogStream: platform.StreamWallet, Group: group, Consumer: "bench", Handlers: handlers(handler),
		BatchSize: b.o.BatchSize, Logger: b.quiet})
	if err != nil {
		return err
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{Pool: b.pool, Client: b.rdb, Logger: b.quiet, BatchSize: b.o.RelayBatch})
	if err != nil {
		return err
	}
	cs := goServe(ctx, cnt.failure, c.Serve)
	rs := goServe(ctx, cnt.failure, r.Serve)
	defer func() { _, _ = cs.stop(), rs.stop() }()
	// Measure the steady state: both loops have started.
	for _, wm := range []*readiness.Watermark{c.Watermark(), r.Watermark()} {
		for wm.Snapshot().LastHeartbeat.IsZero() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	b.logf("writing %d events/s for %d s", b.o.Rate, b.o.Seconds)
	b.quiesce(ctx)
	cpu, err := b.measure(ctx, "e2e", func(func()) error {
		// A ticker hands out the events at the rate; e2eWriters write
		// them, one transaction each, so that the rate holds although
		// one commit (with its fsync) can take longer than the interval.
		due := make(chan int, total)
		errs := make([]error, e2eWriters)
		var wg sync.WaitGroup
		for k := range e2eWriters {
			wg.Go(func() {
				for j := range due {
					if errs[k] != nil {
						continue
					}
					e := outboxEvent("e2e-"+strconv.Itoa(j), j)
					errs[k] = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, 3, e) })
					committed[j] = time.Since(origin)
				}
			})
		}
		tick := time.NewTicker(time.Second / time.Duration(b.o.Rate))
		start := time.Now()
		for j := range total {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
			due <- j
		}
		tick.Stop()
		close(due)
		wg.Wait()
		res.WriteRate = float64(total) / time.Since(start).Seconds()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		timeout := time.NewTimer(time.Minute)
		defer timeout.Stop()
		select {
		case <-cnt.finished:
			return nil
		case <-cnt.ch:
			return cnt.err
		case <-timeout.C:
			return fmt.Errorf("%d of %d events arrived a minute after the last write", cnt.n.Load(), total)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if serr := errors.Join(cs.stop(), rs.stop()); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	res.CPU = cpu
	lat := make([]time.Duration, total)
	for j := range total {
		lat[j] = time.Duration(arrived[j].Load()) - committed[j]
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	res.P50, res.P99, res.P999, res.Max = pct(0.50), pct(0.99), pct(0.999), pct(1)
	res.LoadEnd = loadAvg()

	sectionHeader(b.o.Out, "End to end", res.LoadStart, "commit returned → handler running; CPU in cores: this process / Redis / PostgreSQL / the rest of the machine / stolen by the hypervisor")
	t := newTable("rate", "events", "written/s", "p50", "p99", "p99.9", "max", "CPU cores")
	t.add(fmt.Sprintf("%d/s for %d s", res.Rate, res.Seconds), thousands(float64(total)), thousands(res.WriteRate),
		fmt.Sprintf("%.2f ms", res.P50), fmt.Sprintf("%.2f ms", res.P99), fmt.Sprintf("%.2f ms", res.P999),
		fmt.Sprintf("%.2f ms", res.Max), res.CPU.String())
	t.write(b.o.Out)
	b.rep.target(fmt.Sprintf("end-to-end p99 < 10 ms at %d events/s", res.Rate), res.P99 < 10, "p99 %.2f ms", res.P99)
	return nil
}

// migrateOutbox creates the default outbox table.
func migrateOutbox(ctx context.Context, pool *pgxpool.Pool) error {
	s, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: pool})
	if err != nil {
		return err
	}
	return s.Migrate(ctx)
}
