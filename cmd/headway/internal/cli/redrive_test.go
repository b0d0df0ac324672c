package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// redriveOutput is the JSON of dlq redrive.
type redriveOutput struct {
	DryRun  bool            `json:"dry_run"`
	Entries []RedriveResult `json:"entries"`
	Counts  map[string]int  `json:"counts"`
}

// startConsumer runs a rolling consumer on the wallet stream under prefix,
// with Redis dedup, until the test ends.
func startConsumer(t *testing.T, rdb redis.UniversalClient, prefix string, h consumer.Handler) {
	t.Helper()
	stream, _ := walletKeys(prefix)
	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(),
		Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet,
		Group: platform.ServiceRolling, Consumer: "pod-a",
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h, platform.BetRolledBackConfirmed: h},
		Dedup:    store, Block: 50 * time.Millisecond, InfoInterval: 50 * time.Millisecond,
		Retry:  consumer.RetryPolicy{Attempts: 1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("consumer did not stop")
		}
	})
}

func publish(t *testing.T, rdb redis.UniversalClient, stream string, e event.Envelope) string {
	t.Helper()
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fieldsOf(t, e)}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRedriveRoundTrip dead-letters an event through a real consumer (its
// handler fails permanently the first time), lists, shows and redrives it
// with the command line, and sees the consumer apply it exactly once.
func TestRedriveRoundTrip(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, dlq := walletKeys(prefix)

	var (
		mu      sync.Mutex
		calls   = map[string]int{}
		applied = map[string]int{}
	)
	startConsumer(t, rdb, prefix, func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		id := m.Envelope.EventID
		calls[id]++
		if id == "rt-1" && calls[id] == 1 {
			return consumer.Permanent(errors.New("ledger row missing"))
		}
		applied[id]++
		return nil
	})
	count := func(m map[string]int, id string) int {
		mu.Lock()
		defer mu.Unlock()
		return m[id]
	}

	sourceID := publish(t, rdb, stream, envelope("rt-1", platform.BetSettledConfirmed))
	testkit.Eventually(t, 10*time.Second, "the event dead-lettered", func() bool { return rdb.XLen(ctx, dlq).Val() == 1 })

	var list struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	decodeJSON(t, mustRun(t, "dlq", "list", "--prefix", prefix, "--json").stdout, &list)
	if len(list.DeadLetters) != 1 {
		t.Fatalf("list: %+v", list)
	}
	dl := list.DeadLetters[0]
	if dl.EventID != "rt-1" || dl.Reason != consumer.ReasonHandlerPermanent || dl.SourceID != sourceID ||
		dl.SourceStream != stream || dl.Deliveries != 1 || !strings.Contains(dl.Error, "ledger row missing") {
		t.Fatalf("dead letter: %+v", dl)
	}
	show := mustRun(t, "dlq", "show", "--prefix", prefix, dl.ID)
	if !strings.Contains(show.stdout, `"id":"rt-1"`) || !strings.Contains(show.stdout, "handler_permanent") {
		t.Errorf("show:\n%s", show.stdout)
	}

	// A dry run changes nothing.
	var dry redriveOutput
	decodeJSON(t, mustRun(t, "dlq", "redrive", "--prefix", prefix, "--id", dl.ID, "--dry-run", "--json").stdout, &dry)
	if !dry.DryRun || len(dry.Entries) != 1 || dry.Entries[0].Outcome != OutcomeWouldRedrive {
		t.Fatalf("dry run: %+v", dry)
	}
	if n := rdb.XLen(ctx, dlq).Val(); n != 1 {
		t.Fatalf("the dry run changed the dead-letter stream: %d entries", n)
	}

	r := mustRun(t, "dlq", "redrive", "--prefix", prefix, "--id", dl.ID)
	if !strings.Contains(r.stdout, "redriven as ") || !strings.Contains(r.stdout, "1 redriven") {
		t.Errorf("redrive output:\n%s", r.stdout)
	}
	testkit.Eventually(t, 10*time.Second, "the redriven event applied", func() bool { return count(applied, "rt-1") == 1 })

	// A later event applied means the consumer is past the redriven one.
	publish(t, rdb, stream, envelope("rt-2", platform.BetSettledConfirmed))
	testkit.Eventually(t, 10*time.Second, "a later event applied", func() bool { return count(applied, "rt-2") == 1 })
	if a, c := count(applied, "rt-1"), count(calls, "rt-1"); a != 1 || c != 2 {
		t.Errorf("rt-1 applied %d times in %d calls, want once in 2", a, c)
	}
	if n := rdb.XLen(ctx, dlq).Val(); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
	if ids := eventIDs(t, rdb, stream); ids["rt-1"] != 2 {
		t.Errorf("rt-1 is %d times on the stream, want the original and the redriven", ids["rt-1"])
	}
	testkit.Eventually(t, 10*time.Second, "nothing pending", func() bool {
		p, err := rdb.XPending(ctx, stream, platform.ServiceRolling).Result()
		return err == nil && p.Count == 0
	})

	// Redriving it again finds nothing.
	r = run(t, "dlq", "redrive", "--prefix", prefix, "--id", dl.ID)
	if r.code != ExitFailure || !strings.Contains(r.stdout, "not found") || !strings.Contains(r.stderr, "1 of 1 entries named by --id not redriven") {
		t.Errorf("second redrive: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestRedriveRestoresOriginalFields checks what lands on the stream: the
// original fields, exactly, without the dlq_* fields.
func TestRedriveRestoresOriginalFields(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	stream, _ := walletKeys(prefix)
	e := envelope("f1", platform.BetSettledConfirmed)
	e.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	want := fieldsOf(t, e)
	want["x_producer_extra"] = "kept"
	id := deadLetterRaw(t, rdb, prefix, want, "handler_permanent", 2)

	var out redriveOutput
	decodeJSON(t, mustRun(t, "dlq", "redrive", "--prefix", prefix, "--id", id+","+id, "--json").stdout, &out)
	if len(out.Entries) != 1 || out.Entries[0].Outcome != OutcomeRedriven || out.Counts[OutcomeRedriven] != 1 {
		t.Fatalf("redrive: %+v", out)
	}
	msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stream: %v %v", msgs, err)
	}
	if msgs[0].ID != out.Entries[0].NewID {
		t.Errorf("new ID %s, reported %s", msgs[0].ID, out.Entries[0].NewID)
	}
	if len(msgs[0].Values) != len(want) {
		t.Errorf("fields %v, want %v", msgs[0].Values, want)
	}
	for k, v := range want {
		if msgs[0].Values[k] != v {
			t.Errorf("field %s = %v, want %v", k, msgs[0].Values[k], v)
		}
	}
	if _, err := event.Decode(msgs[0].Values); err != nil {
		t.Errorf("the redriven entry does not decode: %v", err)
	}
}

func TestRedriveRefusesWhatConsumersRejectAgain(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, dlq := walletKeys(prefix)
	legacy := deadLetterRaw(t, rdb, prefix, legacyFields("old"), "legacy_schema", 1)
	broken := fieldsOf(t, envelope("broken", platform.BetSettledConfirmed))
	delete(broken, event.FieldOccurredAt)
	malformed := deadLetterRaw(t, rdb, prefix, broken, "malformed", 1)
	good := deadLetter(t, rdb, prefix, envelope("good", platform.BetSettledConfirmed), "max_deliveries")

	// Named by --id: refused, exit 1, nothing moved.
	r := run(t, "dlq", "redrive", "--prefix", prefix, "--id", legacy)
	if r.code != ExitFailure || !strings.Contains(r.stdout, "legacy schema_version 1") || !strings.Contains(r.stdout, "--force") {
		t.Fatalf("legacy by id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if rdb.XLen(ctx, stream).Val() != 0 || rdb.XLen(ctx, dlq).Val() != 3 {
		t.Fatalf("a refused entry moved")
	}

	// Selected by --all: listed as refused, left in place, exit 0.
	var out redriveOutput
	decodeJSON(t, mustRun(t, "dlq", "redrive", "--prefix", prefix, "--all", "--json").stdout, &out)
	got := map[string]string{}
	for _, e := range out.Entries {
		got[e.ID] = e.Outcome
	}
	if got[legacy] != OutcomeRefused || got[malformed] != OutcomeRefused || got[good] != OutcomeRedriven {
		t.Fatalf("--all: %+v", out)
	}
	if ids := eventIDs(t, rdb, dlq); len(ids) != 2 || ids["old"] != 1 || ids["broken"] != 1 {
		t.Fatalf("dead letters left: %v", ids)
	}
	for _, e := range out.Entries {
		if e.ID == malformed && !strings.Contains(e.Why, "does not decode") {
			t.Errorf("malformed refused for %q", e.Why)
		}
	}

	// --force redrives them.
	mustRun(t, "dlq", "redrive", "--prefix", prefix, "--id", legacy+","+malformed, "--force")
	if ids := eventIDs(t, rdb, stream); len(ids) != 3 || ids["old"] != 1 || ids["broken"] != 1 || ids["good"] != 1 {
		t.Fatalf("stream after --force: %v", ids)
	}
	if n := rdb.XLen(ctx, dlq).Val(); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}
}

func TestRedriveSelection(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	stream, dlq := walletKeys(prefix)
	deadLetter(t, rdb, prefix, envelope("m1", platform.BetSettledConfirmed), "max_deliveries")
	deadLetter(t, rdb, prefix, envelope("p1", platform.BetSettledConfirmed), "handler_permanent")
	deadLetter(t, rdb, prefix, envelope("m2", platform.BetRolledBackConfirmed), "max_deliveries")
	deadLetter(t, rdb, prefix, envelope("m3", platform.BetSettledConfirmed), "max_deliveries")

	var dry redriveOutput
	decodeJSON(t, mustRun(t, "dlq", "redrive", "--prefix", prefix, "--reason", "max_deliveries", "--limit", "2", "--dry-run", "--json").stdout, &dry)
	if len(dry.Entries) != 2 || dry.Entries[0].EventID != "m1" || dry.Entries[1].EventID != "m2" || dry.Counts[OutcomeWouldRedrive] != 2 {
		t.Fatalf("dry run: %+v", dry)
	}
	r := mustRun(t, "dlq", "redrive", "--prefix", prefix, "--reason", "max_deliveries", "--limit", "2", "--dry-run")
	if !strings.Contains(r.stdout, "dry run, nothing changed: 2 would redrive") {
		t.Errorf("dry-run table:\n%s", r.stdout)
	}

	// The real run takes the same entries.
	mustRun(t, "dlq", "redrive", "--prefix", prefix, "--reason", "max_deliveries", "--limit", "2")
	if ids := eventIDs(t, rdb, stream); len(ids) != 2 || ids["m1"] != 1 || ids["m2"] != 1 {
		t.Fatalf("stream: %v", ids)
	}
	mustRun(t, "dlq", "redrive", "--prefix", prefix, "--type", "BET_SETTLED_CONFIRMED", "--reason", "max_deliveries")
	if ids := eventIDs(t, rdb, dlq); len(ids) != 1 || ids["p1"] != 1 {
		t.Fatalf("dead letters left: %v", ids)
	}
	if r := mustRun(t, "dlq", "redrive", "--prefix", prefix, "--reason", "malformed"); r.stdout != "no dead letters selected\n" {
		t.Errorf("empty selection: %q", r.stdout)
	}
}

// fillDLQ dead-letters n distinct events and returns their event IDs.
func fillDLQ(t *testing.T, rdb redis.UniversalClient, prefix string, n int) []string {
	t.Helper()
	_, dlq := walletKeys(prefix)
	stream, _ := walletKeys(prefix)
	ids := make([]string, n)
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range ids {
		ids[i] = "bulk-" + strconv.Itoa(i)
		values := []any{}
		for k, v := range fieldsOf(t, envelope(ids[i], platform.BetSettledConfirmed)) {
			values = append(values, k, v)
		}
		values = append(values, deadletter.FieldReason, consumer.ReasonMaxDeliveries, deadletter.FieldStream, stream,
			deadletter.FieldDeliveries, "5", deadletter.FieldError, "timeout")
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: values})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkExactlyOnce fails unless every event of ids is in exactly one of
// the stream and the dead-letter stream, once, and nothing else is there.
// It returns how many are on the stream.
func checkExactlyOnce(t *testing.T, rdb redis.UniversalClient, prefix string, ids []string) int {
	t.Helper()
	stream, dlq := walletKeys(prefix)
	onStream, inDLQ := eventIDs(t, rdb, stream), eventIDs(t, rdb, dlq)
	for _, id := range ids {
		if n := onStream[id] + inDLQ[id]; n != 1 {
			t.Errorf("%s: %d on the stream, %d in the dead-letter stream", id, onStream[id], inDLQ[id])
		}
	}
	if total := len(onStream) + len(inDLQ); total != len(ids) {
		t.Errorf("%d distinct events, want %d", total, len(ids))
	}
	return len(onStream)
}

// TestRedriveInterruptedInProcess stops a redrive between entries (the
// context is cancelled after the fifth) and finishes it with a second run.
func TestRedriveInterruptedInProcess(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ids := fillDLQ(t, rdb, prefix, 50)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &app{now: time.Now, afterRedrive: func(n int) {
		if n == 5 {
			cancel()
		}
	}}
	r := runApp(t, ctx, a, "dlq", "redrive", "--prefix", prefix, "--all")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "stopped after 5 entries") || !strings.Contains(r.stdout, "5 redriven") {
		t.Fatalf("interrupted redrive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := checkExactlyOnce(t, rdb, prefix, ids); n != 5 {
		t.Fatalf("%d moved, want 5", n)
	}
	mustRun(t, "dlq", "redrive", "--prefix", prefix, "--all")
	if n := checkExactlyOnce(t, rdb, prefix, ids); n != len(ids) {
		t.Fatalf("%d moved after the second run, want %d", n, len(ids))
	}
}

// TestConcurrentRedrivesDoNotDouble runs two redrives of the same entries
// at once: each entry moves once, by one of them.
func TestConcurrentRedrivesDoNotDouble(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ids := fillDLQ(t, rdb, prefix, 300)
	var (
		wg    sync.WaitGroup
		moved atomic.Int64
		outs  [2]redriveOutput
	)
	for i := range outs {
		wg.Go(func() {
			r := runApp(t, context.Background(), &app{now: time.Now}, "dlq", "redrive", "--prefix", prefix, "--all", "--json")
			if r.code != ExitOK {
				t.Errorf("redrive %d: exit %d: %s", i, r.code, r.stderr)
				return
			}
			if err := jsonUnmarshal(r.stdout, &outs[i]); err != nil {
				t.Error(err)
			}
			moved.Add(int64(outs[i].Counts[OutcomeRedriven]))
		})
	}
	wg.Wait()
	if n := checkExactlyOnce(t, rdb, prefix, ids); n != len(ids) {
		t.Fatalf("%d on the stream, want %d", n, len(ids))
	}
	if m := moved.Load(); m != int64(len(ids)) {
		t.Errorf("the two runs report %d redriven together, want %d", m, len(ids))
	}
}

// rejectAgain stands for a consumer that rejects every entry redriven to
// the wallet stream under prefix: each entry that appears on the stream is
// dead-lettered again (appended to the dead-letter stream with its dlq_*
// fields), and one token per entry is sent on the returned channel. The
// returned stop function ends it and waits for it.
func rejectAgain(t *testing.T, rdb redis.UniversalClient, prefix string) (<-chan struct{}, func()) {
	t.Helper()
	stream, dlq := walletKeys(prefix)
	ctx, cancel := context.WithCancel(context.Background())
	redead := make(chan struct{}, 100_000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := "0"
		for ctx.Err() == nil {
			res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, last}, Block: 50 * time.Millisecond}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("reading the stream: %v", err)
				}
				return
			}
			for _, m := range res[0].Messages {
				last = m.ID
				values := make([]any, 0, 2*len(m.Values)+12)
				for k, v := range m.Values {
					values = append(values, k, v)
				}
				values = append(values, deadletter.FieldReason, consumer.ReasonMaxDeliveries,
					deadletter.FieldStream, stream, deadletter.FieldGroup, platform.ServiceRolling,
					deadletter.FieldID, m.ID, deadletter.FieldDeliveries, "5",
					deadletter.FieldAt, time.Now().UTC().Format(time.RFC3339Nano))
				if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: dlq, Values: values}).Err(); err != nil {
					t.Errorf("dead-lettering %s again: %v", m.ID, err)
					return
				}
				redead <- struct{}{}
			}
		}
	}()
	return redead, func() { cancel(); <-done }
}

// TestRedriveTakesTheEntriesOfItsStart redrives more than one page of dead
// letters while a consumer dead-letters every redriven entry again. One run
// takes the entries there when it started: each event lands on the stream
// once, and the run does not go on to the entries it caused itself.
func TestRedriveTakesTheEntriesOfItsStart(t *testing.T) {
	t.Parallel()
	for _, sel := range [][]string{{"--all"}, {"--reason", consumer.ReasonMaxDeliveries}} {
		t.Run(sel[0], func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redistest.Client(t)
			stream, dlq := walletKeys(prefix)
			ids := fillDLQ(t, rdb, prefix, 2*scanPage+50) // three pages
			redead, stop := rejectAgain(t, rdb, prefix)
			defer stop()

			// Each move waits until the consumer has dead-lettered the entry
			// again, so the re-dead-lettered entries are in the dead-letter
			// stream before the scan reaches its end. A run that goes past
			// the entries it started with is stopped.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a := &app{now: time.Now, afterRedrive: func(n int) {
				if n > len(ids) {
					cancel()
					return
				}
				select {
				case <-redead:
				case <-time.After(20 * time.Second):
					t.Errorf("redriven entry %d not dead-lettered again", n)
					cancel()
				}
			}}
			args := append([]string{"dlq", "redrive", "--prefix", prefix, "--json"}, sel...)
			r := runApp(t, ctx, a, args...)
			stop()
			if r.code != ExitOK {
				t.Errorf("redrive: exit %d (a run that goes on past its %d entries is stopped)\n%s", r.code, len(ids), r.stderr)
			} else {
				var out redriveOutput
				decodeJSON(t, r.stdout, &out)
				if out.Counts[OutcomeRedriven] != len(ids) || len(out.Entries) != len(ids) {
					t.Errorf("%d entries, %d redriven, want %d", len(out.Entries), out.Counts[OutcomeRedriven], len(ids))
				}
			}
			onStream := eventIDs(t, rdb, stream)
			for _, id := range ids {
				if onStream[id] != 1 {
					t.Errorf("%s is %d times on the stream, want once", id, onStream[id])
				}
			}
			if len(onStream) != len(ids) {
				t.Errorf("%d distinct events on the stream, want %d", len(onStream), len(ids))
			}
			// Every entry was dead-lettered again, and is there for the next run.
			if n := rdb.XLen(context.Background(), dlq).Val(); n != int64(len(ids)) {
				t.Errorf("%d dead letters after the run, want the %d dead-lettered again", n, len(ids))
			}
		})
	}
}

// TestRedriveWarnsPastTheDedupWindow redrives dead letters of various ages:
// each one dead-lettered longer ago than --dedup-window gets a warning on
// stderr, dated by dlq_at, else its source entry ID, else its own ID.
func TestRedriveWarnsPastTheDedupWindow(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, dlq := walletKeys(prefix)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	msID := func(d time.Duration) string { return strconv.FormatInt(now.Add(-d).UnixMilli(), 10) + "-0" }
	add := func(id, eventID string, dlqFields ...any) string {
		t.Helper()
		values := []any{}
		for k, v := range fieldsOf(t, envelope(eventID, platform.BetSettledConfirmed)) {
			values = append(values, k, v)
		}
		values = append(values, deadletter.FieldReason, consumer.ReasonHandlerPermanent, deadletter.FieldStream, stream)
		values = append(values, dlqFields...)
		if id == "" {
			id = "*"
		}
		got, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, ID: id, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	day := 24 * time.Hour
	// Only its own ID dates it: 9 days old (added first: IDs increase).
	byOwnID := add(msID(9*day), "own-id")
	byAt := add("", "at-10d", deadletter.FieldAt, now.Add(-10*day).Format(time.RFC3339Nano),
		deadletter.FieldID, msID(30*day)) // dlq_at wins over dlq_id
	recent := add("", "at-1h", deadletter.FieldAt, now.Add(-time.Hour).Format(time.RFC3339))
	bySourceID := add("", "source-id-8d", deadletter.FieldID, msID(8*day))
	atEdge := add("", "at-7d", deadletter.FieldAt, now.Add(-7*day).Format(time.RFC3339)) // not past 168h
	legacy := deadLetterRaw(t, rdb, prefix, legacyFields("legacy"), "legacy_schema", 1)  // refused: no warning

	warned := func(stderr string) map[string]string {
		out := map[string]string{}
		for line := range strings.SplitSeq(strings.TrimSpace(stderr), "\n") {
			if !strings.HasPrefix(line, "warning: wallet ") {
				continue
			}
			id := strings.Fields(line)[2]
			out[id] = line
		}
		return out
	}
	redrive := func(args ...string) result {
		t.Helper()
		r := runApp(t, ctx, &app{now: func() time.Time { return now }}, append([]string{"dlq", "redrive", "--prefix", prefix, "--all"}, args...)...)
		if r.code != ExitOK {
			t.Fatalf("redrive %q: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		return r
	}

	r := redrive("--dry-run")
	w := warned(r.stderr)
	for id, age := range map[string]string{byOwnID: "9d00h", byAt: "10d00h", bySourceID: "8d00h"} {
		want := "dead-lettered " + age + " ago, past the dedup window: groups that applied it before may apply it again"
		if !strings.Contains(w[id], want) {
			t.Errorf("%s: warning %q, want %q", id, w[id], want)
		}
	}
	if !strings.Contains(w[byAt], "(event at-10d)") {
		t.Errorf("the warning does not name the event: %q", w[byAt])
	}
	for _, id := range []string{recent, atEdge, legacy} {
		if _, ok := w[id]; ok {
			t.Errorf("%s warned: %q", id, w[id])
		}
	}
	if len(w) != 3 {
		t.Errorf("%d warnings, want 3:\n%s", len(w), r.stderr)
	}
	if strings.Contains(r.stdout, "warning") {
		t.Errorf("a warning on stdout:\n%s", r.stdout)
	}

	// A wider window, or 0, warns of nothing.
	for _, window := range []string{"720h", "0"} {
		if r := redrive("--dry-run", "--dedup-window", window); r.stderr != "" {
			t.Errorf("--dedup-window %s: stderr %q", window, r.stderr)
		}
	}
	if r := redrive("--dry-run", "--dedup-window", "216h"); len(warned(r.stderr)) != 1 || warned(r.stderr)[byAt] == "" {
		t.Errorf("--dedup-window 216h: stderr %q, want the 10-day-old entry only", r.stderr)
	}

	// The run itself warns the same, with --json too.
	r = redrive("--json")
	if w := warned(r.stderr); len(w) != 3 || w[byOwnID] == "" || w[byAt] == "" || w[bySourceID] == "" {
		t.Errorf("redrive warnings:\n%s", r.stderr)
	}
	var out redriveOutput
	decodeJSON(t, r.stdout, &out)
	if out.Counts[OutcomeRedriven] != 5 || out.Counts[OutcomeRefused] != 1 {
		t.Errorf("counts %v", out.Counts)
	}

	if r := run(t, "dlq", "redrive", "--all", "--dedup-window", "-1h"); r.code != ExitUsage || !strings.Contains(r.stderr, "--dedup-window must not be negative") {
		t.Errorf("negative window: exit %d, %q", r.code, r.stderr)
	}
	if DefaultDedupWindow != dedup.DefaultDoneTTL {
		t.Errorf("DefaultDedupWindow %v, the Redis dedup store's DoneTTL %v", DefaultDedupWindow, dedup.DefaultDoneTTL)
	}
}
