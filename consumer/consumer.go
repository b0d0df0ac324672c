package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/logkey"
	"github.com/headwaylabs/headway/internal/redisutil"
	"github.com/headwaylabs/headway/readiness"
)

// Log attribute keys of the consumer. Those shared with brandguard,
// supervisor and outbox have the same strings there.
const (
	AttrStream     = logkey.Stream
	AttrGroup      = "group"
	AttrConsumer   = logkey.Consumer
	AttrEntryID    = "entry_id"
	AttrEventID    = logkey.EventID
	AttrEventType  = logkey.EventType
	AttrReason     = logkey.Reason
	AttrDeliveries = "deliveries"
	AttrError      = logkey.Error
)

// Consumer reads one stream as one member of a consumer group and applies
// every entry exactly once in effect: decode, brandguard verdict, dedup,
// dispatch to the handler of the event type, acknowledge — or dead-letter
// with a reason. It is a suture.Service; Serve blocks until the context is
// cancelled (then drains) or reads keep failing.
type Consumer struct {
	cfg      Config
	rdb      redis.UniversalClient
	handlers map[event.Type]Handler
	guard    *brandguard.Scope
	store    dedup.Store
	batcher  dedup.Batcher
	txb      dedup.TxBatcher // runs a lane's first attempts in one transaction
	sets     map[event.Type]BatchHandler
	wm       *readiness.Watermark
	series   *series
	log      *slog.Logger

	// holds are the entries this consumer left pending, by aggregate:
	// their aggregates' later entries wait (order.go).
	holds holds
	// waiting: the entries left pending for a retry (not backlog).
	waiting waiting
	// bufs are the reused buffers of the batches in the pipeline: the
	// batch read n-th uses bufs[n%pipelineDepth], which the batch read
	// pipelineDepth before it has finished with.
	bufs [pipelineDepth]batch
	// fresh holds the IDs of the entries in this process, kept fresh by
	// the refresh goroutine.
	fresh freshness
	// known: the group and stream as earlier Serves saw them, to tell a
	// Redis that came back without them (vanish.go).
	known known
	// tr traces entries, with Config.TracerProvider (tracing.go); nil
	// without.
	tr *tracing
}

var _ suture.Service = (*Consumer)(nil)

// New returns a Consumer. Client, Stream, Group, Handlers and Catalog are
// required; every zero field of cfg takes the default its comment in
// [Config] states.
//
// New fails with an error wrapping ErrInvalidConfig on a bad Config, and
// with event.ErrNotDispatchable when a handler's type is not emitted on the
// stream (reserved, retired or unknown there).
func New(cfg Config) (*Consumer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.checkDispatch(); err != nil {
		return nil, err
	}
	guard := cfg.Guard
	if guard == nil {
		if guard, err = brandguard.New(brandguard.Config{Catalog: cfg.Catalog, Registerer: cfg.Registerer, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
	}
	wm := cfg.Watermark
	if wm == nil {
		if wm, err = readiness.NewWatermark(readiness.WatermarkConfig{Name: cfg.Group + "@" + cfg.Stream}); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	var labelled []event.Type
	if s, ok := cfg.Catalog.Stream(cfg.CatalogStream); ok {
		for _, ti := range s.Types {
			labelled = append(labelled, ti.Type)
		}
	}
	for _, ti := range cfg.Catalog.Retired {
		labelled = append(labelled, ti.Type)
	}
	c := &Consumer{
		cfg:      cfg,
		tr:       newTracing(cfg),
		rdb:      cfg.Client,
		handlers: make(map[event.Type]Handler, len(cfg.Handlers)+len(cfg.BatchHandlers)),
		guard:    guard.Scope(cfg.Stream, cfg.Group),
		store:    cfg.Dedup,
		wm:       wm,
		series:   newSeries(m, cfg.Stream, cfg.Group, labelled),
		log: cfg.Logger.With(slog.String(AttrStream, cfg.Stream), slog.String(AttrGroup, cfg.Group),
			slog.String(AttrConsumer, cfg.Consumer)),
	}
	c.batcher, _ = cfg.Dedup.(dedup.Batcher)
	if tb, ok := cfg.Dedup.(dedup.TxBatcher); ok && c.batcher == nil && !cfg.TxPerEvent {
		c.txb = tb
	}
	if win := wm.LivenessWindow(); cfg.Block+opTimeout >= win {
		// The loop's longest call is a blocking read, bounded by Block +
		// opTimeout: below that, a Redis that hangs makes it wedged.
		c.log.Warn("the watermark's LivenessWindow is shorter than the loop's longest call: a Redis that hangs would make the consumer not live",
			slog.Duration("liveness_window", win), slog.Duration("longest_call", cfg.Block+opTimeout))
	}
	if !redisutil.ContextTimeouts(cfg.Client) {
		c.log.Warn("the Redis client ignores context deadlines (ContextTimeoutEnabled is off): " +
			"while Redis hangs, acknowledgements, dead letters and shutdown wait for the client's read timeouts and retries")
	}
	for t, h := range cfg.Handlers {
		c.handlers[t] = chain(recoverer(h), cfg.Middleware)
	}
	for t, h := range cfg.BatchHandlers {
		// Retries and the calls of one run the batch handler alone.
		c.handlers[t] = chain(recoverer(oneByOne(h)), cfg.Middleware)
		if c.sets == nil {
			c.sets = make(map[event.Type]BatchHandler, len(cfg.BatchHandlers))
		}
		c.sets[t] = recoverBatch(h)
	}
	return c, nil
}

// Watermark returns the consumer's watermark, for probes and supervisors.
func (c *Consumer) Watermark() *readiness.Watermark { return c.wm }

// String names the consumer in logs and supervision trees.
func (c *Consumer) String() string {
	return "consumer " + c.cfg.Group + "/" + c.cfg.Consumer + "@" + c.cfg.Stream
}

// Serve runs the consumer until ctx is cancelled, then stops reading,
// gives handlers in flight DrainTimeout to finish, acknowledges what
// finished, leaves the rest pending for the group and returns ctx's error.
// It returns early with an error when FailureLimit reads in a row failed
// (the supervisor restarts it).
func (c *Consumer) Serve(ctx context.Context) error {
	// The info poll and the refresher of held entries run beside the
	// loop. The refresher outlives ctx until Serve returns: entries still
	// draining stay ours.
	infoCtx, stopInfo := context.WithCancel(ctx)
	refreshCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	var side sync.WaitGroup
	side.Go(func() { c.refresh(refreshCtx) })
	defer func() {
		stopInfo()
		stopRefresh()
		side.Wait()
	}()

	created, err := c.ensureGroup(ctx, c.cfg.StartID)
	if err != nil && ctx.Err() == nil {
		c.wm.Fail(err)
		return err
	}
	if err == nil {
		runID := c.runIDWithin(ctx)
		if created && c.known.group.Load() {
			c.groupVanished(runID)
		}
		c.sawGroup(runID)
	}
	if err := c.checkDeadLetterKey(ctx); err != nil && ctx.Err() == nil {
		c.wm.Fail(err)
		c.log.Error("consumer not started", slog.String(AttrError, err.Error()))
		return err
	}
	// Holds for order are rebuilt from the pending-first read (a restart
	// by the supervisor reuses this Consumer).
	c.holds.clear()
	c.waiting.clear()
	// The info poll starts once the group exists: a reading before that
	// fails (no such group), and the loop would wait a whole InfoInterval
	// with its backlog unknown, stalled.
	side.Go(func() { c.pollInfo(infoCtx) })
	c.log.Info("consumer started", slog.String("start_id", c.cfg.StartID))

	// The loop is a pipeline (see pipeline for its order): each batch
	// read gets a goroutine that prepares it, waits for the handlers of
	// the batch before it and runs its own.
	readID := "0" // first our own pending entries, then new ones
	var p pipeline
	p.init()
	// Serve returns only after every batch it read has finished (the
	// refresher stops after this, so entries still draining stay ours).
	defer func() { c.await(p.last()) }()
	nextReclaim := time.Now()
	failures := 0
	for {
		if ctx.Err() != nil {
			// Batches prepared but not started run no handler after the
			// cancel (the drain covers only work already in flight);
			// their entries stay pending, their leases are released.
			c.await(p.last())
			c.log.Info("consumer stopped")
			return ctx.Err()
		}
		c.wm.Heartbeat()
		if !time.Now().Before(nextReclaim) {
			// Under steady load batches are always in flight: let them
			// finish first, so reclaiming (dead consumers' entries, our
			// own failed and deferred ones) is never starved.
			c.await(p.last())
			c.reclaim(ctx, &c.bufs[p.slot()])
			nextReclaim = time.Now().Add(c.cfg.ReclaimInterval)
			c.wm.Heartbeat()
		}
		slot := p.slot()
		c.await(p.free(slot))
		pending := readID != ">"
		next, err := c.read(ctx, readID)
		if err == nil && len(next) > 0 && ctx.Err() == nil {
			// Held from now on: kept fresh until it has run.
			c.fresh.hold(next)
			s := p.start(slot)
			go func(buf *batch) {
				defer close(s.finished)
				var counts []int64
				if pending {
					counts = c.deliveryCounts(ctx, next)
				}
				b := c.prepare(ctx, buf, next, counts, false)
				<-s.prevRan
				b.abandon = ctx.Err() != nil
				c.run(ctx, b, s.ran, s.prevDone)
			}(&c.bufs[slot])
		}
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			if isNoGroup(err) {
				c.recreateGroup(ctx, err)
				readID = "0"
				continue
			}
			failures++
			c.series.readErrs.Inc()
			c.wm.Fail(err)
			c.log.Warn("stream read failed", slog.String(AttrError, err.Error()), slog.Int(logkey.Consecutive, failures))
			if failures >= c.cfg.FailureLimit {
				return fmt.Errorf("%s: %d reads in a row failed: %w", c, failures, err)
			}
			c.rest(ctx, readBackoff.Delay(failures))
			continue
		}
		if failures > 0 || c.wm.Snapshot().ConsecutiveFailures > 0 {
			failures = 0
			c.wm.Succeed()
		}
		if readID != ">" {
			if len(next) == 0 {
				readID = ">"
			} else {
				readID = next[len(next)-1].ID
			}
		}
	}
}

// read returns the next batch: pending entries of this consumer after id,
// or new entries for id ">".
func (c *Consumer) read(ctx context.Context, id string) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{
		Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: []string{c.cfg.Stream, id},
		Count: int64(c.cfg.BatchSize), Block: -1,
	}
	bound := opTimeout
	if id == ">" {
		args.Block = c.cfg.Block
		bound += c.cfg.Block // the deadline must outlast the block
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	res, err := c.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// ensureGroup creates the group (and the stream) if missing, within
// opTimeout, and reports whether it created it.
func (c *Consumer) ensureGroup(ctx context.Context, start string) (created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err = c.rdb.XGroupCreateMkStream(ctx, c.cfg.Stream, c.cfg.Group, start).Err()
	switch {
	case err == nil:
		return true, nil
	case strings.HasPrefix(err.Error(), "BUSYGROUP"):
		return false, nil
	}
	return false, fmt.Errorf("create group %s on %s: %w", c.cfg.Group, c.cfg.Stream, err)
}

// runIDWithin returns Redis's run ID, read within opTimeout; "" when it
// cannot be read.
func (c *Consumer) runIDWithin(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return c.redisRunID(ctx)
}

// recreateGroup handles NOGROUP: the stream or group vanished (deleted, or
// Redis restarted without persistence). Entries pending in the old group
// are gone with it; say so loudly and hold the consumer not ready for
// AlertWindow.
func (c *Consumer) recreateGroup(ctx context.Context, cause error) {
	c.series.recreated.Inc()
	runID := c.runIDWithin(ctx)
	c.log.Error("consumer group vanished (NOGROUP): recreating it; entries pending in the old group cannot be recovered from Redis",
		slog.String(AttrError, cause.Error()), slog.String("start_id", c.cfg.StartID), slog.String("redis_restarted", c.restarted(runID)))
	c.surface("consumer group vanished and was recreated from " + c.cfg.StartID + ": check for lost events")
	c.holds.clear() // the entries they name went with the old group
	c.waiting.clear()
	if _, err := c.ensureGroup(ctx, c.cfg.StartID); err != nil {
		c.wm.Fail(err)
		c.log.Warn("recreating the group failed", slog.String(AttrError, err.Error()))
		c.rest(ctx, time.Second)
		return
	}
	c.sawGroup(runID)
}

// deliveryCounts returns the delivery count of each message (already raised
// by the delivery that returned it). One XPENDING over their ID range,
// restricted to this consumer, finds them all when they are consecutive in
// its pending list (a read of its own pending entries). When the range holds
// other pending entries of this consumer — a reclaim's entries interleaved
// with this consumer's own failed or deferred ones — the entries it missed
// are looked up by ID, in one pipelined round trip. Unknown counts are 0.
func (c *Consumer) deliveryCounts(ctx context.Context, msgs []redis.XMessage) []int64 {
	counts := make([]int64, len(msgs))
	if len(msgs) == 0 {
		return counts
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	pend, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.cfg.Stream, Group: c.cfg.Group, Start: msgs[0].ID, End: msgs[len(msgs)-1].ID,
		Count: int64(len(msgs)), Consumer: c.cfg.Consumer,
	}).Result()
	if err != nil {
		c.log.Warn("reading delivery counts failed", slog.String(AttrError, err.Error()))
		return counts
	}
	byID := make(map[string]int64, len(pend))
	for _, p := range pend {
		byID[p.ID] = p.RetryCount
	}
	var missing []int
	for i, m := range msgs {
		if n, ok := byID[m.ID]; ok {
			counts[i] = n
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 || len(pend) < len(msgs) {
		// All found, or the range held no more of this consumer's entries:
		// the missing ones left its pending list meanwhile.
		return counts
	}
	cmds := make([]*redis.XPendingExtCmd, len(missing))
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range missing {
			id := msgs[i].ID
			cmds[j] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.cfg.Stream, Group: c.cfg.Group,
				Start: id, End: id, Count: 1})
		}
		return nil
	})
	if err != nil {
		c.log.Warn("reading delivery counts failed", slog.String(AttrError, err.Error()))
	}
	for j, i := range missing {
		if p, err := cmds[j].Result(); err == nil && len(p) == 1 {
			counts[i] = p[0].RetryCount
		}
	}
	return counts
}

// readBackoff is the wait after failed reads in a row: 100ms, doubling,
// at most 5s.
var readBackoff = backoff.Exponential{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// await waits until ch is closed, beating the heartbeat meanwhile: the
// loop is alive while the batches it started finish, and every Redis call
// of a batch is bounded (its handlers are judged by progress, ADR-010), so
// a dependency that hangs makes the loop stalled or failing, not wedged.
func (c *Consumer) await(ch <-chan struct{}) {
	select {
	case <-ch:
		return
	default:
	}
	beat := time.NewTicker(heartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-ch:
			return
		case <-beat.C:
			c.wm.Heartbeat()
		}
	}
}

// rest is sleep for the loop: it beats the heartbeat while it waits.
func (c *Consumer) rest(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	beat := time.NewTicker(heartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-beat.C:
			c.wm.Heartbeat()
		}
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
