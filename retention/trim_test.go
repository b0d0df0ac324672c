package retention_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/retention"
)

func fill(t *testing.T, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"i", i}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// read delivers up to n new entries of stream to consumer c of group.
func read(t *testing.T, rdb redis.UniversalClient, stream, group string, n int64) []string {
	t.Helper()
	res, err := rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: group, Consumer: "c",
		Streams: []string{stream, ">"}, Count: n, Block: -1}).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range res {
		for _, m := range s.Messages {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func trim(t *testing.T, rdb redis.UniversalClient, stream string, p retention.Policy) retention.Result {
	t.Helper()
	r, err := retention.Trim(context.Background(), rdb, stream, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func first(t *testing.T, rdb redis.UniversalClient, stream string) string {
	t.Helper()
	m, err := rdb.XRangeN(context.Background(), stream, "-", "+", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		return ""
	}
	return m[0].ID
}

// TestTrimKeepsWhatGroupsNeed: Trim removes exactly the entries every
// group has acknowledged: not a group's pending entries, not the entries
// no group has been delivered yet, not the entries of a group created at
// 0 that has read nothing; the slowest group is named.
func TestTrimKeepsWhatGroupsNeed(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "trim"
	ids := fill(t, rdb, stream, 20)
	for _, g := range []string{"fast", "slow"} {
		if err := rdb.XGroupCreate(ctx, stream, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	// fast: all 20 delivered, all acknowledged but #12 and #15.
	got := read(t, rdb, stream, "fast", 20)
	var ack []string
	for i, id := range got {
		if i != 12 && i != 15 {
			ack = append(ack, id)
		}
	}
	rdb.XAck(ctx, stream, "fast", ack...)
	// slow: nothing read yet.
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 0 || r.HeldBy != "slow" || r.Length != 20 {
		t.Fatalf("with a group that has read nothing: %+v, want nothing trimmed, held by slow", r)
	}
	// slow: 8 delivered, the first 5 acknowledged: it needs #5 on.
	got = read(t, rdb, stream, "slow", 8)
	rdb.XAck(ctx, stream, "slow", got[:5]...)
	r := trim(t, rdb, stream, retention.Policy{})
	if r.Trimmed != 5 || r.HeldBy != "slow" || first(t, rdb, stream) != ids[5] {
		t.Fatalf("%+v, first entry %s: want 5 trimmed, held by slow, first entry %s", r, first(t, rdb, stream), ids[5])
	}
	// slow acknowledges everything it has: now fast's pending #12 holds.
	rdb.XAck(ctx, stream, "slow", got[5:]...)
	read(t, rdb, stream, "slow", 20)
	rdb.XAck(ctx, stream, "slow", ids[8:]...)
	r = trim(t, rdb, stream, retention.Policy{})
	if r.HeldBy != "fast" || first(t, rdb, stream) != ids[12] {
		t.Fatalf("%+v, first entry %s: want held by fast at its pending %s", r, first(t, rdb, stream), ids[12])
	}
	// Every pending entry still has its fields.
	for _, g := range []string{"fast", "slow"} {
		pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: g, Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pend {
			if m, _ := rdb.XRange(ctx, stream, p.ID, p.ID).Result(); len(m) != 1 {
				t.Errorf("%s's pending entry %s was trimmed", g, p.ID)
			}
		}
	}
}

// TestTrimGroupCreatedAtTheEnd: a group created at "$" never needs the
// entries before it; once it acknowledges what it reads, everything it has
// is trimmed, and entries appended after it are kept until read.
func TestTrimGroupCreatedAtTheEnd(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "trim"
	fill(t, rdb, stream, 10)
	if err := rdb.XGroupCreate(ctx, stream, "late", "$").Err(); err != nil {
		t.Fatal(err)
	}
	later := fill(t, rdb, stream, 3)
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 10 || r.Length != 3 || first(t, rdb, stream) != later[0] {
		t.Fatalf("%+v: want the 10 entries before the group trimmed, its 3 unread kept", r)
	}
	rdb.XAck(ctx, stream, "late", read(t, rdb, stream, "late", 10)...)
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 3 || r.Length != 0 {
		t.Fatalf("%+v: want the 3 acknowledged entries trimmed", r)
	}
}

// TestTrimPolicyKeeps: the policy's minimum count and age keep entries
// every group has acknowledged; a stream without groups keeps everything
// (no group has read it); a stream that does not exist is no error.
func TestTrimPolicyKeeps(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "trim"
	fill(t, rdb, stream, 10)
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 0 || r.Length != 10 {
		t.Fatalf("no groups: %+v, want nothing trimmed (every entry is unread)", r)
	}
	if err := rdb.XGroupCreate(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	rdb.XAck(ctx, stream, "g", read(t, rdb, stream, "g", 10)...)
	if r := trim(t, rdb, stream, retention.Policy{MinAge: time.Hour}); r.Trimmed != 0 {
		t.Fatalf("MinAge 1h: %+v, want nothing trimmed (every entry is younger)", r)
	}
	if r := trim(t, rdb, stream, retention.Policy{MinCount: 4}); r.Trimmed != 6 || r.Length != 4 || r.HeldBy != "" {
		t.Fatalf("all acknowledged, MinCount 4: %+v, want 6 trimmed", r)
	}
	if r := trim(t, rdb, stream, retention.Policy{MinCount: 2}); r.Trimmed != 2 || r.Length != 2 {
		t.Fatalf("all acknowledged, MinCount 2: %+v, want 2 more trimmed, 2 kept", r)
	}
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 2 || r.Length != 0 {
		t.Fatalf("all acknowledged, no policy: %+v, want the rest trimmed", r)
	}
	if r := trim(t, rdb, stream+":none", retention.Policy{}); r.MinID != "" || r.Trimmed != 0 {
		t.Fatalf("no stream: %+v", r)
	}
	if _, err := retention.Trim(ctx, rdb, stream, retention.Policy{MinCount: -1}); err == nil {
		t.Error("a negative MinCount was accepted")
	}
}

// TestTrimWhileAGroupReads: trims between reads and acknowledgements of a
// group that runs behind never remove an entry before the group has
// acknowledged it: every entry is delivered with its fields.
func TestTrimWhileAGroupReads(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "trim"
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for round := range 20 {
		fill(t, rdb, stream, 7)
		trim(t, rdb, stream, retention.Policy{})
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 5, Block: -1}).Result()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range res[0].Messages {
			if m.Values == nil {
				t.Fatalf("round %d: entry %s delivered without its fields", round, m.ID)
			}
			got = append(got, m.ID)
			seen[m.ID] = true
		}
		trim(t, rdb, stream, retention.Policy{})
		// Pending, not yet acknowledged: still there with its fields.
		for _, id := range got {
			if m, _ := rdb.XRange(ctx, stream, id, id).Result(); len(m) != 1 {
				t.Fatalf("round %d: pending entry %s trimmed", round, id)
			}
		}
		rdb.XAck(ctx, stream, "g", got...)
	}
	// Catch up: the rest is all there.
	for {
		got := read(t, rdb, stream, "g", 100)
		if len(got) == 0 {
			break
		}
		for _, id := range got {
			seen[id] = true
		}
		rdb.XAck(ctx, stream, "g", got...)
	}
	if len(seen) != 20*7 {
		t.Errorf("%d entries delivered, want %d: trimming removed unread entries", len(seen), 20*7)
	}
}

// TestTrimGroupRewoundBelowItsPending: a group moved back with XGROUP
// SETID below its oldest pending entry needs the entries from its new
// position, not only from that pending entry: they are kept.
func TestTrimGroupRewoundBelowItsPending(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "trim"
	ids := fill(t, rdb, stream, 10)
	if err := rdb.XGroupCreate(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	got := read(t, rdb, stream, "g", 8)
	rdb.XAck(ctx, stream, "g", got[:7]...) // entry 7 stays pending
	if err := rdb.XGroupSetID(ctx, stream, "g", ids[2]).Err(); err != nil {
		t.Fatal(err)
	}
	if r := trim(t, rdb, stream, retention.Policy{}); r.Trimmed != 3 || first(t, rdb, stream) != ids[3] {
		t.Fatalf("%+v: want entries 0-2 trimmed, the group's new position (after 2) kept", r)
	}
}

// TestPolicyValidate: the combinations Validate refuses.
func TestPolicyValidate(t *testing.T) {
	for name, p := range map[string]retention.Policy{
		"negative":                   {MinAge: -time.Second},
		"MaxAge below MinAge":        {MinAge: time.Hour, MaxAge: time.Minute},
		"MaxLength below MinCount":   {MinCount: 10, MaxLength: 5},
		"TrimUnread without a bound": {TrimUnread: true},
		"TrimUnread length with age": {MinAge: time.Hour, MaxLength: 100, TrimUnread: true},
		"TrimUnread age with count":  {MinCount: 10, MaxAge: time.Hour, TrimUnread: true},
		"DeadLetter keeping nothing": {DeadLetter: true},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, p)
		}
	}
	for _, p := range []retention.Policy{
		{}, {MinAge: time.Hour, MaxAge: 2 * time.Hour, TrimUnread: true}, {MinCount: 10, MaxLength: 100, TrimUnread: true},
		{MinAge: time.Hour, MaxLength: 100}, {DeadLetter: true, MinAge: time.Hour},
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v refused: %v", p, err)
		}
	}
}

// TestTrimOnMiniredis: the demo's embedded Redis reports a group that has
// read nothing at position "0", without a sequence part; the script reads
// it as 0-0 and keeps everything the group needs.
func TestTrimOnMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	fill(t, rdb, "s", 5)
	if err := rdb.XGroupCreate(ctx, "s", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := retention.Trim(ctx, rdb, "s", retention.Policy{})
	if err != nil || r.Trimmed != 0 || r.Length != 5 {
		t.Fatalf("%+v, %v: want nothing trimmed, the group has read nothing", r, err)
	}
	rdb.XAck(ctx, "s", "g", read(t, rdb, "s", "g", 2)...)
	if r, err := retention.Trim(ctx, rdb, "s", retention.Policy{}); err != nil || r.Trimmed != 2 || r.Length != 3 {
		t.Fatalf("%+v, %v: want the 2 acknowledged entries trimmed", r, err)
	}
}
