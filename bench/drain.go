package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// group is the consumer group of every drain.
const group = "rolling_service"

// drainTimeout bounds a drain of n entries or rows: a minute, plus a
// millisecond each (1,000/s, far below any case here). A drain that takes
// longer has failed.
func drainTimeout(n int) time.Duration { return time.Minute + time.Duration(n)*time.Millisecond }

// DrainResult is the drain section: one case per way of draining N
// pre-filled entries, each with its ratio to the raw ceiling.
type DrainResult struct {
	Section
	// Ceiling is the median events/s of the raw go-redis drains.
	Ceiling float64 `json:"ceiling_per_second"`
	Cases   []Case  `json:"cases"`
}

func (b *bench) drainSection(ctx context.Context) error {
	res := &DrainResult{Section: Section{LoadStart: loadAvg()}}
	b.rep.Drain = res
	if _, err := b.pool.Exec(ctx, `CREATE TABLE bench_applied (
		event_id     text PRIMARY KEY,
		aggregate_id text NOT NULL,
		applied_at   timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: b.pool})
	if err != nil {
		return err
	}
	if err := inbox.Migrate(ctx); err != nil {
		return err
	}
	redisDedup, err := dedup.NewRedis(dedup.RedisConfig{Client: b.rdb, Prefix: b.prefix + "dedup:"})
	if err != nil {
		return err
	}
	// Spans are made, sampled and ended, and go nowhere: the cost of
	// tracing in the consumer, not of an exporter.
	traced := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer func() { _ = traced.Shutdown(context.Background()) }()
	n, wn := b.o.N, b.o.WatermillN
	if wn == 0 {
		wn = n
	}
	// The fast cases run -repeat times, interleaved (raw, headway, dedup,
	// raw, …), and count by their median: a drain of a second or two
	// moves with whatever else the two cores do. The slow ones run once.
	fast := []drainSpec{
		{"raw go-redis", "raw", n, b.drainRaw, "XREADGROUP COUNT 500, one XACK per batch, nothing decoded"},
		{"headway, no dedup", "headway", n, b.headwayDrain(nil, nil), "no TracerProvider: tracing off"},
		{"headway, no dedup, traced", "headway-traced", n, b.headwayDrain(nil, nil, func(c *consumer.Config) { c.TracerProvider = traced }),
			"a process span per entry: OpenTelemetry SDK, every span sampled, no exporter"},
		{"headway, Redis dedup", "headway-redis-dedup", n, b.headwayDrain(redisDedup, nil), ""},
	}
	slow := []drainSpec{
		{"headway, PostgreSQL inbox + 1 row, a transaction per event", "headway-pg-inbox-per-event", max(n/4, 1),
			b.headwayDrain(inbox, insertApplied, func(c *consumer.Config) { c.TxPerEvent = true }), "TxPerEvent; N/4 entries"},
		{"headway, PostgreSQL inbox + 1 row", "headway-pg-inbox", n, b.headwayDrain(inbox, insertApplied), "a transaction per lane batch, a savepoint per event"},
		{"headway, PostgreSQL inbox + 1 row, batch handler", "headway-pg-inbox-set", n, b.headwayDrainSet(inbox, insertAppliedSet),
			"one multi-row INSERT per lane batch"},
		{"Watermill redisstream", "watermill", wn, b.drainWatermill, "its defaults: one entry per XREADGROUP, one XACK per message"},
	}
	runs := make([][]Case, len(fast)+len(slow))
	for r := range b.o.Repeat {
		for i, spec := range fast {
			slug := spec.slug
			if b.o.Repeat > 1 {
				slug = fmt.Sprintf("%s-%d", slug, r+1)
			}
			got, err := b.drainCase(ctx, spec.name, slug, spec.n, spec.drain)
			if err != nil {
				return fmt.Errorf("%s: %w", spec.name, err)
			}
			runs[i] = append(runs[i], got)
		}
	}
	for i, spec := range slow {
		got, err := b.drainCase(ctx, spec.name, spec.slug, spec.n, spec.drain)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		runs[len(fast)+i] = append(runs[len(fast)+i], got)
	}
	for i, spec := range append(fast, slow...) {
		c := median(runs[i])
		c.Note = spec.note
		res.Cases = append(res.Cases, c)
	}
	res.LoadEnd = loadAvg()
	// Leave the database nothing to vacuum for the sections after this.
	if _, err := b.pool.Exec(ctx, "DROP TABLE bench_applied, "+inbox.Table()); err != nil {
		return err
	}
	res.Ceiling = res.Cases[0].PerSec
	for i := range res.Cases {
		res.Cases[i].Ratio = res.Cases[i].PerSec / res.Ceiling
	}
	b.writeDrain(res)
	return nil
}

// drainSpec is one way of draining.
type drainSpec struct {
	name, slug string
	n          int
	drain      drainFunc
	note       string
}

// median returns the run with the median events/s (the lower one of an
// even count), with every run's events/s in Runs.
func median(runs []Case) Case {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b Case) int { return cmp.Compare(a.PerSec, b.PerSec) })
	c := sorted[(len(sorted)-1)/2]
	for _, r := range runs {
		c.Runs = append(c.Runs, r.PerSec)
	}
	return c
}

func (b *bench) writeDrain(res *DrainResult) {
	w := b.o.Out
	sectionHeader(w, "Drain", res.LoadStart, "CPU in cores (of the median run): this process / Redis / PostgreSQL / the rest of the machine / stolen by the hypervisor")
	t := newTable("case", "runs", "entries", "events/s (median)", "range", "× raw", "CPU cores")
	for _, c := range res.Cases {
		lo, hi := slices.Min(c.Runs), slices.Max(c.Runs)
		rng := "—"
		if len(c.Runs) > 1 {
			rng = thousands(lo) + "–" + thousands(hi)
		}
		t.add(c.Name, fmt.Sprint(len(c.Runs)), thousands(float64(c.Events)), thousands(c.PerSec), rng, ratio(c.Ratio), c.CPU.String())
	}
	t.write(w)
	byName := map[string]Case{}
	for _, c := range res.Cases {
		byName[c.Name] = c
	}
	plain, dd, wm := byName["headway, no dedup"], byName["headway, Redis dedup"], byName["Watermill redisstream"]
	pg, pgOne := byName["headway, PostgreSQL inbox + 1 row"], byName["headway, PostgreSQL inbox + 1 row, a transaction per event"]
	pgSet := byName["headway, PostgreSQL inbox + 1 row, batch handler"]
	fmt.Fprintf(w, "\nraw ceiling: %s events/s (median); against Watermill: headway %.1f×, with Redis dedup %.1f×, with the PostgreSQL inbox %.1f×\n",
		thousands(res.Ceiling), plain.PerSec/wm.PerSec, dd.PerSec/wm.PerSec, pg.PerSec/wm.PerSec)
	r := b.rep
	r.target("headway without dedup ≥ 0.85 × raw", plain.Ratio >= 0.85, "%.3f × raw", plain.Ratio)
	r.target("headway with Redis dedup ≥ 0.5 × raw", dd.Ratio >= 0.5, "%.3f × raw", dd.Ratio)
	r.target("headway ≥ 10 × Watermill", plain.PerSec >= 10*wm.PerSec, "%.1f × Watermill", plain.PerSec/wm.PerSec)
	r.target("PostgreSQL inbox + 1 row, per-event handler ≥ 15,000 events/s", pg.PerSec >= 15_000, "%s events/s (%.1f × a transaction per event)",
		thousands(pg.PerSec), pg.PerSec/pgOne.PerSec)
	r.target("PostgreSQL inbox + 1 row, batch handler ≥ 50,000 events/s", pgSet.PerSec >= 50_000, "%s events/s (%.1f × a transaction per event)",
		thousands(pgSet.PerSec), pgSet.PerSec/pgOne.PerSec)
}

// drainFunc drains n entries of stream, the last of which is last, and
// returns how long that took. It calls end when the entries are drained,
// before it stops what it started.
type drainFunc func(ctx context.Context, stream, last string, n int, end func()) (time.Duration, error)

// drainCase fills a stream of its own with n entries, measures drain on
// it and deletes it; a run disturbed by other processes is repeated (see
// undisturbed).
func (b *bench) drainCase(ctx context.Context, name, slug string, n int, drain drainFunc) (Case, error) {
	return b.undisturbed(name, func(attempt int) (Case, error) {
		slug := slug
		if attempt > 1 {
			slug = fmt.Sprintf("%s-a%d", slug, attempt)
		}
		stream := b.prefix + slug + ":" + event.StreamKey(platform.StreamWallet)
		b.logf("%s: pre-filling %d entries", name, n)
		last, err := b.prefill(ctx, stream, n)
		if err != nil {
			return Case{}, err
		}
		b.quiesce(ctx)
		var elapsed time.Duration
		cpu, err := b.measure(ctx, "drain-"+slug, func(end func()) (err error) {
			elapsed, err = drain(ctx, stream, last, n, end)
			return err
		})
		if err != nil {
			return Case{}, err
		}
		if err := b.rdb.Unlink(ctx, stream, stream+":dlq").Err(); err != nil {
			return Case{}, err
		}
		if err := b.deleteKeys(ctx, b.prefix+"dedup:*"); err != nil {
			return Case{}, err
		}
		c := newCase(name, n, elapsed, cpu)
		b.logf("%s: %s events/s", name, thousands(c.PerSec))
		return c, nil
	})
}

// entry returns the fields of entry i of the fill-th stream filled: a
// headway envelope, plus the message UUID field that Watermill's default
// unmarshaller requires (headway ignores fields it does not know;
// Watermill reads the envelope's payload field as its payload); about 225
// bytes of names and values in all.
func entry(fill, i int, occurred time.Time) ([]any, error) {
	id := "f" + strconv.Itoa(fill) + "-" + strconv.Itoa(i)
	fields, err := event.Encode(event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed, SchemaVersion: 2,
		BrandID: 3, OccurredAt: occurred, AggregateID: "bet-" + strconv.Itoa(i%1000),
		Payload: fmt.Appendf(nil, `{"bet_id":%d,"amount":"12.50","currency":"EUR"}`, i)})
	return append(fields, redisstream.UUIDHeaderKey, id), err
}

// prefill appends n entries to stream in pipelines of 1000, creates the
// group at its start and returns the last entry's ID.
func (b *bench) prefill(ctx context.Context, stream string, n int) (string, error) {
	b.fills++
	fill := b.fills // in the event IDs: every stream's events are new to a dedup store
	occurred := time.Now().UTC()
	var last string
	for start := 0; start < n; start += 1000 {
		pipe := b.rdb.Pipeline()
		var cmd *redis.StringCmd
		for i := start; i < min(n, start+1000); i++ {
			fields, err := entry(fill, i, occurred)
			if err != nil {
				return "", err
			}
			cmd = pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return "", err
		}
		last = cmd.Val()
		if n >= 500_000 && (start+1000)%100_000 == 0 {
			b.logf("  %d of %d", start+1000, n)
		}
	}
	return last, b.rdb.XGroupCreate(ctx, stream, group, "0").Err()
}

// drainRaw is the ceiling: XREADGROUP COUNT 500 and one XACK per batch,
// nothing decoded.
func (b *bench) drainRaw(ctx context.Context, stream, _ string, n int, end func()) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, drainTimeout(n))
	defer cancel()
	start := time.Now()
	ids := make([]string, 0, 500)
	for done := 0; done < n; {
		res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "raw",
			Streams: []string{stream, ">"}, Count: 500, Block: 100 * time.Millisecond}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return 0, err
		}
		ids = ids[:0]
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		if err := b.rdb.XAck(ctx, stream, group, ids...).Err(); err != nil {
			return 0, err
		}
		done += len(ids)
	}
	elapsed := time.Since(start)
	end()
	return elapsed, nil
}

// headwayDrain returns a drain by one headway consumer (see drainOne).
func (b *bench) headwayDrain(store dedup.Store, work consumer.Handler, tune ...func(*consumer.Config)) drainFunc {
	return func(ctx context.Context, stream, last string, n int, end func()) (time.Duration, error) {
		return b.drainOne(ctx, stream, last, newCounter(int64(n)), store, work, end, tune...)
	}
}

// headwayDrainSet drains with work as the BatchHandler of the events' types.
func (b *bench) headwayDrainSet(store dedup.Store, work consumer.BatchHandler) drainFunc {
	return func(ctx context.Context, stream, last string, n int, end func()) (time.Duration, error) {
		cnt := newCounter(int64(n))
		h := cnt.batchHandler(work)
		return b.drainOne(ctx, stream, last, cnt, store, nil, end, func(c *consumer.Config) {
			c.Handlers = nil
			c.BatchHandlers = map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: h, platform.BetRolledBackConfirmed: h}
		})
	}
}

// drainOne drains stream up to its last entry with one headway consumer
// with its defaults (Concurrency 8; BatchSize -batch-size or the
// default), store as its Dedup (nil for none), and a handler that runs
// work (nil for nothing) and counts in cnt; it calls end when the entries
// are drained. tune changes the consumer's Config.
func (b *bench) drainOne(ctx context.Context, stream, last string, cnt *counter,
	store dedup.Store, work consumer.Handler, end func(), tune ...func(*consumer.Config)) (time.Duration, error) {
	cfg := consumer.Config{Catalog: platform.Catalog(), Client: b.rdb, Stream: stream, CatalogStream: platform.StreamWallet,
		Group: group, Consumer: "bench", Handlers: handlers(cnt.handler(work)), Dedup: store,
		BatchSize: b.o.BatchSize, Concurrency: 8, Logger: b.quiet}
	for _, f := range tune {
		f(&cfg)
	}
	c, err := consumer.New(cfg)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	svc := goServe(ctx, cnt.failure, c.Serve)
	err = awaitDrained(ctx, cnt, []*readiness.Watermark{c.Watermark()}, []string{last})
	elapsed := time.Since(start)
	end()
	if serr := svc.stop(); err == nil {
		err = serr
	}
	return elapsed, err
}

// insertApplied is the inbox case's work: one row, written in the inbox
// transaction, so that it commits together with the event's mark.
func insertApplied(ctx context.Context, m *consumer.Message) error {
	tx, ok := dedup.Tx(ctx)
	if !ok {
		return consumer.Permanent(errors.New("bench: the handler is not in a PostgreSQL inbox transaction"))
	}
	_, err := tx.Exec(ctx, "INSERT INTO bench_applied (event_id, aggregate_id) VALUES ($1, $2)",
		m.Envelope.EventID, m.Envelope.AggregateID)
	return err
}

// insertAppliedSet is the batch handler case's work: the messages' rows
// with one statement, in the inbox transaction.
func insertAppliedSet(ctx context.Context, ms []*consumer.Message, _ []error) error {
	tx, ok := dedup.Tx(ctx)
	if !ok {
		return consumer.Permanent(errors.New("bench: the handler is not in a PostgreSQL inbox transaction"))
	}
	ids, aggs := make([]string, len(ms)), make([]string, len(ms))
	for i, m := range ms {
		ids[i], aggs[i] = m.Envelope.EventID, m.Envelope.AggregateID
	}
	_, err := tx.Exec(ctx, "INSERT INTO bench_applied (event_id, aggregate_id) SELECT * FROM unnest($1::text[], $2::text[])", ids, aggs)
	return err
}

func handlers(h consumer.Handler) map[event.Type]consumer.Handler {
	return map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h, platform.BetRolledBackConfirmed: h}
}

// drainWatermill drains with Watermill's redisstream subscriber in a
// consumer group, with its defaults, acknowledging every message.
func (b *bench) drainWatermill(ctx context.Context, stream, _ string, n int, end func()) (time.Duration, error) {
	// Close closes the subscriber's client: give it one of its own.
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: b.redisClient("watermill", 0),
		Consumer: "bench", ConsumerGroup: group}, watermill.NopLogger{})
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Close() }()
	timeout := time.NewTimer(drainTimeout(n))
	defer timeout.Stop()
	start := time.Now()
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		return 0, err
	}
	for done := 0; done < n; done++ {
		select {
		case m, ok := <-msgs:
			if !ok {
				return 0, fmt.Errorf("the subscription closed after %d of %d messages", done, n)
			}
			m.Ack()
		case <-timeout.C:
			return 0, fmt.Errorf("%d of %d messages in %s", done, n, drainTimeout(n))
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	end()
	return elapsed, nil
}
