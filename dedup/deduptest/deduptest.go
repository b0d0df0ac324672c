// Package deduptest is the conformance suite that every dedup.Store runs.
//
//	func TestConformance(t *testing.T) {
//		deduptest.Run(t, func(t *testing.T) dedup.Store { return newMyStore(t) })
//	}
//
// Each case gets a fresh store from the factory and a scope of its own.
// Stores that implement dedup.Batcher also run the batch cases, and those
// that implement dedup.TxBatcher the transactional batch cases.
package deduptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headwaylabs/headway/dedup"
)

// Run runs every conformance case against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) dedup.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s dedup.Store, scope string)
	}{
		{"RunsOnceThenDuplicate", runsOnceThenDuplicate},
		{"FailureIsNotRecorded", failureIsNotRecorded},
		{"PanicIsNotRecorded", panicIsNotRecorded},
		{"ConcurrentDuplicatesRunOnce", concurrentDuplicatesRunOnce},
		{"ScopesAreIndependent", scopesAreIndependent},
		{"HandlerSeesCallerContext", handlerSeesCallerContext},
		{"InvalidKey", invalidKey},
		{"Batch", batch},
		{"TxBatchOutcomes", txBatchOutcomes},
		{"TxBatchPartialFailure", txBatchPartialFailure},
		{"TxBatchRacingBatches", txBatchRacingBatches},
		{"TxBatchRedeliveredAfterCommit", txBatchRedeliveredAfterCommit},
		{"TxSetPartialFailure", txSetPartialFailure},
		{"TxSetRacingSets", txSetRacingSets},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			c.fn(t, s, fmt.Sprintf("conformance-%d-%d", time.Now().UnixNano(), i))
		})
	}
}

func ok(context.Context) error { return nil }

func process(t *testing.T, s dedup.Store, k dedup.Key, fn dedup.Func) (dedup.Outcome, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Process(ctx, k, fn)
}

func runsOnceThenDuplicate(t *testing.T, s dedup.Store, scope string) {
	k := dedup.Key{Scope: scope, EventID: "e1"}
	runs := 0
	fn := func(context.Context) error { runs++; return nil }
	for i, want := range []dedup.Outcome{dedup.Processed, dedup.Duplicate, dedup.Duplicate} {
		o, err := process(t, s, k, fn)
		if o != want || err != nil {
			t.Fatalf("call %d: %v, %v; want %v, nil", i, o, err, want)
		}
	}
	if runs != 1 {
		t.Fatalf("handler ran %d times, want 1", runs)
	}
}

var errHandler = errors.New("handler failed")

func failureIsNotRecorded(t *testing.T, s dedup.Store, scope string) {
	k := dedup.Key{Scope: scope, EventID: "e1"}
	o, err := process(t, s, k, func(context.Context) error { return errHandler })
	if o != dedup.Failed || !errors.Is(err, errHandler) {
		t.Fatalf("failing handler: %v, %v; want Failed and the handler's error", o, err)
	}
	ran := false
	o, err = process(t, s, k, func(context.Context) error { ran = true; return nil })
	if o != dedup.Processed || err != nil || !ran {
		t.Fatalf("redelivery after a failure: %v, %v, ran=%v; the event must run again", o, err, ran)
	}
	if o, _ := process(t, s, k, ok); o != dedup.Duplicate {
		t.Fatalf("after success: %v, want Duplicate", o)
	}
}

func panicIsNotRecorded(t *testing.T, s dedup.Store, scope string) {
	k := dedup.Key{Scope: scope, EventID: "e1"}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the handler's panic to reach the caller", r)
			}
		}()
		_, _ = process(t, s, k, func(context.Context) error { panic("boom") })
	}()
	ran := false
	o, err := process(t, s, k, func(context.Context) error { ran = true; return nil })
	if o != dedup.Processed || err != nil || !ran {
		t.Fatalf("after a panic: %v, %v, ran=%v; the event must run again", o, err, ran)
	}
}

func concurrentDuplicatesRunOnce(t *testing.T, s dedup.Store, scope string) {
	const n = 16
	k := dedup.Key{Scope: scope, EventID: "e1"}
	var runs atomic.Int32
	others := make(chan struct{}, n)
	start := make(chan struct{})
	outcomes := make([]dedup.Outcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outcomes[i], errs[i] = process(t, s, k, func(context.Context) error {
				runs.Add(1)
				// Hold the claim while the others try theirs, so the calls
				// overlap; a store that blocks them (a database lock) lets
				// this wait end by its timeout.
				deadline := time.After(200 * time.Millisecond)
				for range n - 1 {
					select {
					case <-others:
					case <-deadline:
						return nil
					}
				}
				return nil
			})
			others <- struct{}{}
		}()
	}
	close(start)
	wg.Wait()
	if r := runs.Load(); r != 1 {
		t.Fatalf("handler ran %d times for one event, want 1", r)
	}
	processed := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
		}
		switch outcomes[i] {
		case dedup.Processed:
			processed++
		case dedup.Duplicate, dedup.Busy:
		default:
			t.Errorf("call %d: outcome %v", i, outcomes[i])
		}
	}
	if processed != 1 {
		t.Fatalf("%d calls report Processed, want 1", processed)
	}
	if o, _ := process(t, s, k, ok); o != dedup.Duplicate {
		t.Fatalf("after the race: %v, want Duplicate", o)
	}
}

func scopesAreIndependent(t *testing.T, s dedup.Store, scope string) {
	for _, sc := range []string{scope + "-rolling", scope + "-promotion"} {
		if o, err := process(t, s, dedup.Key{Scope: sc, EventID: "shared"}, ok); o != dedup.Processed || err != nil {
			t.Fatalf("scope %s: %v, %v; each scope processes the event once", sc, o, err)
		}
	}
}

type ctxKey struct{}

func handlerSeesCallerContext(t *testing.T, s dedup.Store, scope string) {
	ctx := context.WithValue(context.Background(), ctxKey{}, "caller")
	var got any
	if _, err := s.Process(ctx, dedup.Key{Scope: scope, EventID: "e1"}, func(ctx context.Context) error {
		got = ctx.Value(ctxKey{})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != "caller" {
		t.Fatalf("handler context lost the caller's values: %v", got)
	}
}

func invalidKey(t *testing.T, s dedup.Store, scope string) {
	for _, k := range []dedup.Key{{Scope: scope}, {EventID: "e1"}} {
		ran := false
		_, err := process(t, s, k, func(context.Context) error { ran = true; return nil })
		if !errors.Is(err, dedup.ErrInvalidKey) || ran {
			t.Errorf("key %+v: %v, ran=%v; want ErrInvalidKey without running", k, err, ran)
		}
	}
}

func batch(t *testing.T, s dedup.Store, scope string) {
	b, isBatcher := s.(dedup.Batcher)
	if !isBatcher {
		t.Skip("store does not implement dedup.Batcher")
	}
	ctx := context.Background()
	key := func(id string) dedup.Key { return dedup.Key{Scope: scope, EventID: id} }
	if o, _ := process(t, s, key("done-before"), ok); o != dedup.Processed {
		t.Fatal("setup")
	}
	keys := []dedup.Key{key("a"), key("done-before"), key("b"), key("c")}
	out := make([]dedup.Outcome, len(keys))
	if err := b.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	want := []dedup.Outcome{dedup.Processed, dedup.Duplicate, dedup.Processed, dedup.Processed}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("first claim: %v, want %v", out, want)
		}
	}
	// A second claim while the leases are held: busy, never a second run.
	if err := b.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	if out[0] != dedup.Busy || out[1] != dedup.Duplicate || out[2] != dedup.Busy {
		t.Fatalf("claim of leased keys: %v, want busy/duplicate/busy/…", out)
	}
	// a and c succeeded, b failed.
	if err := b.Settle(ctx, []dedup.Key{key("a"), key("c")}, []dedup.Key{key("b")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	want = []dedup.Outcome{dedup.Duplicate, dedup.Duplicate, dedup.Processed, dedup.Duplicate}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("after settle: %v, want %v (the failed key is claimable again)", out, want)
		}
	}
	if err := b.Claim(ctx, keys, out[:1]); err == nil {
		t.Fatal("Claim with mismatched lengths must fail")
	}
}

// txBatch runs a ProcessBatch under a deadline.
func txBatch(t *testing.T, b dedup.TxBatcher, keys []dedup.Key, fns []dedup.Func) ([]dedup.Outcome, []error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, errs := make([]dedup.Outcome, len(keys)), make([]error, len(keys))
	err := b.ProcessBatch(ctx, keys, fns, out, errs)
	return out, errs, err
}

func asTxBatcher(t *testing.T, s dedup.Store) dedup.TxBatcher {
	t.Helper()
	b, ok := s.(dedup.TxBatcher)
	if !ok {
		t.Skip("store does not implement dedup.TxBatcher")
	}
	return b
}

// txBatchOutcomes: keys recorded before are duplicates and their fn does
// not run; a key repeated in the batch runs once (the repeat is busy);
// the rest are processed, in order, and recorded.
func txBatchOutcomes(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	key := func(id string) dedup.Key { return dedup.Key{Scope: scope, EventID: id} }
	if o, err := process(t, s, key("before"), ok); o != dedup.Processed || err != nil {
		t.Fatalf("setup: %v %v", o, err)
	}
	var order []string
	run := func(id string) dedup.Func {
		return func(context.Context) error { order = append(order, id); return nil }
	}
	keys := []dedup.Key{key("a"), key("before"), key("b"), key("a")}
	out, errs, err := txBatch(t, b, keys, []dedup.Func{run("a"), run("before"), run("b"), run("a-again")})
	if err != nil {
		t.Fatal(err)
	}
	want := []dedup.Outcome{dedup.Processed, dedup.Duplicate, dedup.Processed, dedup.Busy}
	for i := range want {
		if out[i] != want[i] || errs[i] != nil {
			t.Fatalf("outcomes %v (errors %v), want %v", out, errs, want)
		}
	}
	if fmt.Sprint(order) != "[a b]" {
		t.Errorf("ran %v, want [a b] in that order", order)
	}
	for _, id := range []string{"a", "b"} {
		if o, _ := process(t, s, key(id), ok); o != dedup.Duplicate {
			t.Errorf("%s after the batch: %v, want duplicate (recorded)", id, o)
		}
	}
	if _, _, err := txBatch(t, b, keys, nil); err == nil {
		t.Error("a batch with mismatched lengths was accepted")
	}
	if _, _, err := txBatch(t, b, []dedup.Key{{Scope: scope}}, []dedup.Func{ok}); !errors.Is(err, dedup.ErrInvalidKey) {
		t.Errorf("invalid key: %v, want ErrInvalidKey", err)
	}
}

// txBatchPartialFailure: a failing fn fails alone — its key is not
// recorded, its neighbours are — and a panicking fn goes on up with
// nothing recorded.
func txBatchPartialFailure(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	key := func(id string) dedup.Key { return dedup.Key{Scope: scope, EventID: id} }
	boom := errors.New("boom")
	keys := []dedup.Key{key("a"), key("fails"), key("c")}
	out, errs, err := txBatch(t, b, keys, []dedup.Func{ok, func(context.Context) error { return boom }, ok})
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || !errors.Is(errs[1], boom) || out[2] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (boom), processed", out, errs)
	}
	if o, _ := process(t, s, key("fails"), ok); o != dedup.Processed {
		t.Errorf("the failed key afterwards: %v, want processed (it was not recorded)", o)
	}
	if o, _ := process(t, s, key("c"), ok); o != dedup.Duplicate {
		t.Errorf("its neighbour afterwards: %v, want duplicate", o)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		_, _, _ = txBatch(t, b, []dedup.Key{key("p1"), key("p2")}, []dedup.Func{ok, func(context.Context) error { panic("handler panic") }})
	}()
	for _, id := range []string{"p1", "p2"} {
		if o, _ := process(t, s, key(id), ok); o != dedup.Processed {
			t.Errorf("%s after a batch that panicked: %v, want processed (nothing recorded)", id, o)
		}
	}
}

// txBatchRacingBatches: two consumers process batches of the same keys at
// once, in opposite orders; every key's fn succeeds exactly once in all,
// and neither batch fails (no deadlock).
func txBatchRacingBatches(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	const n = 50
	keys := make([]dedup.Key, n)
	for i := range keys {
		keys[i] = dedup.Key{Scope: scope, EventID: fmt.Sprintf("e%03d", i)}
	}
	var mu sync.Mutex
	runs := map[dedup.Key]int{}
	fnsFor := func(ks []dedup.Key) []dedup.Func {
		fns := make([]dedup.Func, len(ks))
		for i, k := range ks {
			fns[i] = func(context.Context) error { mu.Lock(); runs[k]++; mu.Unlock(); return nil }
		}
		return fns
	}
	reversed := make([]dedup.Key, n)
	for i, k := range keys {
		reversed[n-1-i] = k
	}
	var wg sync.WaitGroup
	outs := make([][]dedup.Outcome, 2)
	errs := make([]error, 2)
	for w, ks := range [][]dedup.Key{keys, reversed} {
		wg.Go(func() { outs[w], _, errs[w] = txBatch(t, b, ks, fnsFor(ks)) })
	}
	wg.Wait()
	for w := range errs {
		if errs[w] != nil {
			t.Fatalf("batch %d: %v", w, errs[w])
		}
	}
	processed := 0
	for w := range outs {
		for _, o := range outs[w] {
			if o == dedup.Processed {
				processed++
			} else if o != dedup.Duplicate {
				t.Errorf("batch %d: outcome %v, want processed or duplicate", w, o)
			}
		}
	}
	if processed != n {
		t.Errorf("%d keys processed across the two batches, want %d (each once)", processed, n)
	}
	for _, k := range keys {
		if runs[k] != 1 {
			t.Errorf("%s ran %d times, want once (a store whose second run can commit would not know to skip it)", k, runs[k])
		}
	}
}

// txBatchRedeliveredAfterCommit: a process that dies after the batch
// committed and before it acknowledged gets the same events again; they
// are duplicates, and their fns do not run again.
func txBatchRedeliveredAfterCommit(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	keys := []dedup.Key{{Scope: scope, EventID: "x"}, {Scope: scope, EventID: "y"}}
	runs := 0
	fn := func(context.Context) error { runs++; return nil }
	if out, _, err := txBatch(t, b, keys, []dedup.Func{fn, fn}); err != nil || out[0] != dedup.Processed || out[1] != dedup.Processed {
		t.Fatalf("first delivery: %v %v", out, err)
	}
	out, _, err := txBatch(t, b, keys, []dedup.Func{fn, fn})
	if err != nil || out[0] != dedup.Duplicate || out[1] != dedup.Duplicate || runs != 2 {
		t.Fatalf("redelivery: %v %v after %d runs, want duplicates and 2 runs", out, err, runs)
	}
}

// txSetPartialFailure: a set function that names one event failed is
// called again without it: that event is Failed with its error and not
// recorded, the others are recorded; a key recorded before is a
// Duplicate and never reaches the function; an error the function returns
// fails the whole call, and nothing of it is recorded.
func txSetPartialFailure(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	key := func(id string) dedup.Key { return dedup.Key{Scope: scope, EventID: id} }
	if o, _ := process(t, s, key("before"), ok); o != dedup.Processed {
		t.Fatal("setting up a recorded key:", o)
	}
	boom := errors.New("boom")
	keys := []dedup.Key{key("a"), key("fails"), key("before"), key("d")}
	var calls [][]int
	fn := func(_ context.Context, run []int, errs []error) error {
		calls = append(calls, append([]int(nil), run...))
		for j, i := range run {
			if keys[i].EventID == "fails" {
				errs[j] = boom
			}
		}
		return nil
	}
	out, errs := make([]dedup.Outcome, len(keys)), make([]error, len(keys))
	if err := b.ProcessSet(context.Background(), keys, fn, out, errs); err != nil {
		t.Fatal(err)
	}
	want := []dedup.Outcome{dedup.Processed, dedup.Failed, dedup.Duplicate, dedup.Processed}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("outcomes %v, errors %v, want %v", out, errs, want)
		}
	}
	if !errors.Is(errs[1], boom) || fmt.Sprint(calls) != "[[0 1 3] [0 3]]" {
		t.Errorf("error %v, calls %v: want boom, and calls [[0 1 3] [0 3]] (the duplicate left out, then the failed one)", errs[1], calls)
	}
	if o, _ := process(t, s, key("fails"), ok); o != dedup.Processed {
		t.Errorf("the failed key afterwards: %v, want processed (it was not recorded)", o)
	}
	if o, _ := process(t, s, key("d"), ok); o != dedup.Duplicate {
		t.Errorf("a key applied by the set afterwards: %v, want duplicate", o)
	}

	all := []dedup.Key{key("x1"), key("x2")}
	out, errs = make([]dedup.Outcome, 2), make([]error, 2)
	err := b.ProcessSet(context.Background(), all, func(context.Context, []int, []error) error { return boom }, out, errs)
	if err != nil || out[0] != dedup.Failed || out[1] != dedup.Failed || !errors.Is(errs[0], boom) {
		t.Fatalf("a failing set: %v, outcomes %v, errors %v; want both failed with boom", err, out, errs)
	}
	for _, k := range all {
		if o, _ := process(t, s, k, ok); o != dedup.Processed {
			t.Errorf("%s after a failed set: %v, want processed (nothing recorded)", k, o)
		}
	}
}

// txSetRacingSets: two consumers apply sets of the same keys at once, in
// opposite orders; every key is applied by exactly one of them, and
// neither set fails.
func txSetRacingSets(t *testing.T, s dedup.Store, scope string) {
	b := asTxBatcher(t, s)
	const n = 50
	keys := make([]dedup.Key, n)
	for i := range keys {
		keys[i] = dedup.Key{Scope: scope, EventID: fmt.Sprintf("k%02d", i)}
	}
	var mu sync.Mutex
	applied := map[dedup.Key]int{}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := range 2 {
		ks := slices.Clone(keys)
		if r == 1 {
			slices.Reverse(ks)
		}
		wg.Go(func() {
			out, es := make([]dedup.Outcome, n), make([]error, n)
			errs[r] = b.ProcessSet(context.Background(), ks, func(_ context.Context, run []int, _ []error) error {
				mu.Lock()
				defer mu.Unlock()
				for _, i := range run {
					applied[ks[i]]++
				}
				return nil
			}, out, es)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("set %d: %v", r, err)
		}
	}
	for _, k := range keys {
		if applied[k] != 1 {
			t.Errorf("%s applied %d times, want once", k, applied[k])
		}
	}
}
