package consumer

import (
	"context"
	"errors"
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
	batchErr := c.txb.ProcessBatch(hctx, keys, fns, out, errs)

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
		if err == nil && (out[j] == dedup.Failed || out[j] == 0) {
			err = batchErr // the batch did not commit: the store's failure
		}
		if out[j] != dedup.Processed {
			it.timed = false // what it took is not an applied attempt's
		}
		switch {
		case out[j] == dedup.Processed || out[j] == dedup.Duplicate || out[j] == dedup.Busy:
			c.finishJob(ctx, it, time.Time{}, out[j], nil)
		case stuck[it.m.Envelope.AggregateID] || (out[j] == 0 && batchErr == nil):
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
		for k := prev[j]; k >= 0; k = prev[k] {
			if state[k] == failed {
				state[j] = failed
				return errBehind
			}
			if state[k] == succeeded {
				break
			}
		}
		a := first
		if state[j] != notRun { // called again: a new context
			a = new(attemptContext)
		}
		it.m.Attempt = 1
		start := time.Now()
		a.init(tctx, start.Add(c.cfg.HandlerTimeout))
		err := it.handler(a, &it.m)
		took := time.Since(start)
		a.end(start.Add(took))
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
