package dedup_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/headwaylabs/headway/dedup"
)

// BenchmarkPostgresInbox compares, on the real PostgreSQL, the inbox with
// one transaction per event (Process, 8 at a time as the consumer's
// default concurrency) and with one transaction per batch (ProcessBatch,
// each event in a savepoint), each event writing one row of its own. The
// figure is events/s; synchronous_commit is the server's (on by default).
// Figures and what bounds each are in docs/performance.md.
func BenchmarkPostgresInbox(b *testing.B) {
	for _, c := range []struct {
		name         string
		batch, lanes int
		set          bool
	}{{"per-event/8", 1, 8, false}, {"batch-64/8", 64, 8, false}, {"batch-500/1", 500, 1, false},
		{"set-500/1", 500, 1, true}, {"set-500/2", 500, 2, true}} {
		b.Run(c.name, func(b *testing.B) {
			s, db := newPostgresStore(b, dedup.PostgresConfig{})
			ctx := context.Background()
			if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			work := func(id string) dedup.Func { return insertFn("effects", id, false) }
			b.ResetTimer()
			var wg sync.WaitGroup
			for range c.lanes {
				wg.Go(func() {
					for {
						first := next.Add(int64(c.batch)) - int64(c.batch)
						if first >= int64(b.N) {
							return
						}
						n := min(int64(c.batch), int64(b.N)-first)
						keys, fns := make([]dedup.Key, n), make([]dedup.Func, n)
						for i := range n {
							id := fmt.Sprintf("e%09d", first+i)
							keys[i], fns[i] = dedup.Key{Scope: "bench", EventID: id}, work(id)
						}
						if c.batch == 1 {
							if o, err := s.Process(ctx, keys[0], fns[0]); err != nil || o != dedup.Processed {
								b.Error(o, err)
								return
							}
							continue
						}
						out, errs := make([]dedup.Outcome, n), make([]error, n)
						if c.set {
							set := func(ctx context.Context, run []int, _ []error) error {
								tx, _ := dedup.Tx(ctx)
								ids := make([]string, len(run))
								for j, i := range run {
									ids[j] = keys[i].EventID
								}
								_, err := tx.Exec(ctx, "INSERT INTO effects (id) SELECT unnest($1::text[])", ids)
								return err
							}
							if err := s.ProcessSet(ctx, keys, set, out, errs); err != nil {
								b.Error(err)
								return
							}
							continue
						}
						if err := s.ProcessBatch(ctx, keys, fns, out, errs); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
