package brandguard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

func Example() {
	// A service reads MULTI_BRAND_ENFORCEMENT with
	// brandguard.ModeFromEnv(os.LookupEnv) and stops on its error.
	mode, err := brandguard.ParseMode("enforce")
	if err != nil {
		panic(err)
	}
	guard, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(),
		Mode:       mode,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	scope := guard.Scope(event.StreamKey(platform.StreamWallet), platform.ServiceRolling)

	entry := func(version, brand string) map[string]any {
		return map[string]any{
			"event_id": "e-" + version + "-" + brand, "event_type": "BET_SETTLED_CONFIRMED",
			"schema_version": version, "brand_id": brand, "occurred_at": "2026-05-15T10:20:30Z",
			"aggregate_id": "bet-1", "payload": "{}",
		}
	}
	for _, e := range []map[string]any{entry("2", "3"), entry("1", "3"), entry("2", "three")} {
		env, v := scope.Decode(e)
		fmt.Printf("%s: %s %s surface=%v\n", env.EventID, v.Action, v.Reason, v.Signal != nil)
	}
	// Output:
	// e-2-3: accept  surface=false
	// e-1-3: reject legacy_schema surface=true
	// e-2-three: reject unparseable_brand surface=false
}

func ExampleScope_CheckTarget() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := event.Envelope{EventID: "e-1", EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: 3}
	for _, mode := range []brandguard.Mode{brandguard.ModeObserve, brandguard.ModeEnforce} {
		guard, _ := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Mode: mode, Logger: quiet})
		scope := guard.Scope("events:{wallet}", "rolling_service")
		// The player the bet belongs to is of brand 4.
		brand, err := scope.CheckTarget(context.Background(), env, 4)
		fmt.Printf("%s: brand=%d err=%v\n", mode, brand, err)
	}
	// Output:
	// observe: brand=3 err=<nil>
	// enforce: brand=0 err=brandguard: envelope brand differs from target brand: event e-1 (BET_SETTLED_CONFIRMED) has brand 3, target has brand 4
}
