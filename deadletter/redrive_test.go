package deadletter

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/redistest"
)

// keys returns a source stream and its dead-letter stream under prefix,
// in one hash slot.
func keys(prefix string) (source, dlq string) {
	source = prefix + "events:{wallet}"
	return source, source + ":dlq"
}

// add appends a dead letter of source to dlq: original plus the dlq_*
// fields as the consumer writes them, dlq_stream set to from.
func add(t *testing.T, rdb redis.Cmdable, dlq, from string, original map[string]any) string {
	t.Helper()
	values := make([]any, 0, 2*len(original)+16)
	for k, v := range original {
		values = append(values, k, v)
	}
	values = append(values, FieldReason, "handler_permanent", FieldError, "ledger row missing",
		FieldGroup, "rolling_service", FieldConsumer, "pod-a", FieldID, "1747300000000-0",
		FieldDeliveries, "1", FieldAt, "2026-05-15T10:20:31Z")
	if from != "" {
		values = append(values, FieldStream, from)
	}
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: dlq, Values: values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRedriveMovesTheOriginalFields(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	source, dlq := keys(prefix)
	original := map[string]any{"event_id": "e1", "payload": `{"a":1}`, "x_extra": "kept"}
	id := add(t, rdb, dlq, source, original)
	// dlq_truncated is a dlq field too: it is not appended.
	truncated, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{"event_id", "e2", FieldTruncated, "left out: payload"}}).Result()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		id   string
		want map[string]any
	}{{id, original}, {truncated, map[string]any{"event_id": "e2"}}} {
		newID, err := Redrive(ctx, rdb, dlq, source, tc.id, nil)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := rdb.XRange(ctx, source, newID, newID).Result()
		if err != nil || len(msgs) != 1 || !maps.Equal(msgs[0].Values, tc.want) {
			t.Errorf("%s on the source stream: %v %v; want %v", newID, msgs, err, tc.want)
		}
	}
	if n := rdb.XLen(ctx, dlq).Val(); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

// A dead letter is left in place when it came from another stream, or has
// nothing to append; one without dlq_stream is taken as the source's.
func TestRedriveRefuses(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	source, dlq := keys(prefix)
	other := add(t, rdb, dlq, prefix+"events:{player}", map[string]any{"event_id": "o1"})
	empty := add(t, rdb, dlq, source, nil)
	if _, err := Redrive(ctx, rdb, dlq, source, other, nil); !errors.Is(err, ErrSourceMismatch) {
		t.Errorf("from another stream: %v, want ErrSourceMismatch", err)
	}
	if _, err := Redrive(ctx, rdb, dlq, source, empty, nil); !errors.Is(err, ErrNoFields) {
		t.Errorf("no original fields: %v, want ErrNoFields", err)
	}
	if n := rdb.XLen(ctx, dlq).Val(); n != 2 || rdb.Exists(ctx, source).Val() != 0 {
		t.Errorf("%d dead letters, source exists %d; want 2 and nothing appended", n, rdb.Exists(ctx, source).Val())
	}
	unnamed := add(t, rdb, dlq, "", map[string]any{"event_id": "u1"})
	if _, err := Redrive(ctx, rdb, dlq, source, unnamed, nil); err != nil {
		t.Errorf("without dlq_stream: %v", err)
	}
	if _, err := Redrive(ctx, rdb, dlq, source, "1-0", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("an ID never there: %v, want ErrNotFound", err)
	}
}

// A call of the redrive script sent again with its token (go-redis's
// retry after a lost reply) reports the move the first one made; another
// call, and an ID never dead-lettered, find nothing. The record of the
// move expires.
func TestRedriveScriptCalledAgainReportsItsMove(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	source, dlq := keys(prefix)
	id := add(t, rdb, dlq, source, map[string]any{"event_id": "again-1"})

	newID, again, err := redriveCall(ctx, rdb, dlq, source, id, "call-1", time.Minute)
	if err != nil || again || newID == "" {
		t.Fatalf("first call: %q, again %v, %v", newID, again, err)
	}
	got, again, err := redriveCall(ctx, rdb, dlq, source, id, "call-1", time.Minute)
	if err != nil || !again || got != newID {
		t.Fatalf("the call again: %q, again %v, %v; want %q, again true", got, again, err, newID)
	}
	if _, _, err := redriveCall(ctx, rdb, dlq, source, id, "call-2", time.Minute); !errors.Is(err, redis.Nil) {
		t.Errorf("another call: %v, want redis.Nil", err)
	}
	if _, _, err := redriveCall(ctx, rdb, dlq, source, "1-0", "call-3", time.Minute); !errors.Is(err, redis.Nil) {
		t.Errorf("an ID never there: %v, want redis.Nil", err)
	}
	if n := rdb.XLen(ctx, source).Val(); n != 1 || rdb.XLen(ctx, dlq).Val() != 0 {
		t.Errorf("%d on the stream, %d dead letters; want 1, 0", n, rdb.XLen(ctx, dlq).Val())
	}
	ks, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if k == source || k == dlq {
			continue
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s: time to live %v, want at most 1m", k, ttl)
		}
	}
}

// Redrive called again with the same token reports the move; with another
// token it finds the dead letter gone.
func TestRedriveWithATokenIsIdempotent(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	source, dlq := keys(prefix)
	id := add(t, rdb, dlq, source, map[string]any{"event_id": "tok-1"})
	opts := &RedriveOptions{Token: "job-42", MarkerTTL: 30 * time.Second}
	first, err := Redrive(ctx, rdb, dlq, source, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Redrive(ctx, rdb, dlq, source, id, opts); err != nil || again != first {
		t.Errorf("again with the token: %q, %v; want %q", again, err, first)
	}
	if _, err := Redrive(ctx, rdb, dlq, source, id, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("another call: %v, want ErrNotFound", err)
	}
	if ttl := rdb.PTTL(ctx, dlq+":redriven:"+id+":job-42").Val(); ttl <= 0 || ttl > 30*time.Second {
		t.Errorf("marker time to live %v, want at most 30s", ttl)
	}
	if n := rdb.XLen(ctx, source).Val(); n != 1 {
		t.Errorf("%d entries on the stream, want 1", n)
	}
}

// Redrives of one entry at once move it once: one succeeds, the others
// find it gone.
func TestRedriveConcurrentMovesOnce(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	source, dlq := keys(prefix)
	id := add(t, rdb, dlq, source, map[string]any{"event_id": "race-1"})
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = Redrive(ctx, rdb, dlq, source, id, nil) })
	}
	wg.Wait()
	moved := 0
	for _, err := range errs {
		switch {
		case err == nil:
			moved++
		case !errors.Is(err, ErrNotFound):
			t.Errorf("redrive: %v", err)
		}
	}
	if moved != 1 || rdb.XLen(ctx, source).Val() != 1 {
		t.Errorf("%d redrives succeeded, %d entries on the stream; want 1 and 1", moved, rdb.XLen(ctx, source).Val())
	}
}
