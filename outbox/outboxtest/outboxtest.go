// Package outboxtest is the conformance suite that every outbox.Store
// runs: parked rows leave the backlog and are never claimed, an operator
// lists, unparks and drops them, and a relay on the store parks a row it
// can never append without slowing the rows behind it.
//
//	func TestConformance(t *testing.T) {
//		outboxtest.Run(t, func(t *testing.T) outboxtest.Harness { return newHarness(t) })
//	}
//
// Each case gets a fresh, empty store from the factory. The relay cases
// use a Redis from internal/redistest.
package outboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// Store is an outbox store with the operator's methods for parked rows.
type Store interface {
	outbox.Store
	ListParked(ctx context.Context, limit int) ([]outbox.ParkedRow, error)
	Unpark(ctx context.Context, ids ...int64) ([]int64, error)
	DropParked(ctx context.Context, ids ...int64) ([]int64, error)
}

// Harness is a fresh store and a way to put rows in it.
type Harness struct {
	Store Store
	// Insert inserts rows as they are, without the Writer's checks — as an
	// older version or a hand-written INSERT could — and returns their ids
	// in order. Stream, OwnerBrand and Envelope are set; the rest is not.
	Insert func(t *testing.T, rows ...outbox.Row) []int64
}

// Run runs every conformance case against stores made by newHarness.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"ParkedRowsLeaveTheBacklog", parkedRowsLeaveTheBacklog},
		{"RelayParksRowThatNeverEncodes", relayParksRowThatNeverEncodes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newHarness(t)) })
	}
}

// Row returns a row of a valid event with id on stream.
func Row(stream, id string) outbox.Row {
	p, _ := json.Marshal(map[string]string{"id": id})
	return outbox.Row{Stream: stream, OwnerBrand: 3, Envelope: event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed,
		SchemaVersion: event.CurrentSchemaVersion, BrandID: 3, OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
		AggregateID: "bet-" + id, Payload: p}}
}

// TooLargeRow returns a row whose event is valid but encodes over the
// stream entry size limit: the relay can never append it.
func TooLargeRow(stream, id string) outbox.Row {
	r := Row(stream, id)
	r.Envelope.Payload = []byte(`"` + strings.Repeat("x", event.DefaultMaxEntryBytes) + `"`)
	return r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func claimIDs(t *testing.T, s outbox.Store) (outbox.Claim, []int64) {
	t.Helper()
	c, err := s.Claim(ctx(t), 100)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	var ids []int64
	for _, r := range c.Rows() {
		ids = append(ids, r.ID)
	}
	return c, ids
}

func backlog(t *testing.T, s outbox.Store) outbox.Backlog {
	t.Helper()
	b, err := s.Backlog(ctx(t))
	if err != nil {
		t.Fatalf("Backlog: %v", err)
	}
	return b
}

func parkedRowsLeaveTheBacklog(t *testing.T, h Harness) {
	s := h.Store
	ids := h.Insert(t, Row("s", "a"), Row("s", "b"), Row("s", "c"))
	a, b, c := ids[0], ids[1], ids[2]
	cl, got := claimIDs(t, s)
	if !slices.Equal(got, ids) {
		t.Fatalf("claimed %v, want %v", got, ids)
	}
	before := time.Now()
	if err := cl.Finish(ctx(t), outbox.Outcome{Published: []int64{a}, Failed: []int64{b}, LastError: "down",
		Backoff: backoff.Exponential{Initial: time.Millisecond, Max: time.Millisecond},
		Parked:  []outbox.Parked{{ID: c, Reason: "event: entry too large"}}}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if bl := backlog(t, s); bl.Rows != 1 || bl.Parked != 1 {
		t.Fatalf("Backlog after one publish, failure and park = %+v; want 1 row, 1 parked", bl)
	}
	// The failed row is due again soon; the parked one is never claimed.
	testkit.Eventually(t, 5*time.Second, "the failed row claimed again, without the parked one", func() bool {
		cl, got := claimIDs(t, s)
		cl.Release()
		if slices.Contains(got, c) {
			t.Fatalf("the parked row %d was claimed: %v", c, got)
		}
		return slices.Equal(got, []int64{b})
	})
	parked, err := s.ListParked(ctx(t), 0)
	if err != nil || len(parked) != 1 {
		t.Fatalf("ListParked = %+v, %v; want row %d", parked, err, c)
	}
	p := parked[0]
	if p.ID != c || p.EventID != "c" || p.Stream != "s" || p.EventType != platform.BetSettledConfirmed ||
		p.Reason != "event: entry too large" || p.ParkedAt.Before(before.Add(-time.Minute)) || p.CreatedAt.IsZero() {
		t.Fatalf("ListParked = %+v", p)
	}

	// Unpark takes parked rows only, and makes them due now.
	done, err := s.Unpark(ctx(t), c, a, 999999)
	if err != nil || !slices.Equal(done, []int64{c}) {
		t.Fatalf("Unpark(%d, %d, 999999) = %v, %v; want only %d", c, a, done, err, c)
	}
	if bl := backlog(t, s); bl.Rows != 2 || bl.Parked != 0 {
		t.Fatalf("Backlog after unpark = %+v; want 2 rows, none parked", bl)
	}
	cl, got = claimIDs(t, s)
	if !slices.Equal(got, []int64{b, c}) {
		cl.Release()
		t.Fatalf("claimed %v after unpark, want [%d %d]", got, b, c)
	}
	if err := cl.Finish(ctx(t), outbox.Outcome{Parked: []outbox.Parked{{ID: c, Reason: "again"}}}); err != nil {
		t.Fatalf("Finish: %v", err)
	}

	// DropParked deletes parked rows only.
	done, err = s.DropParked(ctx(t), b, c)
	if err != nil || !slices.Equal(done, []int64{c}) {
		t.Fatalf("DropParked(%d, %d) = %v, %v; want only %d", b, c, done, err, c)
	}
	if parked, err := s.ListParked(ctx(t), 0); err != nil || len(parked) != 0 {
		t.Fatalf("ListParked after drop = %+v, %v", parked, err)
	}
	if bl := backlog(t, s); bl.Rows != 1 || bl.Parked != 0 {
		t.Fatalf("Backlog after drop = %+v; want the failed row only", bl)
	}
}

// relayParksRowThatNeverEncodes: a row over the size limit, first in the
// table, then 100 good rows. The relay parks the bad row at its first
// claim with its reason, counts and logs it, never fails a cycle for it,
// and publishes every good row in order at once. Unparking it makes it
// parked again; dropping it removes it.
func relayParksRowThatNeverEncodes(t *testing.T, h Harness) {
	rdb, prefix := redistest.Client(t)
	key := prefix + "events:{wallet}"
	rows := []outbox.Row{TooLargeRow(key, "bad")}
	for i := range 100 {
		rows = append(rows, Row(key, fmt.Sprintf("good-%03d", i)))
	}
	ids := h.Insert(t, rows...)
	bad := ids[0]

	reg := prometheus.NewPedanticRegistry()
	var logs testkit.SyncBuffer
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: h.Store, Client: rdb, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), BatchSize: 10, PollInterval: 20 * time.Millisecond,
		InfoInterval: 20 * time.Millisecond, Retry: backoff.Exponential{Initial: time.Minute, Max: time.Hour}, FailureLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(c) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	start := time.Now()
	testkit.Eventually(t, 10*time.Second, "100 good rows on the stream", func() bool {
		n, err := rdb.XLen(context.Background(), key).Result()
		return err == nil && n == 100
	})
	t.Logf("100 good rows behind a row that never encodes published in %v", time.Since(start))
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("good-%03d", i); m.Values[event.FieldEventID] != want {
			t.Fatalf("entry %d is %v, want %s (id order)", i, m.Values[event.FieldEventID], want)
		}
	}
	parked, err := h.Store.ListParked(ctx(t), 0)
	if err != nil || len(parked) != 1 || parked[0].ID != bad || !strings.Contains(parked[0].Reason, "entry too large") {
		t.Fatalf("ListParked = %+v, %v; want row %d parked as too large", parked, err, bad)
	}
	if v := testutil.ToFloat64(gathered(t, reg, "headway_outbox_parked_total")); v != 1 {
		t.Fatalf("headway_outbox_parked_total = %v, want 1", v)
	}
	testkit.Eventually(t, 5*time.Second, "headway_outbox_parked_rows 1, backlog 0, relay ready", func() bool {
		snap := r.Watermark().Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return testutil.ToFloat64(gathered(t, reg, "headway_outbox_parked_rows")) == 1 && known && n == 0 &&
			r.Watermark().Status().Ready()
	})
	if f := r.Watermark().Snapshot().FailuresTotal; f != 0 {
		t.Fatalf("%d failed cycles: a row that never encodes is parked, not a failure", f)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "event_id=bad") ||
		!strings.Contains(l, "entry too large") {
		t.Fatalf("no error log naming the parked row and its reason:\n%s", l)
	}

	// Unparked as it is, it is parked again; dropped, it is gone.
	if got, err := h.Store.Unpark(ctx(t), bad); err != nil || !slices.Equal(got, []int64{bad}) {
		t.Fatalf("Unpark = %v, %v", got, err)
	}
	testkit.Eventually(t, 5*time.Second, "the unparked row parked again", func() bool {
		return testutil.ToFloat64(gathered(t, reg, "headway_outbox_parked_total")) == 2
	})
	if got, err := h.Store.DropParked(ctx(t), bad); err != nil || !slices.Equal(got, []int64{bad}) {
		t.Fatalf("DropParked = %v, %v", got, err)
	}
	testkit.Eventually(t, 5*time.Second, "headway_outbox_parked_rows 0 after the drop", func() bool {
		return testutil.ToFloat64(gathered(t, reg, "headway_outbox_parked_rows")) == 0
	})
	if n, _ := rdb.XLen(context.Background(), key).Result(); n != 100 {
		t.Fatalf("%d entries on the stream, want the 100 good ones", n)
	}
}

// gathered returns the one sample of the metric name in reg as a gauge.
func gathered(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sample"})
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				g.Add(m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				g.Add(m.GetGauge().GetValue())
			}
		}
	}
	return g
}
