// Package retention keeps Redis streams bounded without losing an entry a
// consumer group still needs.
//
// Trimming by length alone (XADD … MAXLEN ~, XTRIM MAXLEN) removes entries
// whether or not every group has read and acknowledged them: a slow or
// stopped group loses what it has not read, and its pending entries stay in
// its pending list without their fields (the consumer's lost_to_trim
// outcome). [Trim] trims with XTRIM MINID to the oldest entry any group of
// the stream still needs — each group's oldest pending entry, or the entry
// after the last one delivered to it — and never past it, within a
// [Policy] that keeps a minimum age and count for replay and redrive. It
// decides and trims in one script call, so a group created, an entry
// delivered or a pending entry claimed meanwhile is seen.
//
// A group that stops holds its stream back: the stream grows. The policy's
// MaxLength and MaxAge bound it — past them the stream is reported over its
// bound (an alert), and only with TrimUnread, an operator's choice, are
// unacknowledged entries trimmed, counted as lost. Dead-letter streams,
// which no group reads, are trimmed by age (Policy.DeadLetter).
//
// [Keeper] runs Trim for each stream on a schedule — one supervisor.Job per
// stream, whose health is its readiness — and exports what it finds as
// headway_retention_* metrics (docs/metrics.md); service.Service.AddRetention
// adds it to a service. ADR-020 records the rule.
package retention

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// Policy bounds what Trim removes beyond what the groups need, and how
// long a stream may grow while a group holds it back.
type Policy struct {
	// MinAge keeps the entries younger than this (by their ID's
	// millisecond time), for replay and redrive. Zero keeps none by age.
	MinAge time.Duration
	// MinCount keeps at least this many of the newest entries. Zero keeps
	// none by count.
	MinCount int64
	// MaxAge and MaxLength bound the stream once trimmed: a stream whose
	// oldest entry is older than MaxAge, or that is longer than
	// MaxLength, is over its bound (Result.OverBound; the Keeper's metrics
	// and alert). Only a group that has not acknowledged its entries (a
	// slow or stopped one) keeps a stream over its bound. Zero: no bound.
	// MaxAge is at least MinAge and MaxLength at least MinCount.
	MaxAge    time.Duration
	MaxLength int64
	// TrimUnread trims the entries past MaxAge and MaxLength even when a
	// group has not acknowledged them: data loss, counted in
	// Result.TrimmedUnread, for an operator who would rather lose a
	// stopped group's backlog than Redis's memory. Off by default: the
	// stream grows and the bound alerts. With it, MaxLength goes with
	// MinCount only and MaxAge with MinAge only (a length bound could
	// trim entries younger than MinAge, an age bound the newest
	// MinCount).
	TrimUnread bool
	// DeadLetter trims a stream that has no group by the policy alone
	// (MinAge and MinCount keep; one of them is then required): a
	// dead-letter stream, which is read by ID (headway dlq) and never
	// through a group. Without it, a stream with no group keeps
	// everything. Groups a dead-letter stream does have are honoured as
	// on any stream.
	DeadLetter bool
}

// Validate reports a negative field, a maximum below its minimum,
// TrimUnread without a maximum or with a maximum of the other kind than a
// minimum, and DeadLetter without a minimum.
func (p Policy) Validate() error {
	switch {
	case p.MinAge < 0 || p.MinCount < 0 || p.MaxAge < 0 || p.MaxLength < 0:
		return fmt.Errorf("retention: negative MinAge (%v), MinCount (%d), MaxAge (%v) or MaxLength (%d)",
			p.MinAge, p.MinCount, p.MaxAge, p.MaxLength)
	case p.MaxAge > 0 && p.MaxAge < p.MinAge:
		return fmt.Errorf("retention: MaxAge %v is below MinAge %v", p.MaxAge, p.MinAge)
	case p.MaxLength > 0 && p.MaxLength < p.MinCount:
		return fmt.Errorf("retention: MaxLength %d is below MinCount %d", p.MaxLength, p.MinCount)
	case p.TrimUnread && p.MaxAge == 0 && p.MaxLength == 0:
		return errors.New("retention: TrimUnread needs MaxAge or MaxLength")
	case p.TrimUnread && ((p.MaxLength > 0 && p.MinAge > 0) || (p.MaxAge > 0 && p.MinCount > 0)):
		// Trimming to a length could remove entries younger than MinAge,
		// and trimming by age the newest MinCount: the policy's minimums
		// would not hold, and acknowledged entries would count as lost.
		return errors.New("retention: TrimUnread bounds the length with MinCount only, and the age with MinAge only (MaxLength with MinAge, or MaxAge with MinCount, could trim what the minimums keep)")
	case p.DeadLetter && p.MinAge == 0 && p.MinCount == 0:
		return errors.New("retention: a DeadLetter policy needs MinAge or MinCount (else it trims every dead letter)")
	}
	return nil
}

// Result is what one Trim did, and the stream as it left it.
type Result struct {
	// Trimmed is the number of entries removed that no group needed.
	Trimmed int64
	// TrimmedUnread is the number removed past MaxAge or MaxLength though
	// a group had not acknowledged them (Policy.TrimUnread): lost to that
	// group.
	TrimmedUnread int64
	// MinID is the ID trimmed to before any TrimmedUnread: entries with a
	// smaller ID are gone. Empty when the stream does not exist.
	MinID string
	// HeldBy is the group whose need set MinID, when one did (the slowest
	// group); empty when the policy's minimum age or count set it.
	HeldBy string
	// HeldPending and HeldLag are HeldBy's pending entries and entries not
	// yet delivered to it (XINFO GROUPS), before any TrimmedUnread:
	// together, what the stream keeps for that group. HeldLag is -1 when
	// Redis cannot tell (after some deletions).
	HeldPending, HeldLag int64
	// Length is the stream's length after the trim.
	Length int64
	// Oldest is the ID of the oldest entry left; empty when none is.
	Oldest string
	// OldestAge is the age of Oldest by its millisecond time (never
	// negative); zero when no entry is left.
	OldestAge time.Duration
	// OverBound reports a stream left longer than Policy.MaxLength or with
	// an entry older than Policy.MaxAge.
	OverBound bool
}

//go:embed trim.lua
var trimLua string

var trimScript = redis.NewScript(trimLua)

// Trim trims stream to the oldest entry a group still needs, or to what
// p keeps, whichever is older; with p.TrimUnread, past p's maximums too.
// A stream without groups keeps everything (no group has read any of it)
// unless p.DeadLetter. It returns what it did; a stream that does not
// exist is no error (Result.MinID is then empty).
func Trim(ctx context.Context, rdb redis.Scripter, stream string, p Policy) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	now := time.Now()
	// The age bounds as IDs: entries of an earlier millisecond are older.
	floor := "+" // no age bound: everything may go
	if p.MinAge > 0 {
		floor = msID(now.Add(-p.MinAge))
	}
	deadLetter := "0"
	if p.DeadLetter {
		deadLetter = "1"
	}
	forceAge, forceLen := "", int64(0)
	if p.TrimUnread {
		if p.MaxAge > 0 {
			forceAge = msID(now.Add(-p.MaxAge))
		}
		forceLen = p.MaxLength
	}
	v, err := trimScript.Run(ctx, rdb, []string{stream}, floor, p.MinCount, deadLetter, forceAge, forceLen).Slice()
	if err != nil {
		return Result{}, fmt.Errorf("retention: trim %s: %w", stream, err)
	}
	if len(v) != 8 {
		return Result{}, errors.New("retention: unexpected reply of the trim script")
	}
	r := Result{}
	r.Trimmed, _ = v[0].(int64)
	r.MinID, _ = v[1].(string)
	r.HeldBy, _ = v[2].(string)
	r.Length, _ = v[3].(int64)
	r.Oldest, _ = v[4].(string)
	r.HeldPending, _ = v[5].(int64)
	r.HeldLag, _ = v[6].(int64)
	r.TrimmedUnread, _ = v[7].(int64)
	if ms, ok := streamid.Millis(r.Oldest); ok {
		r.OldestAge = max(0, now.Sub(time.UnixMilli(int64(ms))))
	}
	r.OverBound = (p.MaxLength > 0 && r.Length > p.MaxLength) || (p.MaxAge > 0 && r.OldestAge > p.MaxAge)
	return r, nil
}

// msID returns the first stream ID of t's millisecond.
func msID(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) + "-0" }
