package dedup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/dedup/deduptest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
)

func newRedisStore(t *testing.T, cfg dedup.RedisConfig) *dedup.RedisStore {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	cfg.Prefix = prefix + "dedup:"
	s, err := dedup.NewRedis(rdb, cfg)
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
	cfg := dedup.RedisConfig{Prefix: prefix, LeaseTTL: time.Minute}
	a, _ := dedup.NewRedis(rdb, cfg)
	b, _ := dedup.NewRedis(rdb, cfg)
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
	s, _ := dedup.NewRedis(rdb, dedup.RedisConfig{Prefix: prefix})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	_, err := s.Process(ctx, dedup.Key{Scope: "g", EventID: "e"}, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, dedup.ErrStore) || ran {
		t.Fatalf("claim on a cancelled context: %v ran=%v; want ErrStore and no run", err, ran)
	}
	if _, err := dedup.NewRedis(rdb, dedup.RedisConfig{LeaseTTL: -1}); err == nil {
		t.Error("negative LeaseTTL accepted")
	}
	if _, err := dedup.NewRedis(nil, dedup.RedisConfig{}); err == nil {
		t.Error("nil client accepted")
	}
}

func TestRedisExtendKeepsLease(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := dedup.RedisConfig{Prefix: prefix, LeaseTTL: 200 * time.Millisecond}
	a, _ := dedup.NewRedis(rdb, cfg)
	b, _ := dedup.NewRedis(rdb, cfg)
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
