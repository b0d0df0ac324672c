package consumer

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/event"
)

// The lanes of a batch: its jobs run on Concurrency lanes, one aggregate
// always on the same lane, in stream order within a lane.

var laneSeed = maphash.MakeSeed()

// runLanes runs jobs on Concurrency lanes: one aggregate always maps to one
// lane, and a lane runs its jobs in stream order. order is scratch space.
func (c *Consumer) runLanes(ctx context.Context, jobs []*item, order *[]*item) {
	hctx, cancel := c.handlerContext(ctx)
	defer cancel()
	var sets [][]*item
	if c.sets != nil {
		sets, jobs = splitSets(jobs, min(c.cfg.Concurrency, setParts))
	}
	n := min(c.cfg.Concurrency, len(jobs))
	// The lanes share one slice, in stream order within each lane.
	lanes := make([][]*item, n)
	if n == 1 {
		lanes[0] = jobs
	} else {
		sizes := make([]int, n)
		for _, it := range jobs {
			it.lane = int(maphash.String(laneSeed, it.m.Envelope.AggregateID) % uint64(n))
			sizes[it.lane]++
		}
		if cap(*order) < len(jobs) {
			*order = make([]*item, len(jobs))
		}
		all, off := (*order)[:len(jobs)], 0
		for l, size := range sizes {
			lanes[l] = all[off : off : off+size]
			off += size
		}
		for _, it := range jobs {
			lanes[it.lane] = append(lanes[it.lane], it)
		}
	}
	// The first attempt of each job gets its context from one slab per
	// batch (one allocation, not one per job). A slab is never reused, so
	// a context a handler keeps stays what it was.
	all := len(jobs)
	for _, set := range sets {
		all += len(set)
		lanes = append(lanes, set) // a lane of one run: one ProcessSet
	}
	slab, off := make([]attemptContext, all), 0
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		first := slab[off : off+len(lane) : off+len(lane)]
		off += len(lane)
		if c.txb != nil {
			wg.Go(func() { c.runTxLane(ctx, hctx, lane, first) })
		} else {
			wg.Go(func() { c.runLane(ctx, hctx, lane, first) })
		}
	}
	// The loop is alive while it waits for its handlers: keep the
	// heartbeat, so a hung handler shows as a stall (no progress with a
	// backlog), not as a wedged loop (ADR-010).
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	beat := time.NewTicker(heartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-finished:
			c.observeDurations(jobs)
			for _, set := range sets {
				c.observeDurations(set)
			}
			return
		case <-beat.C:
			c.wm.Heartbeat()
		}
	}
}

// runLane runs one lane's jobs in order, the i-th job's first attempt
// under first[i]. After a job of an aggregate stays pending, the lane's
// later jobs of that aggregate stay pending too.
func (c *Consumer) runLane(ctx, hctx context.Context, lane []*item, first []attemptContext) {
	var stuck map[string]bool
	// now is when the previous job's handler returned, when nothing but
	// this loop ran since: the next attempt starts then (one clock read
	// per job instead of two).
	var now time.Time
	for i, it := range lane {
		agg := it.m.Envelope.AggregateID
		if stuck[agg] || hctx.Err() != nil {
			it.outcome = OutcomeDeferred
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
			continue
		}
		now = c.runJob(ctx, hctx, it, &first[i], now)
		if !it.ack && !it.resolved {
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
		}
	}
}

// observeDurations records the durations of the jobs' successful attempts
// in handler_duration_seconds (failed attempts are recorded as they end).
// The lanes leave them in the items so that one goroutine records them: a
// histogram observed from several cores at once costs several times more.
func (c *Consumer) observeDurations(jobs []*item) {
	var typ event.Type
	var obs prometheus.Observer
	for _, it := range jobs {
		if !it.timed {
			continue
		}
		if obs == nil || it.m.Envelope.EventType != typ {
			typ, obs = it.m.Envelope.EventType, c.series.observe(it.m.Envelope.EventType)
		}
		observe(obs, it.took.Seconds(), it.span)
	}
}

// splitSets takes out of jobs, for each event type with a BatchHandler,
// the jobs of the aggregates whose every job in jobs is of that type, in
// parts runs by aggregate: a run, in stream order, is applied by one call
// of the handler rather than one per lane (fewer, larger statements and
// commits). The aggregates with jobs of several types stay in the lanes,
// where their order across types holds. It returns the runs (some may be
// empty), and the jobs left for the lanes (jobs' array, reused).
func splitSets(jobs []*item, parts int) (sets [][]*item, rest []*item) {
	const mixed = event.Type("")
	typeOf := make(map[string]event.Type, len(jobs))
	for _, it := range jobs {
		agg, typ := it.m.Envelope.AggregateID, it.m.Envelope.EventType
		if it.set == nil {
			typ = mixed // a Handler's job: the aggregate stays in the lanes
		}
		if t, seen := typeOf[agg]; seen && t != typ {
			typ = mixed
		}
		typeOf[agg] = typ
	}
	byType := map[event.Type]int{}
	rest = jobs[:0]
	for _, it := range jobs {
		typ := typeOf[it.m.Envelope.AggregateID]
		if typ == mixed {
			rest = append(rest, it)
			continue
		}
		part := 0
		if parts > 1 {
			part = int(maphash.String(laneSeed, it.m.Envelope.AggregateID) % uint64(parts))
		}
		i, ok := byType[typ]
		if !ok {
			i = len(sets)
			byType[typ] = i
			for range parts {
				sets = append(sets, nil)
			}
		}
		sets[i+part] = append(sets[i+part], it)
	}
	return sets, rest
}

// heartbeatInterval is how often a loop waiting for its handlers beats.
const heartbeatInterval = time.Second

// setParts is how many parts, by aggregate, splitSets cuts a run into:
// parallel transactions, so that one's round trips and commit overlap the
// other's statement. Measured in bench (docs/performance.md): two parts
// drained 57–59k events/s, one 39k, four 55k, eight 51k.
const setParts = 2
