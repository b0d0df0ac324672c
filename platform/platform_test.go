package platform_test

import (
	"bytes"
	"go/build"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// The library takes a catalog; none of its packages carries the
// platform's (docs/architecture.md).
func TestLibraryDoesNotImportThePlatform(t *testing.T) {
	for _, dir := range []string{"brandguard", "consumer", "deadletter", "dedup", "event", "outbox", "readiness", "retention", "status", "supervisor"} {
		pkg, err := build.ImportDir("../"+dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(pkg.Imports, "github.com/headwaylabs/headway/platform") {
			t.Errorf("package %s imports platform", dir)
		}
	}
}

func TestCatalogIsValid(t *testing.T) {
	if err := platform.Catalog().Validate(); err != nil {
		t.Fatal(err)
	}
	if s, ok := platform.Catalog().Stream(platform.StreamWallet); !ok || s.Producer != platform.ServiceWallet {
		t.Errorf("wallet stream: %+v, %v", s, ok)
	}
}

func TestCatalogMatchesSpec(t *testing.T) {
	c := platform.Catalog()
	var names []string
	for _, s := range c.Streams {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "wallet,rolling,player,agent" {
		t.Fatalf("streams = %s, want wallet,rolling,player,agent (and no promotion stream)", got)
	}
	status := func(stream string, t event.Type) string {
		ti, ok := c.Lookup(stream, t)
		if !ok {
			return "absent"
		}
		return ti.Status.String()
	}
	want := map[string]map[event.Type]string{
		"wallet": {
			platform.BetSettledConfirmed: "emitted", platform.BetRolledBackConfirmed: "emitted",
			platform.RollingCompletedConfirmed: "emitted", platform.DepositApproved: "emitted", platform.WithdrawApproved: "emitted",
			platform.BetAuthorized: "reserved", platform.PromotionCredited: "reserved", platform.PromotionReversed: "reserved",
			platform.CouponExpired: "reserved", platform.BrandAwarePublishingBegins: "retired",
		},
		"rolling": {platform.RollingCompleted: "emitted", platform.RollingCanceled: "emitted"},
		"player":  {platform.PlayerRegistered: "emitted", platform.VIPLevelChanged: "reserved"},
		"agent": {
			platform.AgentWithdrawCreated: "emitted", platform.AgentWithdrawApproved: "emitted", platform.AgentWithdrawDeclined: "emitted",
			platform.AgentWithdrawPaid: "emitted", platform.AgentWithdrawPayDeclined: "emitted", platform.AgentCouponGranted: "emitted",
			platform.AgentCouponRecycled: "emitted", platform.AgentBalanceAdjusted: "emitted",
		},
	}
	for stream, types := range want {
		for typ, st := range types {
			if got := status(stream, typ); got != st {
				t.Errorf("%s on %s: %s, want %s", typ, stream, got, st)
			}
		}
	}
	wallet, _ := c.Stream("wallet")
	for _, typ := range []event.Type{platform.BetSettledConfirmed, platform.BetRolledBackConfirmed} {
		if got := strings.Join(wallet.ConsumersOf(typ), ","); got != "rolling_service,promotion_service" {
			t.Errorf("%s dispatched by %s", typ, got)
		}
	}
	for _, typ := range []event.Type{platform.RollingCompletedConfirmed, platform.DepositApproved, platform.WithdrawApproved} {
		if got := wallet.ConsumersOf(typ); len(got) != 0 {
			t.Errorf("%s must have no consumer, has %v", typ, got)
		}
	}
	if wallet.Key() != "events:{wallet}" || wallet.DeadLetterKey() != "events:{wallet}:dlq" {
		t.Errorf("keys %s %s", wallet.Key(), wallet.DeadLetterKey())
	}
	if s, ok := c.StreamByKey("events:{agent}"); !ok || s.Name != "agent" {
		t.Errorf("StreamByKey(events:{agent}) = %v, %v", s, ok)
	}
}

// TestGeneratedDocsAreCurrent fails when docs/event-catalog.{md,json} differ
// from what go generate would write.
func TestGeneratedDocsAreCurrent(t *testing.T) {
	c := platform.Catalog()
	js, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{"../docs/event-catalog.md": c.Markdown(), "../docs/event-catalog.json": js} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./platform and commit the result", path)
		}
	}
}
