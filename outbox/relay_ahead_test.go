package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// pipeHook slows every pipeline down, so that the relay's claim of the
// next batch is open while the current batch is appended, and fails the
// pipelines that carry the event failID.
type pipeHook struct {
	delay  time.Duration
	failID string
}

var errInjected = errors.New("injected pipeline failure")

func (h *pipeHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		time.Sleep(h.delay)
		if h.failID != "" && carries(cmds, h.failID) {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

func carries(cmds []redis.Cmder, eventID string) bool {
	for _, c := range cmds {
		if slices.Contains(c.Args(), any(eventID)) {
			return true
		}
	}
	return false
}

// claimRecord is what trackingStore saw of one claim.
type claimRecord struct {
	ids                []int64
	started            int64 // event number when Claim was called
	finished, released int64 // event numbers, 0 if not
	finishErr          error
}

// trackingStore wraps a store and records every claim: when it was
// opened, finished or given back, how many were open at once, and
// whether each row a Finish marks published is already on the stream.
type trackingStore struct {
	outbox.Store
	onStream func() map[string]bool // the event ids on the stream

	mu      sync.Mutex
	events  int64
	open    int
	maxOpen int
	claims  []*claimRecord
	early   []string // rows marked published before they were on the stream
}

func (s *trackingStore) next() int64 { s.events++; return s.events }

func (s *trackingStore) Claim(ctx context.Context, limit int) (outbox.Claim, error) {
	s.mu.Lock()
	rec := &claimRecord{started: s.next()}
	s.mu.Unlock()
	c, err := s.Store.Claim(ctx, limit)
	if err != nil {
		return nil, err
	}
	for _, r := range c.Rows() {
		rec.ids = append(rec.ids, r.ID)
	}
	s.mu.Lock()
	s.open++
	s.maxOpen = max(s.maxOpen, s.open)
	s.claims = append(s.claims, rec)
	s.mu.Unlock()
	return &trackingClaim{Claim: c, s: s, rec: rec}, nil
}

func (s *trackingStore) snapshot() (claims []claimRecord, open, maxOpen int, early []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.claims {
		claims = append(claims, *c)
	}
	return claims, s.open, s.maxOpen, slices.Clone(s.early)
}

type trackingClaim struct {
	outbox.Claim
	s    *trackingStore
	rec  *claimRecord
	done bool
}

func (c *trackingClaim) Finish(ctx context.Context, o outbox.Outcome) error {
	on := c.s.onStream()
	for _, r := range c.Rows() {
		if slices.Contains(o.Published, r.ID) && !on[r.Envelope.EventID] {
			c.s.mu.Lock()
			c.s.early = append(c.s.early, r.Envelope.EventID)
			c.s.mu.Unlock()
		}
	}
	err := c.Claim.Finish(ctx, o)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.rec.finished, c.rec.finishErr = c.s.next(), err
	c.close()
	return err
}

func (c *trackingClaim) Release() {
	c.Claim.Release()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if !c.done {
		c.rec.released = c.s.next()
	}
	c.close()
}

func (c *trackingClaim) close() {
	if !c.done {
		c.done = true
		c.s.open--
	}
}

// aheadFixture is a PostgreSQL outbox with rows of several aggregates, a
// Redis client with a pipeHook and a tracking store.
type aheadFixture struct {
	db    *pgtest.DB
	rdb   *redis.Client
	key   string
	ids   []string // event ids in outbox id order
	store *trackingStore
}

func newAheadFixture(t *testing.T, rows int, hook *pipeHook) *aheadFixture {
	t.Helper()
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	rdb.AddHook(hook)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	f := &aheadFixture{db: db, rdb: rdb, key: prefix + "events:{wallet}"}
	// Several transactions, each over 10 aggregates (writeEvents), as
	// producers would write them.
	for i := 0; i < rows; i += 50 {
		f.ids = append(f.ids, writeEvents(t, db, w, fmt.Sprintf("t%d", i/50), min(50, rows-i), 3)...)
	}
	pg, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	f.store = &trackingStore{Store: pg, onStream: func() map[string]bool {
		on := map[string]bool{}
		for _, id := range f.streamIDs(t) {
			on[id] = true
		}
		return on
	}}
	return f
}

func (f *aheadFixture) streamIDs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range streamEvents(t, f.rdb, f.key) {
		out = append(out, e.EventID)
	}
	return out
}

// TestRelayClaimsAheadInOrder: with appends slow enough that the next
// claim is always open before the current batch is finished, one relay
// still appends every row once, in id order (so per aggregate in commit
// order), never marks a row published before it is on the stream, and
// never holds more than two claims.
func TestRelayClaimsAheadInOrder(t *testing.T) {
	f := newAheadFixture(t, 400, &pipeHook{delay: 15 * time.Millisecond})
	runRelay(t, outbox.RelayConfig{Store: f.store, Client: f.rdb, BatchSize: 20, PollInterval: 20 * time.Millisecond})
	testkit.Eventually(t, 30*time.Second, "400 rows published", func() bool { return count(t, f.db, "published_at IS NULL") == 0 })
	if got := f.streamIDs(t); !slices.Equal(got, f.ids) {
		t.Fatalf("stream holds %d entries, not the %d rows once each in id order:\n got %v\nwant %v", len(got), len(f.ids), got, f.ids)
	}
	claims, _, maxOpen, early := f.store.snapshot()
	if len(early) > 0 {
		t.Fatalf("rows marked published before they were on the stream: %v", early)
	}
	if maxOpen != 2 {
		t.Fatalf("at most %d claims open at once; want 2 (the next batch claimed during the append, never more)", maxOpen)
	}
	// Each batch was claimed while the one before it was held: the claims
	// ahead skipped the held rows, and batches follow each other in id
	// order.
	var prev []int64
	for _, c := range claims {
		if len(c.ids) == 0 || c.finished == 0 {
			continue
		}
		if len(prev) > 0 && c.ids[0] <= prev[len(prev)-1] {
			t.Fatalf("batch %v was finished after batch %v; batches must follow id order", c.ids, prev)
		}
		prev = c.ids
	}
}

// TestRelayDropsClaimAheadOnFailure: when a batch's append fails, the
// batch claimed ahead of it is given back unchanged, not appended; the
// next batch is claimed only after the failure is recorded, as a relay
// without claiming ahead would.
func TestRelayDropsClaimAheadOnFailure(t *testing.T) {
	hook := &pipeHook{delay: 10 * time.Millisecond, failID: "t0-10"} // the second batch
	f := newAheadFixture(t, 50, hook)
	runRelay(t, outbox.RelayConfig{Store: f.store, Client: f.rdb, BatchSize: 10, PollInterval: 20 * time.Millisecond,
		Retry: backoff.Exponential{Initial: time.Hour, Max: time.Hour}, FailureLimit: 1000})
	testkit.Eventually(t, 30*time.Second, "all but the failed batch published", func() bool {
		return count(t, f.db, "published_at IS NULL") == 10
	})
	want := slices.Concat(f.ids[:10], f.ids[20:])
	if got := f.streamIDs(t); !slices.Equal(got, want) {
		t.Fatalf("stream = %v\nwant %v (the failed batch 11–20 kept for retry, the rest once in order)", got, want)
	}
	if n := count(t, f.db, "published_at IS NULL AND attempts = 1 AND last_error LIKE '%injected%'"); n != 10 {
		t.Fatalf("%d rows recorded as failed; want the 10 of the failed batch", n)
	}
	claims, _, _, early := f.store.snapshot()
	if len(early) > 0 {
		t.Fatalf("rows marked published before they were on the stream: %v", early)
	}
	var failedAt int64
	for _, c := range claims {
		if c.finished > 0 && c.finishErr == nil && len(c.ids) > 0 && c.ids[0] == f.rowID(t, 10) {
			failedAt = c.finished
		}
	}
	if failedAt == 0 {
		t.Fatal("the failing batch's Finish was not seen")
	}
	dropped := false
	for _, c := range claims {
		if c.started < failedAt && c.finished > failedAt {
			t.Fatalf("batch %v, claimed before the failure was recorded, was finished after it", c.ids)
		}
		if c.started < failedAt && c.released > failedAt && c.finished == 0 {
			dropped = true
		}
	}
	if !dropped {
		t.Fatal("no batch claimed ahead of the failing one was given back; the test did not exercise the look-ahead")
	}
}

// rowID returns the outbox id of the i-th row (0-based) in id order.
func (f *aheadFixture) rowID(t *testing.T, i int) int64 {
	t.Helper()
	var id int64
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT id FROM headway_outbox WHERE event_id = $1", f.ids[i]).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRelayStopReleasesClaimAhead: Serve returns only after both of its
// claims are finished or given back; no row stays locked, and every row
// marked published is on the stream.
func TestRelayStopReleasesClaimAhead(t *testing.T) {
	f := newAheadFixture(t, 300, &pipeHook{delay: 30 * time.Millisecond})
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: f.store, Client: f.rdb, BatchSize: 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	testkit.Eventually(t, 10*time.Second, "two claims open", func() bool {
		_, open, _, _ := f.store.snapshot()
		return open == 2
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, open, _, early := f.store.snapshot(); open != 0 || len(early) > 0 {
		t.Fatalf("after Serve returned: %d claims still open, rows published before their append: %v", open, early)
	}
	// Nothing stays locked: a claim of every row gets all unpublished
	// ones. A claim whose statement the cancel interrupted loses its
	// connection (pgx closes it), and PostgreSQL drops that backend's
	// locks only once it notices, so this is polled; a claim that was
	// never given back would keep its rows locked for good.
	unpublished := count(t, f.db, "published_at IS NULL")
	if unpublished == 0 {
		t.Fatal("the relay published every row before the stop; the test needs rows left")
	}
	testkit.Eventually(t, 5*time.Second, "a claim after stop gets every unpublished row", func() bool {
		c, err := f.store.Store.Claim(context.Background(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := len(c.Rows())
		c.Release()
		return n == unpublished
	})
	onStream := f.store.onStream()
	rows, err := f.db.Pool.Query(context.Background(), "SELECT event_id FROM headway_outbox WHERE published_at IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !onStream[id] {
			t.Fatalf("%s is marked published but not on the stream", id)
		}
	}
}

// TestPostgresStoreClaimBesideHeldClaim: a claim made while another is
// held gets the due rows the held one does not have — skipping a held
// range of consecutive ids, but never a row committed late inside the
// range of a held claim.
func TestPostgresStoreClaimBesideHeldClaim(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(c outbox.Claim) []string {
		var out []string
		for _, r := range c.Rows() {
			out = append(out, r.Envelope.EventID)
		}
		return out
	}
	claim := func(limit int) outbox.Claim {
		t.Helper()
		c, err := store.Claim(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
		return c
	}
	a := writeEvents(t, db, w, "a", 10, 3)
	late, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = late.Rollback(ctx) }()
	if err := w.Write(ctx, late, 3, env("late", "BET_SETTLED_CONFIRMED", "bet-1", 3)); err != nil {
		t.Fatal(err)
	}
	b := writeEvents(t, db, w, "b", 10, 3)

	// Consecutive ids held: the next claim takes what follows.
	c1 := claim(5)
	c2 := claim(5)
	if !slices.Equal(ids(c1), a[:5]) || !slices.Equal(ids(c2), a[5:]) {
		t.Fatalf("claims = %v, %v; want %v, %v", ids(c1), ids(c2), a[:5], a[5:])
	}
	c1.Release()
	c2.Release()

	// A held claim with a gap (the uncommitted row): once that row
	// commits, the next claim must take it.
	c3 := claim(100)
	if want := slices.Concat(a, b); !slices.Equal(ids(c3), want) {
		t.Fatalf("claim = %v, want %v", ids(c3), want)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if c4 := claim(100); !slices.Equal(ids(c4), []string{"late"}) {
		t.Fatalf("claim beside a held claim with a gap = %v, want the late row", ids(c4))
	}
}
