package outbox

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/logkey"
)

// cycle sends b's appends (queued when b was claimed) in one pipeline,
// records the result in b's claim and returns how many rows b holds. When
// b is full and lookAhead allows, it first starts claiming the next batch
// in a goroutine, so that the store selects and locks the next rows, and
// the relay encodes them, while this batch is appended and marked; it
// returns that claim, to be the next cycle's, or nil. It never returns one
// after a failure: the next claim is given back first. Why this keeps the
// order and delivery guarantees of a serial relay is ADR-011's "Claiming
// ahead".
func (r *Relay) cycle(ctx context.Context, b *batch, lookAhead bool) (n int, next *claimAhead, err error) {
	defer b.release()
	claimed := b.rows
	r.m.batch.Observe(float64(len(claimed)))
	if len(claimed) == 0 {
		return 0, nil, nil
	}
	if lookAhead && len(claimed) == r.cfg.BatchSize {
		next = r.claimAhead(ctx)
	}
	defer func() {
		if err != nil && next != nil {
			next.drop()
			next = nil
		}
	}()

	span := r.publishSpan(claimed)
	ectx, cancel := r.op(ctx)
	_, _ = b.pipe.Exec(ectx) // per-command errors are read below
	b.confirm(ectx, r.cfg.Replicas, r.cfg.ReplicaTimeout)
	cancel()
	o := Outcome{Published: make([]int64, 0, len(claimed)), Backoff: r.cfg.Retry}
	var failErr error
	if err := b.waitErr; err != nil {
		// The batch's appends may not survive a failover: none of its rows
		// is published.
		failErr = err
		n := 0
		for i := range claimed {
			if b.encErrs[i] == nil && b.cmds[i].Err() == nil {
				b.cmds[i].SetErr(err)
				n++
			}
		}
		r.m.unconfirmed.Add(float64(n))
	}
	for i := range claimed {
		if err := b.encErrs[i]; err != nil {
			// Encoding is deterministic: a row that does not encode now
			// never will. It is parked, not retried, and the cycle goes
			// on as if it had been published.
			o.Parked = append(o.Parked, Parked{ID: claimed[i].ID, Reason: truncate(err.Error(), maxStoredError)})
			continue
		}
		if err := b.cmds[i].Err(); err != nil {
			o.Failed = append(o.Failed, claimed[i].ID)
			failErr, o.LastError = err, truncate(err.Error(), maxStoredError)
			continue
		}
		o.Published = append(o.Published, claimed[i].ID)
	}
	fctx, cancel := r.op(ctx)
	err = b.claim.Finish(fctx, o)
	cancel()
	endPublish(span, o, cmp.Or(err, failErr))
	if err != nil {
		return len(claimed), next, err
	}
	if len(o.Parked) > 0 {
		r.parked(b, o.Parked)
	}
	now := time.Now()
	last := int64(0)
	stream := ""
	var streamCount prometheus.Counter
	for i := range claimed {
		if b.cmds[i] != nil && b.cmds[i].Err() == nil {
			// Rows of a batch mostly share their stream: look the
			// counter up once per run of one stream.
			if streamCount == nil || claimed[i].Stream != stream {
				stream = claimed[i].Stream
				streamCount = r.m.published.WithLabelValues(stream)
			}
			streamCount.Inc()
			r.observeLatency(now.Sub(claimed[i].CreatedAt).Seconds(), claimed[i].Envelope.TraceParent)
			last = max(last, claimed[i].ID)
		}
	}
	if last > 0 {
		r.wm.ProgressBy(strconv.FormatInt(last, 10), len(o.Published))
		r.m.cycles.WithLabelValues("published").Inc()
	}
	if len(o.Failed) > 0 {
		r.m.failures.Add(float64(len(o.Failed)))
		return len(claimed), next, fmt.Errorf("%d of %d rows not published: %w", len(o.Failed), len(claimed), failErr)
	}
	return len(claimed), next, nil
}

// parked counts and logs the rows of b that Finish parked.
func (r *Relay) parked(b *batch, parked []Parked) {
	r.m.parked.Add(float64(len(parked)))
	r.m.gauges.parked.Add(float64(len(parked))) // until the next backlog count
	for _, p := range parked {
		i, _ := slices.BinarySearchFunc(b.rows, p.ID, func(rw Row, id int64) int { return cmp.Compare(rw.ID, id) })
		rw := &b.rows[i]
		r.log.Error("outbox row parked: it can never be appended to its stream; unpark it once fixed, or drop it "+
			"(headway outbox parked|unpark|drop)", slog.Int64(attrRowID, rw.ID), slog.String(logkey.EventID, rw.Envelope.EventID),
			slog.String(logkey.Stream, rw.Stream), slog.String(logkey.EventType, string(rw.Envelope.EventType)),
			slog.String(logkey.Reason, p.Reason))
	}
}

// batch is a claim with its rows encoded and queued on a pipeline, ready
// to be sent.
type batch struct {
	claim   Claim
	rows    []Row
	pipe    redis.Pipeliner
	cmds    []*redis.StringCmd // nil where the row did not encode
	encErrs []error
	// conn is the connection the appends and their WAIT go through, with
	// Replicas: WAIT confirms the writes of the connection that sends it.
	conn    *redis.Conn
	waitErr error // the replicas did not confirm the appends
}

// confirm sends WAIT on b's connection after its appends, with Replicas,
// and records in b.waitErr an error wrapping ErrReplicasUnconfirmed when
// fewer than replicas replicas confirmed them within timeout. WAIT is sent
// on its own, not in the appends' pipeline: go-redis gives it a read
// deadline of timeout (a pipeline's replies have the client's
// ReadTimeout, and a pipeline cut off by it is sent again, appends and
// all).
func (b *batch) confirm(ctx context.Context, replicas int, timeout time.Duration) {
	if b.conn == nil || !slices.ContainsFunc(b.cmds, func(c *redis.StringCmd) bool { return c != nil && c.Err() == nil }) {
		return
	}
	n, err := b.conn.Wait(ctx, replicas, timeout).Result()
	switch {
	case err != nil:
		b.waitErr = fmt.Errorf("%w: WAIT failed: %w", ErrReplicasUnconfirmed, err)
	case n < int64(replicas):
		b.waitErr = fmt.Errorf("%w: %d of %d replicas confirmed the batch within %v", ErrReplicasUnconfirmed, n, replicas, timeout)
	}
}

// release gives b's rows and connection back.
func (b *batch) release() {
	b.claim.Release()
	if b.conn != nil {
		_ = b.conn.Close()
	}
}

// claim claims up to BatchSize rows and queues their appends.
func (r *Relay) claim(ctx context.Context) (*batch, error) {
	cctx, cancel := r.op(ctx)
	c, err := r.store.Claim(cctx, r.cfg.BatchSize)
	cancel()
	if err != nil {
		return nil, err
	}
	rows := c.Rows()
	b := &batch{claim: c, rows: rows, cmds: make([]*redis.StringCmd, len(rows)), encErrs: make([]error, len(rows))}
	if node, ok := r.cfg.Client.(*redis.Client); ok && r.cfg.Replicas > 0 {
		// One connection for the appends and their WAIT, taken when the
		// pipeline is sent.
		b.conn = node.Conn()
		b.pipe = b.conn.Pipeline()
	} else {
		b.pipe = r.cfg.Client.Pipeline()
	}
	for i := range rows {
		fields, err := encode(rows[i].Envelope)
		if err != nil {
			b.encErrs[i] = err
			continue
		}
		b.cmds[i] = b.pipe.XAdd(ctx, &redis.XAddArgs{Stream: rows[i].Stream, Values: fields})
	}
	return b, nil
}

// claimAhead is the next batch, claimed and encoded in a goroutine of its
// own while the current batch is appended and finished.
type claimAhead struct {
	done chan struct{}
	b    *batch
	err  error
}

// claimAhead starts claiming the next batch.
func (r *Relay) claimAhead(ctx context.Context) *claimAhead {
	a := &claimAhead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.b, a.err = r.claim(ctx)
	}()
	return a
}

// wait blocks until the batch is claimed (or the claim failed) and
// returns it.
func (a *claimAhead) wait() (*batch, error) {
	<-a.done
	return a.b, a.err
}

// drop waits for the batch and gives its rows back unchanged.
func (a *claimAhead) drop() {
	if b, err := a.wait(); err == nil {
		b.release()
	}
}
