package sqliteoutbox_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
	"github.com/headwaylabs/headway/outbox/sqliteoutbox"
)

func TestSQLiteStoreConformance(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, err := sqliteoutbox.Open(filepath.Join(t.TempDir(), "outbox.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		s, err := sqliteoutbox.New(sqliteoutbox.Config{DB: db})
		if err == nil {
			err = s.Migrate(context.Background())
		}
		if err != nil {
			t.Fatal(err)
		}
		insert := func(t *testing.T, rows ...outbox.Row) []int64 {
			t.Helper()
			ids := make([]int64, len(rows))
			for i, r := range rows {
				e := &r.Envelope
				if err := db.QueryRow(`INSERT INTO headway_outbox (event_id, stream, event_type, schema_version,
					brand_id, owner_brand_id, aggregate_id, occurred_at, payload, created_at)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
					e.EventID, r.Stream, string(e.EventType), e.SchemaVersion, int64(e.BrandID), int64(r.OwnerBrand),
					e.AggregateID, e.OccurredAt.UnixNano(), string(e.Payload), time.Now().UnixNano()).Scan(&ids[i]); err != nil {
					t.Fatal(err)
				}
			}
			s.Notify()
			return ids
		}
		return outboxtest.Harness{Store: s, Insert: insert}
	})
}
