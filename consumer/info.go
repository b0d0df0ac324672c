package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// pollInfo reads the group's lag and pending list every InfoInterval and
// reports them to the watermark (backlog) and the gauges, and removes
// consumers that have long been idle with nothing pending.
func (c *Consumer) pollInfo(ctx context.Context) {
	t := time.NewTicker(c.cfg.InfoInterval)
	defer t.Stop()
	for {
		c.updateInfo(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// groupInfo is one reading of the group's state.
type groupInfo struct {
	lag        int64 // undelivered entries; -1 unknown
	lagSeconds float64
	pending    int64 // the group's
	oldestAge  float64
	own        int64 // pending for this consumer
	overdue    int64 // pending for other consumers, idle past their redelivery
}

// maxOverdue bounds the overdue entries of other consumers counted per
// reading.
const maxOverdue = 1000

func (c *Consumer) updateInfo(ctx context.Context) {
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	gi, err := c.readGroupInfo(ictx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			c.wm.BacklogUnknown()
			c.wm.SetRetrying(0)
			c.wm.SetLag(-1) // unknown, not the last reading
			c.series.lag.Set(-1)
			c.log.Debug("reading group info failed", slog.String(AttrError, err.Error()))
		}
		return
	}
	c.checkStream(ictx)
	c.series.lag.Set(float64(gi.lag))
	c.series.lagSec.Set(gi.lagSeconds)
	c.wm.SetLag(time.Duration(gi.lagSeconds * float64(time.Second)))
	c.series.pending.Set(float64(gi.pending))
	c.series.oldest.Set(gi.oldestAge)
	// The backlog is this consumer's work: what the group has not
	// delivered yet, its own pending entries (in flight, or left pending)
	// less those waiting for their redelivery after a failure (retrying:
	// waiting ReclaimIdle to retry is no stall), and other consumers'
	// entries whose redelivery is overdue (nobody reclaims them). Another
	// consumer's entries in flight or retrying are that consumer's.
	now := time.Now()
	due := c.redeliveryDue()
	retrying := min(c.waiting.retrying(now.Add(-due), now.Add(-10*due)), gi.own)
	c.wm.SetRetrying(retrying)
	if gi.lag < 0 {
		c.wm.BacklogUnknown()
	} else {
		c.wm.SetBacklog(gi.lag + gi.own - retrying + gi.overdue)
	}
	cancel()
	c.removeIdleConsumers(ctx)
}

var errNoSuchGroup = errors.New("group not found")

func (c *Consumer) readGroupInfo(ctx context.Context, now time.Time) (groupInfo, error) {
	gi := groupInfo{lag: -1}
	groups, err := c.rdb.XInfoGroups(ctx, c.cfg.Stream).Result()
	if err != nil {
		return gi, err
	}
	var g *redis.XInfoGroup
	for i := range groups {
		if groups[i].Name == c.cfg.Group {
			g = &groups[i]
		}
	}
	if g == nil {
		return gi, errNoSuchGroup
	}
	gi.pending = g.Pending
	// The oldest undelivered entry gives the lag in seconds and, where
	// XINFO cannot tell the lag (NULL after trims or an arbitrary start),
	// whether there is any.
	next, err := c.rdb.XRangeN(ctx, c.cfg.Stream, "("+g.LastDeliveredID, "+", 1).Result()
	if err != nil {
		return gi, err
	}
	switch {
	case len(next) == 0:
		gi.lag = 0
	case g.Lag >= 0:
		gi.lag = g.Lag
	}
	if len(next) > 0 {
		gi.lagSeconds = ageOf(next[0].ID, now)
	}
	if g.Pending > 0 {
		p, err := c.rdb.XPending(ctx, c.cfg.Stream, c.cfg.Group).Result()
		if err != nil {
			return gi, err
		}
		gi.oldestAge = ageOf(p.Lower, now)
		gi.own = p.Consumers[c.cfg.Consumer]
		if g.Pending > gi.own {
			over, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.cfg.Stream, Group: c.cfg.Group,
				Idle: c.redeliveryDue(), Start: "-", End: "+", Count: maxOverdue}).Result()
			if err != nil {
				return gi, err
			}
			for _, e := range over {
				if e.Consumer != c.cfg.Consumer {
					gi.overdue++
				}
			}
		}
	}
	return gi, nil
}

// ageOf returns the age in seconds of the stream ID's millisecond time.
func ageOf(id string, now time.Time) float64 {
	ms, ok := streamid.Millis(id)
	if !ok || ms == 0 {
		return 0
	}
	age := now.Sub(time.UnixMilli(int64(ms))).Seconds()
	return max(age, 0)
}

// removeIdleConsumers deletes other consumers of the group that have been
// idle longer than ConsumerIdleTimeout and own no pending entries. XINFO
// CONSUMERS names the candidates; each is deleted by a script that checks
// both conditions again in the same atomic step (delIdleConsumer), so a
// consumer that restarted under the same name in between keeps its pending
// entries (XGROUP DELCONSUMER would drop them).
func (c *Consumer) removeIdleConsumers(ctx context.Context) {
	if c.cfg.ConsumerIdleTimeout < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	consumers, err := c.rdb.XInfoConsumers(ctx, c.cfg.Stream, c.cfg.Group).Result()
	if err != nil {
		return
	}
	minIdle := max(c.cfg.ConsumerIdleTimeout.Milliseconds(), 1)
	for _, co := range consumers {
		if co.Name == c.cfg.Consumer || co.Pending != 0 || co.Idle < c.cfg.ConsumerIdleTimeout {
			continue
		}
		n, err := delIdleConsumer.Run(ctx, c.rdb, []string{c.cfg.Stream}, c.cfg.Group, co.Name, minIdle).Int64()
		switch {
		case err != nil:
			c.log.Warn("removing an idle consumer failed", slog.String("idle_consumer", co.Name), slog.String(AttrError, err.Error()))
		case n == 0:
			c.log.Info("idle consumer came back before it was removed: kept", slog.String("idle_consumer", co.Name))
		default:
			c.log.Info("removed idle consumer", slog.String("idle_consumer", co.Name), slog.Duration("idle", co.Idle))
		}
	}
}
