package dedup_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/dedup/deduptest"
	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
)

func newRedisStore(t *testing.T, cfg dedup.RedisConfig) *dedup.RedisStore {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	cfg.Client, cfg.Prefix = rdb, prefix+"dedup:"
	s, err := dedup.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRedisStoreConformance(t *testing.T) {
	deduptest.Run(t, func(t *testing.T) dedup.Store { return newRedisStore(t, dedup.RedisConfig{}) })
}

// TestRedisLeaseExpires: a worker that dies holding a lease blocks its event
// only for LeaseTTL.
func TestRedisLeaseExpires(t *testing.T) {
	s := newRedisStore(t, dedup.RedisConfig{LeaseTTL: 100 * time.Millisecond})
	ctx := context.Background()
	k := []dedup.Key{{Scope: "g", EventID: "e1"}}
	out := make([]dedup.Outcome, 1)
	if err := s.Claim(ctx, k, out); err != nil || out[0] != dedup.Processed {
		t.Fatalf("claim: %v %v", out, err)
	}
	// The claimer "dies": no Settle. Poll until the lease has expired.
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, err := s.Process(ctx, k[0], func(context.Context) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if o == dedup.Processed {
			break
		}
		if o != dedup.Busy || time.Now().After(deadline) {
			t.Fatalf("outcome %v before the lease expired, or it never expired", o)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisReleaseOnlyOwnLease: a store whose lease expired and was taken by
// another must not delete the other's lease when its handler fails.
func TestRedisReleaseOnlyOwnLease(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Client: rdb, Prefix: prefix, LeaseTTL: time.Minute}
	a, _ := dedup.NewRedis(cfg)
	b, _ := dedup.NewRedis(cfg)
	ctx := context.Background()
	k := dedup.Key{Scope: "g", EventID: "e1"}
	out := make([]dedup.Outcome, 1)
	if err := b.Claim(ctx, []dedup.Key{k}, out); err != nil || out[0] != dedup.Processed {
		t.Fatal(out, err)
	}
	if err := a.Settle(ctx, nil, []dedup.Key{k}); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(ctx, []dedup.Key{k}, out); err != nil || out[0] != dedup.Busy {
		t.Fatalf("b's lease was released by a: %v %v", out, err)
	}
}

func TestRedisStoreErrorsWrapErrStore(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	s, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	_, err := s.Process(ctx, dedup.Key{Scope: "g", EventID: "e"}, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, dedup.ErrStore) || ran {
		t.Fatalf("claim on a cancelled context: %v ran=%v; want ErrStore and no run", err, ran)
	}
	if _, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, LeaseTTL: -1}); err == nil {
		t.Error("negative LeaseTTL accepted")
	}
	if _, err := dedup.NewRedis(dedup.RedisConfig{Client: nil}); err == nil {
		t.Error("nil client accepted")
	}
}

func TestRedisExtendKeepsLease(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Client: rdb, Prefix: prefix, LeaseTTL: 200 * time.Millisecond}
	a, _ := dedup.NewRedis(cfg)
	b, _ := dedup.NewRedis(cfg)
	ctx := context.Background()
	k := []dedup.Key{{Scope: "g", EventID: "long"}}
	out := make([]dedup.Outcome, 1)
	if err := a.Claim(ctx, k, out); err != nil || out[0] != dedup.Processed {
		t.Fatal(out, err)
	}
	// a keeps renewing for three lease periods: b never gets the event.
	for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := a.Extend(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := b.Claim(ctx, k, out); err != nil || out[0] != dedup.Busy {
			t.Fatalf("b claimed a renewed lease: %v %v", out, err)
		}
	}
	// b's Extend of a lease it does not hold changes nothing.
	if err := b.Extend(ctx, k); err != nil {
		t.Fatal(err)
	}
	// a stops renewing: the lease expires and b may take the event.
	testkit.Eventually(t, 5*time.Second, "the lease expires once a stops renewing", func() bool {
		return b.Claim(ctx, k, out) == nil && out[0] == dedup.Processed
	})
}

// claimAll claims keys in s and fails the test on an error.
func claimAll(t *testing.T, s *dedup.RedisStore, keys ...dedup.Key) []dedup.Outcome {
	t.Helper()
	out := make([]dedup.Outcome, len(keys))
	if err := s.Claim(context.Background(), keys, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func keysOf(scope string, ids ...string) []dedup.Key {
	keys := make([]dedup.Key, len(ids))
	for i, id := range ids {
		keys[i] = dedup.Key{Scope: scope, EventID: id}
	}
	return keys
}

// TestRedisBatchLayout: a batch settled whole costs one write per event
// (the claim) and one for the batch: the event keys point to a batch key
// that holds "D", and all carry DoneTTL.
func TestRedisBatchLayout(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Client: rdb, Prefix: prefix, DoneTTL: time.Hour}
	s, _ := dedup.NewRedis(cfg)
	ctx := context.Background()
	keys := keysOf("g", "e1", "e2", "e3")
	claimAll(t, s, keys...)
	if err := s.Settle(ctx, keys, nil); err != nil {
		t.Fatal(err)
	}
	stored, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 4 {
		t.Fatalf("keys after a settled batch of 3: %v, want 3 event keys and 1 batch key", stored)
	}
	var pointer string
	for _, k := range keys {
		v, err := rdb.Get(ctx, prefix+"{g}:"+k.EventID).Result()
		if err != nil || len(v) < 3 || v[:2] != "B:" || (pointer != "" && v != pointer) {
			t.Fatalf("event key %s = %q, %v; want one shared batch pointer", k.EventID, v, err)
		}
		pointer = v
		if ttl := rdb.PTTL(ctx, prefix+"{g}:"+k.EventID).Val(); ttl < 59*time.Minute {
			t.Errorf("event key TTL %v, want DoneTTL", ttl)
		}
	}
	batchKey := prefix + "{g}#b:" + pointer[2:]
	if v, err := rdb.Get(ctx, batchKey).Result(); err != nil || v != "D" {
		t.Fatalf("batch key %s = %q, %v; want D", batchKey, v, err)
	}
	if ttl := rdb.PTTL(ctx, batchKey).Val(); ttl < 59*time.Minute {
		t.Errorf("batch key TTL %v, want DoneTTL", ttl)
	}
	// Another store sees them done.
	other, _ := dedup.NewRedis(cfg)
	for i, o := range claimAll(t, other, keys...) {
		if o != dedup.Duplicate {
			t.Errorf("%s: %v, want duplicate", keys[i].EventID, o)
		}
	}
}

// TestRedisPartialSettle: settling part of a batch records those keys and
// leaves the rest leased; the last settle decides for the rest, and a
// failed key is claimable again at once.
func TestRedisPartialSettle(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Client: rdb, Prefix: prefix}
	a, _ := dedup.NewRedis(cfg)
	b, _ := dedup.NewRedis(cfg)
	ctx := context.Background()
	k := keysOf("g", "a", "b", "c", "d", "e")
	claimAll(t, a, k...)
	if err := a.Settle(ctx, k[:1], k[1:2]); err != nil { // a done, b failed
		t.Fatal(err)
	}
	want := []dedup.Outcome{dedup.Duplicate, dedup.Processed, dedup.Busy, dedup.Busy, dedup.Busy}
	if got := claimAll(t, b, k...); !equalOutcomes(got, want) {
		t.Fatalf("after a partial settle: %v, want %v", got, want)
	}
	if err := b.Settle(ctx, nil, k[1:2]); err != nil { // b gives "b" back
		t.Fatal(err)
	}
	if err := a.Settle(ctx, k[2:4], k[4:]); err != nil { // c, d done, e failed: the rest
		t.Fatal(err)
	}
	want = []dedup.Outcome{dedup.Duplicate, dedup.Processed, dedup.Duplicate, dedup.Duplicate, dedup.Processed}
	if got := claimAll(t, b, k...); !equalOutcomes(got, want) {
		t.Fatalf("after the last settle: %v, want %v", got, want)
	}
}

// TestRedisFailedBatchIsFreeAtOnce: a batch whose handlers all failed
// leaves nothing leased.
func TestRedisFailedBatchIsFreeAtOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Client: rdb, Prefix: prefix}
	a, _ := dedup.NewRedis(cfg)
	b, _ := dedup.NewRedis(cfg)
	k := keysOf("g", "x", "y")
	claimAll(t, a, k...)
	if err := a.Settle(context.Background(), nil, k); err != nil {
		t.Fatal(err)
	}
	if got := claimAll(t, b, k...); !equalOutcomes(got, []dedup.Outcome{dedup.Processed, dedup.Processed}) {
		t.Fatalf("after a failed batch: %v, want both claimable", got)
	}
}

// TestRedisSettleAfterTakeover: a store whose lease expired and was taken
// over settles without freeing the new holder's key: a failed key stays
// leased by the new holder, a done key is leased or recorded done (the
// handler did succeed), never free.
func TestRedisSettleAfterTakeover(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	short := dedup.RedisConfig{Client: rdb, Prefix: prefix, LeaseTTL: 50 * time.Millisecond}
	a, _ := dedup.NewRedis(short)
	b, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix})
	c, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix})
	k := keysOf("g", "p", "q")
	claimAll(t, a, k...)
	testkit.Eventually(t, 5*time.Second, "a's lease expires and b takes both keys", func() bool {
		return equalOutcomes(claimAll(t, b, k...), []dedup.Outcome{dedup.Processed, dedup.Processed})
	})
	if err := a.Settle(context.Background(), k[:1], k[1:]); err != nil {
		t.Fatal(err)
	}
	if got := claimAll(t, c, k...); got[0] == dedup.Processed || got[1] != dedup.Busy {
		t.Fatalf("after the old holder settled: %v, want p busy or duplicate and q busy (b's lease intact)", got)
	}
}

// TestRedisEarlierFormat: keys written by the earlier layout ("D" when
// done, "L:<token>" while leased) keep their meaning.
func TestRedisEarlierFormat(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	s, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix})
	ctx := context.Background()
	rdb.Set(ctx, prefix+"{g}:old-done", "D", time.Minute)
	rdb.Set(ctx, prefix+"{g}:old-lease", "L:0123456789abcdef01234567", time.Minute)
	got := claimAll(t, s, keysOf("g", "old-done", "old-lease", "new")...)
	if !equalOutcomes(got, []dedup.Outcome{dedup.Duplicate, dedup.Busy, dedup.Processed}) {
		t.Fatalf("claim over earlier-format keys: %v, want duplicate, busy, processed", got)
	}
}

func equalOutcomes(a, b []dedup.Outcome) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRedisStoreOnCluster: the conformance suite and the batch layout on a
// three-node Redis Cluster. A claim reads the batch key an event key
// points to (a key the script is not given); it shares the event key's
// hash tag, so it is on the same node. Scopes with different tags land on
// different nodes.
func TestRedisStoreOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := cl.Client()
	n := 0
	deduptest.Run(t, func(t *testing.T) dedup.Store {
		n++
		s, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: fmt.Sprintf("conf%d:", n)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	a, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: "layout:"})
	b, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: "layout:"})
	ctx := context.Background()
	var keys []dedup.Key
	for _, scope := range []string{"rolling_service", "promotion_service", "g3", "g4"} {
		keys = append(keys, keysOf(scope, "e1", "e2", "e3")...)
	}
	out := make([]dedup.Outcome, len(keys))
	if err := a.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	// e1 done, e2 failed, e3 done in every scope.
	var done, failed []dedup.Key
	for _, k := range keys {
		if k.EventID == "e2" {
			failed = append(failed, k)
		} else {
			done = append(done, k)
		}
	}
	if err := a.Settle(ctx, done, failed); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		want := dedup.Duplicate
		if k.EventID == "e2" {
			want = dedup.Processed
		}
		if out[i] != want {
			t.Errorf("%s: %v, want %v", k, out[i], want)
		}
	}
}

// TestRedisFailedClaimReleasedLater: a claim whose reply is lost (Redis
// ran the script, the client timed out) and whose release fails too (the
// network is still down) leaves a lease on the batch's keys; the next
// Claim of the store releases it first, so the events are claimable at
// once rather than after LeaseTTL — a Redis restart or a network cut does
// not hold them for a whole lease.
func TestRedisFailedClaimReleasedLater(t *testing.T) {
	shared, prefix := redistest.Client(t)
	proxy, err := faultproxy.Start(shared.Options().Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := []dedup.Key{{Scope: "g", EventID: "e1"}, {Scope: "g", EventID: "e2"}}
	out := make([]dedup.Outcome, 2)
	if err := s.Claim(ctx, keys[:1], out[:1]); err != nil { // warm up: load the scripts, open a connection
		t.Fatal(err)
	}
	if err := s.Settle(ctx, keys[:1], nil); err != nil {
		t.Fatal(err)
	}
	keys = keys[1:]
	out = out[1:]

	proxy.Freeze()
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = s.Claim(cctx, keys, out)
	cancel()
	if !errors.Is(err, dedup.ErrStore) {
		t.Fatalf("claim through a frozen network: %v, want ErrStore", err)
	}
	proxy.Thaw() // the held claim reaches Redis now and leases e2
	testkit.Eventually(t, 5*time.Second, "the held claim's lease in Redis", func() bool {
		v, _ := shared.Get(ctx, prefix+"{g}:e2").Result()
		return strings.HasPrefix(v, "B:")
	})
	if err := s.Claim(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	if out[0] != dedup.Processed {
		t.Fatalf("claim after the network came back: %v, want processed (the orphaned lease released), not busy for LeaseTTL", out[0])
	}
}
