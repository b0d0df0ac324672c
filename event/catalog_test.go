package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

func TestPlatformCatalogIsValid(t *testing.T) {
	if err := platform.Catalog().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPlatformCatalogMatchesSpec(t *testing.T) {
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

func TestCatalogValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *event.Catalog)
		want   string
	}{
		{"empty stream", func(c *event.Catalog) {
			c.Streams = append(c.Streams, event.StreamInfo{Name: "promotion", Producer: "promotion_service"})
		}, "stream promotion has no emitted type"},
		{"only reserved", func(c *event.Catalog) {
			c.Streams = append(c.Streams, event.StreamInfo{Name: "coupon", Producer: "x",
				Types: []event.TypeInfo{{Type: "COUPON_X", Status: event.StatusReserved}}})
		}, "stream coupon has no emitted type"},
		{"type on two streams", func(c *event.Catalog) {
			c.Streams[1].Types = append(c.Streams[1].Types, event.TypeInfo{Type: platform.DepositApproved, Status: event.StatusEmitted})
		}, "type DEPOSIT_APPROVED is listed twice"},
		{"retired type also on a stream", func(c *event.Catalog) {
			c.Streams[2].Types = append(c.Streams[2].Types, event.TypeInfo{Type: platform.BrandAwarePublishingBegins, Status: event.StatusRetired})
		}, "type BRAND_AWARE_PUBLISHING_BEGINS is listed twice"},
		{"duplicate stream", func(c *event.Catalog) { c.Streams = append(c.Streams, c.Streams[3]) }, "stream agent is listed twice"},
		{"bad stream name", func(c *event.Catalog) { c.Streams[0].Name = "Wallet Stream" }, "is not a lower-case word"},
		{"bad type name", func(c *event.Catalog) { c.Streams[1].Types[0].Type = "rolling-completed" }, "is not UPPER_SNAKE_CASE"},
		{"no producer", func(c *event.Catalog) { c.Streams[2].Producer = "" }, "stream player has no producer"},
		{"invalid status", func(c *event.Catalog) { c.Streams[1].Types[1].Status = 0 }, "invalid status"},
		{"consumer of reserved type", func(c *event.Catalog) {
			c.Streams[0].Consumers[0].Dispatches = append(c.Streams[0].Consumers[0].Dispatches, platform.BetAuthorized)
		}, "dispatches BET_AUTHORIZED, which is not emitted there"},
		{"catalog-wide entry not retired", func(c *event.Catalog) { c.Retired[0].Status = event.StatusEmitted }, "want retired"},
		{"no streams", func(c *event.Catalog) { c.Streams = nil }, "no streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := platform.Catalog()
			tt.mutate(c)
			err := c.Validate()
			if !errors.Is(err, event.ErrInvalidCatalog) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an ErrInvalidCatalog containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckDispatch(t *testing.T) {
	c := platform.Catalog()
	if err := c.CheckDispatch("wallet", []event.Type{platform.BetSettledConfirmed, platform.BetRolledBackConfirmed}); err != nil {
		t.Fatalf("rolling consumer's handlers refused: %v", err)
	}
	err := c.CheckDispatch("wallet", []event.Type{platform.BetSettledConfirmed, platform.BetAuthorized,
		platform.BrandAwarePublishingBegins, platform.RollingCompleted, "NO_SUCH_EVENT"})
	var de *event.DispatchError
	if !errors.As(err, &de) || !errors.Is(err, event.ErrNotDispatchable) {
		t.Fatalf("err = %v, want *DispatchError matching ErrNotDispatchable", err)
	}
	want := `event: stream "wallet": BET_AUTHORIZED is reserved: declared, but no producer writes it yet; ` +
		`BRAND_AWARE_PUBLISHING_BEGINS is retired: no longer written; ` +
		`ROLLING_COMPLETED is unknown on stream wallet (it belongs to stream rolling); ` +
		`NO_SUCH_EVENT is unknown to the catalog`
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if len(de.Problems) != 4 {
		t.Errorf("problems = %d, want 4", len(de.Problems))
	}
	if err := c.CheckDispatch("promotion", []event.Type{platform.BetSettledConfirmed}); !errors.Is(err, event.ErrUnknownStream) {
		t.Errorf("promotion stream: %v, want ErrUnknownStream", err)
	}
	if err := c.CheckEmit("player", platform.VIPLevelChanged); !errors.Is(err, event.ErrNotDispatchable) {
		t.Errorf("emitting a reserved type: %v, want refused", err)
	}
	if err := c.CheckEmit("player", platform.PlayerRegistered); err != nil {
		t.Errorf("emitting PLAYER_REGISTERED: %v", err)
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

func TestCatalogJSONExport(t *testing.T) {
	js, err := platform.Catalog().JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Streams []struct {
			Name          string `json:"name"`
			DeadLetterKey string `json:"dead_letter_key"`
			Types         []event.TypeInfo
		}
		Retired []event.TypeInfo
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Streams) != 4 || doc.Streams[0].Types[5].Status != event.StatusReserved || doc.Retired[0].Type != platform.BrandAwarePublishingBegins ||
		doc.Streams[0].DeadLetterKey != "events:{wallet}:dlq" {
		t.Fatalf("export does not read back: %+v", doc)
	}
}
