package pgtest_test

import (
	"context"
	"testing"

	"github.com/headwaylabs/headway/internal/pgtest"
)

func TestSchemaIsolation(t *testing.T) {
	a, b := pgtest.New(t), pgtest.New(t)
	ctx := context.Background()
	if _, err := a.Pool.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatalf("schemas are not separate: %v", err)
	}
	var schema string
	if err := a.Pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil || schema != a.Schema {
		t.Fatalf("current_schema = %q, %v; want %q", schema, err, a.Schema)
	}
}
