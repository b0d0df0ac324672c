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
// This is the trimming rule; the supervised loop per stream, its metrics
// and its alerts are to come (issue 20).
package retention

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Policy bounds what Trim removes beyond what the groups need.
type Policy struct {
	// MinAge keeps the entries younger than this (by their ID's
	// millisecond time), for replay and redrive. Zero keeps none by age.
	MinAge time.Duration
	// MinCount keeps at least this many of the newest entries. Zero keeps
	// none by count.
	MinCount int64
}

// Validate reports a negative MinAge or MinCount.
func (p Policy) Validate() error {
	if p.MinAge < 0 || p.MinCount < 0 {
		return fmt.Errorf("retention: negative MinAge (%v) or MinCount (%d)", p.MinAge, p.MinCount)
	}
	return nil
}

// Result is what one Trim did.
type Result struct {
	// Trimmed is the number of entries removed.
	Trimmed int64
	// MinID is the MINID trimmed to: entries with a smaller ID are gone.
	// Empty when the stream does not exist.
	MinID string
	// HeldBy is the group whose need set MinID, when one did (the slowest
	// group); empty when the policy's minimum age or count set it.
	HeldBy string
	// Length is the stream's length after the trim.
	Length int64
}

//go:embed trim.lua
var trimLua string

var trimScript = redis.NewScript(trimLua)

// Trim trims stream to the oldest entry a group still needs, or to what
// p keeps, whichever is older. A stream without groups keeps everything:
// no group has read any of it. It returns what it did; a stream that does
// not exist is no error (Result.MinID is then empty).
func Trim(ctx context.Context, rdb redis.Scripter, stream string, p Policy) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	// The age bound as an ID: entries of an earlier millisecond are older.
	floor := "+" // no age bound: everything may go
	if p.MinAge > 0 {
		floor = strconv.FormatInt(time.Now().Add(-p.MinAge).UnixMilli(), 10) + "-0"
	}
	v, err := trimScript.Run(ctx, rdb, []string{stream}, floor, p.MinCount).Slice()
	if err != nil {
		return Result{}, fmt.Errorf("retention: trim %s: %w", stream, err)
	}
	if len(v) != 4 {
		return Result{}, errors.New("retention: unexpected reply of the trim script")
	}
	r := Result{}
	r.Trimmed, _ = v[0].(int64)
	r.MinID, _ = v[1].(string)
	r.HeldBy, _ = v[2].(string)
	r.Length, _ = v[3].(int64)
	return r, nil
}
