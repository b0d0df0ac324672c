package consumer

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// A Redis that comes back without its data (restarted without
// persistence, failed over to a replica that lacked it, or the key
// deleted) loses every entry no group had finished with. A consumer whose
// read hits it sees NOGROUP (recreateGroup). Two other ways in are caught
// here:
//
//   - Serve starting again (the supervisor restarts it after reads failed
//     while Redis was down) finds the group missing and creates it, as on
//     a first start: after this Consumer has seen the group, that is the
//     same loss as NOGROUP, and is handled as one (groupVanished).
//   - The stream's entries-added (XINFO STREAM, Redis 7), which only ever
//     grows for one stream, is found smaller than before: the stream was
//     created again, its history gone, or a failover promoted a replica
//     that lacked its newest entries (checkStream).
//
// What the consumer knows for this lives across the supervisor's restarts
// of Serve, not across processes: a process that starts while Redis is
// empty cannot tell a first start from a loss.

// known is what a consumer remembers of its group and stream across
// restarts of Serve.
type known struct {
	group atomic.Bool  // the group existed (or was created) in an earlier Serve or read
	added atomic.Int64 // the stream's entries-added at the latest reading; 0 none
	mu    sync.Mutex
	runID string // Redis's run_id when the group was last found
	last  string // the stream's last generated ID at the latest reading (the info poll's alone)
}

// sawGroup records that the group exists now, with Redis's run ID.
func (c *Consumer) sawGroup(runID string) {
	c.known.group.Store(true)
	if runID != "" {
		c.known.mu.Lock()
		c.known.runID = runID
		c.known.mu.Unlock()
	}
}

// restarted reports whether Redis's run ID differs from the one recorded
// when the group was last found ("unknown" when either is unknown).
func (c *Consumer) restarted(runID string) string {
	c.known.mu.Lock()
	defer c.known.mu.Unlock()
	switch {
	case runID == "" || c.known.runID == "":
		return "unknown"
	case runID != c.known.runID:
		return "yes"
	}
	return "no"
}

// groupVanished handles a group that Serve had to create after this
// Consumer had seen it: counted, logged and surfaced as a recreated group.
func (c *Consumer) groupVanished(runID string) {
	c.series.recreated.Inc()
	c.log.Error("consumer group was missing when the consumer started again: created it anew; entries pending in the old group, and any the stream lost, cannot be recovered from Redis",
		slog.String("start_id", c.cfg.StartID), slog.String("redis_restarted", c.restarted(runID)))
	c.surface("consumer group vanished and was recreated from " + c.cfg.StartID + ": check for lost events")
}

// checkStream compares the stream's entries-added with the latest
// reading and reports a stream that lost entries it had: created again
// (its history gone), or a failover to a replica without the newest
// entries. Failed readings and servers without the field (before Redis 7,
// miniredis) change nothing.
func (c *Consumer) checkStream(ctx context.Context) {
	info, err := c.rdb.XInfoStream(ctx, c.cfg.Stream).Result()
	if err != nil {
		return
	}
	c.known.mu.Lock()
	last := c.known.last
	c.known.last = info.LastGeneratedID
	c.known.mu.Unlock()
	lost := false
	if info.EntriesAdded > 0 {
		prev := c.known.added.Swap(info.EntriesAdded)
		lost = prev > 0 && info.EntriesAdded < prev
	}
	if !lost && c.lastEntryLost(ctx, last, info) {
		// Appends since the loss made entries-added catch up: the entry
		// that was last at the previous reading tells.
		lost = true
	}
	if !lost {
		return
	}
	runID := c.redisRunID(ctx)
	c.series.streamReset.Inc()
	c.log.Error("the stream lost entries it had (Redis restarted without its data, failed over to a replica without its newest entries, or the key was deleted): events no group had applied may be lost from Redis; republish them from the outbox",
		slog.String("last_entry_before", last), slog.Int64("entries_added_now", info.EntriesAdded),
		slog.String("redis_restarted", c.restarted(runID)))
	c.surface("the stream lost entries it had: check for lost events")
	c.sawGroup(runID)
}

// lastEntryLost reports whether last, the stream's last entry at the
// previous reading, is gone though nothing removed it: not trimmed (it is
// not before the first entry), not deleted (it is after the greatest
// deleted ID), yet not in the stream. Servers without max-deleted-entry-id
// (before Redis 7) are not judged.
func (c *Consumer) lastEntryLost(ctx context.Context, last string, info *redis.XInfoStream) bool {
	if last == "" || last == "0-0" || info.FirstEntry.ID == "" || info.MaxDeletedEntryID == "" ||
		streamid.Less(last, info.FirstEntry.ID) || !streamid.Less(info.MaxDeletedEntryID, last) {
		return false
	}
	msgs, err := c.rdb.XRangeN(ctx, c.cfg.Stream, last, last, 1).Result()
	return err == nil && len(msgs) == 0
}

// redisRunID returns Redis's run_id (INFO server), or "" when it cannot
// be read.
func (c *Consumer) redisRunID(ctx context.Context) string {
	info, err := c.rdb.Info(ctx, "server").Result()
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v
		}
	}
	return ""
}
