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
	}{{"per-event/8", 1, 8}, {"batch-64/8", 64, 8}, {"batch-500/1", 500, 1}} {
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
