package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/headwaylabs/headway/dedup"
)

// A lane on a transactional inbox that batches (dedup.TxBatcher, the
// PostgreSQL inbox): the first attempts of the lane's jobs run in one
// transaction, each in a savepoint (ADR-019); what is left — retries of
// failed jobs, and the jobs held behind them for order — runs after it,
// one job at a time, each attempt in a transaction of its own.

// errBehind is what a job's function returns, without running the
// handler, when an earlier job of its aggregate in the lane has not
// succeeded: a later event of an aggregate never takes effect before an
// earlier one.
var errBehind = errors.New("consumer: an earlier entry of the aggregate has not succeeded")

// jobState is where a lane job stands after the latest call of its
// function (the store may call it again: ADR-019).
type jobState uint8

const (
	notRun jobState = iota
	succeeded
	failed
)

// runTxLane runs one lane's jobs in order on the batching inbox, the i-th
// job's first attempt under first[i].
func (c *Consumer) runTxLane(ctx, hctx context.Context, lane []*item, first []attemptContext) {
	n := len(lane)
	keys, fns := make([]dedup.Key, n), make([]dedup.Func, n)
	out, errs := make([]dedup.Outcome, n), make([]error, n)
	state := make([]jobState, n)
	// prev[j] is the lane's previous job of j's aggregate, or -1.
	prev := make([]int, n)
	last := make(map[string]int, n)
	for j, it := range lane {
		c.prepareMessage(it)
		keys[j] = dedup.Key{Scope: c.cfg.Group, EventID: it.m.Envelope.EventID}
		agg := it.m.Envelope.AggregateID
		prev[j] = -1
		if k, ok := last[agg]; ok {
			prev[j] = k
		}
		last[agg] = j
		fns[j] = c.laneFunc(lane, j, &first[j], state, prev)
	}
	// The lane in units, in order: each run of entries of a type with a
	// BatchHandler in one ProcessSet, each run of the others in one
	// ProcessBatch. An entry that did not run and has no error of its own
	// gets its unit's (the store's failure, or nil after a shutdown).
	for a := 0; a < n; {
		b := a + 1
		for b < n && (lane[b].set == nil) == (lane[a].set == nil) && (lane[a].set == nil || lane[b].m.Envelope.EventType == lane[a].m.Envelope.EventType) {
			b++
		}
		if hctx.Err() != nil {
			break // a shutdown: the rest does not run
		}
		var err error
		if lane[a].set != nil {
			err = c.txb.ProcessSet(hctx, keys[a:b], c.setFunc(lane, a, state, prev), out[a:b], errs[a:b])
		} else {
			err = c.txb.ProcessBatch(hctx, keys[a:b], fns[a:b], out[a:b], errs[a:b])
		}
		firstOf := map[dedup.Key]int{}
		for j := a; j < b; j++ {
			if errs[j] == nil && (out[j] == dedup.Failed || out[j] == 0) {
				errs[j] = err
			}
			if out[j] == dedup.Failed && errs[j] == nil {
				errs[j] = fmt.Errorf("%w: failed without an error", dedup.ErrStore) // never acknowledged so
			}
			first, seen := firstOf[keys[j]]
			if out[j] == dedup.Busy && seen && out[first] == dedup.Processed {
				// A second entry of an event the unit applied.
				out[j] = dedup.Duplicate
			}
			if !seen {
				firstOf[keys[j]] = j
			}
			// What the store made of it, not what its handler returned
			// (a commit refused, a unit that failed): later entries of
			// its aggregate go by this.
			if out[j] == dedup.Processed || out[j] == dedup.Duplicate {
				state[j] = succeeded
			} else {
				state[j] = failed
			}
		}
		a = b
	}
	// What the batch left: its outcomes, and the jobs to run again.
	var stuck map[string]bool
	hold := func(it *item) {
		if stuck == nil {
			stuck = map[string]bool{}
		}
		stuck[it.m.Envelope.AggregateID] = true
	}
	for j, it := range lane {
		err := errs[j]
		if out[j] != dedup.Processed {
			it.timed = false // what it took is not an applied attempt's
		}
		switch {
		case out[j] == dedup.Processed || out[j] == dedup.Duplicate || out[j] == dedup.Busy:
			c.finishJob(ctx, it, time.Time{}, out[j], nil)
		case stuck[it.m.Envelope.AggregateID] || (out[j] == 0 && err == nil):
			// Held behind an earlier entry of its aggregate, or not run:
			// a shutdown stopped the batch.
			it.outcome = OutcomeDeferred
		case errors.Is(err, errBehind):
			// An earlier job of its aggregate failed in the batch and
			// succeeded on a retry since: its turn now.
			c.runJob(ctx, hctx, it, new(attemptContext), time.Time{})
		case out[j] == 0, errors.Is(err, dedup.ErrStore) || !c.retry(ctx, hctx, 1, err):
			c.finishJob(ctx, it, time.Time{}, 0, err)
		default:
			// The first attempt failed; the retries run alone.
			end, o, err := c.attempts(ctx, hctx, it, &it.m, 2, new(attemptContext), time.Time{})
			c.finishJob(ctx, it, end, o, err)
		}
		if !it.ack && !it.resolved {
			hold(it)
		}
	}
}

// laneFunc returns the dedup function of the lane's j-th job: it runs the
// handler's attempt under its own deadline, unless an earlier job of the
// aggregate has not succeeded, and records the result in state[j].
func (c *Consumer) laneFunc(lane []*item, j int, first *attemptContext, state []jobState, prev []int) dedup.Func {
	it := lane[j]
	return func(tctx context.Context) error {
		if behind(j, state, prev) {
			state[j] = failed
			return errBehind
		}
		a := first
		if state[j] != notRun { // called again: a new context
			a = new(attemptContext)
		}
		it.m.Attempt = 1
		start := time.Now()
		a.init(tctx, start.Add(c.cfg.HandlerTimeout))
		a.span = it.span
		err := it.handler(a, &it.m)
		took := time.Since(start)
		a.end(start.Add(took))
		if err == nil {
			// The store fails a handler that returned nil after a
			// statement of it failed, or that left the transaction
			// unusable: so must the order of its aggregate.
			err = dedup.TxErr(tctx)
		}
		if err != nil {
			state[j] = failed
			c.series.observe(it.m.Envelope.EventType).Observe(took.Seconds())
			return err
		}
		state[j] = succeeded
		it.took, it.timed = took, true
		return nil
	}
}

// behind reports whether an earlier job of job j's aggregate has not
// succeeded (the latest call of its function failed).
func behind(j int, state []jobState, prev []int) bool {
	for k := prev[j]; k >= 0; k = prev[k] {
		switch state[k] {
		case failed:
			return true
		case succeeded:
			return false
		}
	}
	return false
}

// setFunc returns the dedup set function of a run of the lane's jobs from a, all
// of one type with a BatchHandler: it calls the handler for the jobs the
// store runs, but those behind a failed job of their aggregate, under one
// attempt context; when the handler names failed messages, it names the
// later messages of their aggregates in the call too (errBehind), so the
// store undoes the call and calls again without them all.
func (c *Consumer) setFunc(lane []*item, a int, state []jobState, prev []int) dedup.SetFunc {
	h := lane[a].set
	return func(tctx context.Context, run []int, errs []error) error {
		ms, at := make([]*Message, 0, len(run)), make([]int, 0, len(run))
		for r, u := range run {
			j := a + u
			if behind(j, state, prev) {
				state[j], errs[r] = failed, errBehind
				continue
			}
			lane[j].m.Attempt = 1
			ms, at = append(ms, &lane[j].m), append(at, r)
		}
		if len(ms) == 0 {
			return nil
		}
		herrs := make([]error, len(ms))
		actx := new(attemptContext)
		start := time.Now()
		actx.init(tctx, start.Add(c.cfg.HandlerTimeout))
		err := h(actx, ms, herrs)
		took := time.Since(start)
		actx.end(start.Add(took))
		if err == nil {
			err = dedup.TxErr(tctx) // as in laneFunc
		}
		if err != nil {
			for _, r := range at {
				state[a+run[r]] = failed
			}
			c.series.observe(lane[a].m.Envelope.EventType).Observe(took.Seconds())
			return err
		}
		var failedAggs map[string]bool
		for q, e := range herrs {
			agg := ms[q].Envelope.AggregateID
			switch {
			case e != nil:
				errs[at[q]] = e
			case failedAggs[agg]:
				errs[at[q]] = errBehind
			default:
				continue
			}
			state[a+run[at[q]]] = failed
			if failedAggs == nil {
				failedAggs = map[string]bool{}
			}
			failedAggs[agg] = true
		}
		if failedAggs != nil {
			return nil // undone: the store calls again without them
		}
		// The call's time, shared among its messages.
		each := took / time.Duration(len(ms))
		for _, r := range at {
			it := lane[a+run[r]]
			state[a+run[r]], it.took, it.timed = succeeded, each, true
		}
		return nil
	}
}
