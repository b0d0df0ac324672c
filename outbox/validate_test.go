package outbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// Validate says what NewRelay and NewWriter would refuse, without
// connecting or registering anything.
func TestConfigValidate(t *testing.T) {
	db := pgtest.New(t)
	rdb, _ := redistest.Client(t)
	good := outbox.RelayConfig{Pool: db.Pool, Client: rdb}
	if err := good.Validate(); err != nil {
		t.Fatalf("a good relay config: %v", err)
	}
	for name, cfg := range map[string]outbox.RelayConfig{
		"no client":                {Pool: db.Pool},
		"bad table":                {Pool: db.Pool, Client: rdb, Table: "drop table"},
		"retry max below initial":  {Pool: db.Pool, Client: rdb, Retry: backoff.Exponential{Initial: time.Minute, Max: time.Second}},
		"op timeout past liveness": {Pool: db.Pool, Client: rdb, OpTimeout: 2 * time.Minute},
	} {
		if err := cfg.Validate(); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("relay config with %s: Validate = %v", name, err)
		}
		if _, err := outbox.NewRelay(cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("relay config with %s: NewRelay = %v (Validate and NewRelay disagree)", name, err)
		}
	}
	if err := (outbox.WriterConfig{Catalog: platform.Catalog()}).Validate(); err != nil {
		t.Errorf("the zero writer config: %v", err)
	}
	if err := (outbox.WriterConfig{Catalog: platform.Catalog(), Table: "Outbox"}).Validate(); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("writer config with a bad table: %v", err)
	}
}
