package outbox_test

import (
	"context"
	"testing"

	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
)

func TestPostgresStoreConformance(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db := migrated(t)
		s, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
		if err != nil {
			t.Fatal(err)
		}
		insert := func(t *testing.T, rows ...outbox.Row) []int64 {
			t.Helper()
			ids := make([]int64, len(rows))
			for i, r := range rows {
				e := &r.Envelope
				if err := db.Pool.QueryRow(context.Background(), `INSERT INTO headway_outbox (event_id, stream, event_type,
					schema_version, brand_id, owner_brand_id, aggregate_id, occurred_at, payload)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
					e.EventID, r.Stream, string(e.EventType), e.SchemaVersion, int64(e.BrandID), int64(r.OwnerBrand),
					e.AggregateID, e.OccurredAt, string(e.Payload)).Scan(&ids[i]); err != nil {
					t.Fatal(err)
				}
			}
			return ids
		}
		return outboxtest.Harness{Store: s, Insert: insert}
	})
}
