package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/event"
)

// shopCatalog is a small catalog of a made-up shop, shaped like a real
// one: a stream with consumers, emitted, reserved and (catalog-wide)
// retired types, and streams no one consumes yet.
func shopCatalog() *event.Catalog {
	return &event.Catalog{
		Streams: []event.StreamInfo{
			{Name: "orders", Producer: "order_service",
				Consumers: []event.ConsumerInfo{{Service: "billing_service", Dispatches: []event.Type{"ORDER_PLACED", "ORDER_CANCELLED"}}},
				Types: []event.TypeInfo{{Type: "ORDER_PLACED", Status: event.StatusEmitted}, {Type: "ORDER_CANCELLED", Status: event.StatusEmitted},
					{Type: "ORDER_SHIPPED", Status: event.StatusEmitted}, {Type: "ORDER_HELD", Status: event.StatusReserved}}},
			{Name: "billing", Producer: "billing_service",
				Types: []event.TypeInfo{{Type: "INVOICE_ISSUED", Status: event.StatusEmitted}, {Type: "INVOICE_PAID", Status: event.StatusEmitted}}},
			{Name: "users", Producer: "user_service",
				Types: []event.TypeInfo{{Type: "USER_REGISTERED", Status: event.StatusEmitted}, {Type: "USER_TIER_CHANGED", Status: event.StatusReserved}}},
			{Name: "audit", Producer: "audit_service",
				Types: []event.TypeInfo{{Type: "ACCESS_GRANTED", Status: event.StatusEmitted}}},
		},
		Retired: []event.TypeInfo{{Type: "SCHEMA_V2_BEGINS", Status: event.StatusRetired}},
	}
}

func TestShopCatalogIsValid(t *testing.T) {
	if err := shopCatalog().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *event.Catalog)
		want   string
	}{
		{"empty stream", func(c *event.Catalog) {
			c.Streams = append(c.Streams, event.StreamInfo{Name: "returns", Producer: "return_service"})
		}, "stream returns has no emitted type"},
		{"only reserved", func(c *event.Catalog) {
			c.Streams = append(c.Streams, event.StreamInfo{Name: "coupon", Producer: "x",
				Types: []event.TypeInfo{{Type: "COUPON_X", Status: event.StatusReserved}}})
		}, "stream coupon has no emitted type"},
		{"type on two streams", func(c *event.Catalog) {
			c.Streams[1].Types = append(c.Streams[1].Types, event.TypeInfo{Type: "ORDER_SHIPPED", Status: event.StatusEmitted})
		}, "type ORDER_SHIPPED is listed twice"},
		{"retired type also on a stream", func(c *event.Catalog) {
			c.Streams[2].Types = append(c.Streams[2].Types, event.TypeInfo{Type: "SCHEMA_V2_BEGINS", Status: event.StatusRetired})
		}, "type SCHEMA_V2_BEGINS is listed twice"},
		{"duplicate stream", func(c *event.Catalog) { c.Streams = append(c.Streams, c.Streams[3]) }, "stream audit is listed twice"},
		{"bad stream name", func(c *event.Catalog) { c.Streams[0].Name = "Order Stream" }, "is not a lower-case word"},
		{"bad type name", func(c *event.Catalog) { c.Streams[1].Types[0].Type = "invoice-issued" }, "is not UPPER_SNAKE_CASE"},
		{"no producer", func(c *event.Catalog) { c.Streams[2].Producer = "" }, "stream users has no producer"},
		{"invalid status", func(c *event.Catalog) { c.Streams[1].Types[1].Status = 0 }, "invalid status"},
		{"consumer of reserved type", func(c *event.Catalog) {
			c.Streams[0].Consumers[0].Dispatches = append(c.Streams[0].Consumers[0].Dispatches, "ORDER_HELD")
		}, "dispatches ORDER_HELD, which is not emitted there"},
		{"catalog-wide entry not retired", func(c *event.Catalog) { c.Retired[0].Status = event.StatusEmitted }, "want retired"},
		{"no streams", func(c *event.Catalog) { c.Streams = nil }, "no streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := shopCatalog()
			tt.mutate(c)
			err := c.Validate()
			if !errors.Is(err, event.ErrInvalidCatalog) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an ErrInvalidCatalog containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckDispatch(t *testing.T) {
	c := shopCatalog()
	if err := c.CheckDispatch("orders", []event.Type{"ORDER_PLACED", "ORDER_CANCELLED"}); err != nil {
		t.Fatalf("billing consumer's handlers refused: %v", err)
	}
	err := c.CheckDispatch("orders", []event.Type{"ORDER_PLACED", "ORDER_HELD",
		"SCHEMA_V2_BEGINS", "INVOICE_PAID", "NO_SUCH_EVENT"})
	var de *event.DispatchError
	if !errors.As(err, &de) || !errors.Is(err, event.ErrNotDispatchable) {
		t.Fatalf("err = %v, want *DispatchError matching ErrNotDispatchable", err)
	}
	want := `event: stream "orders": ORDER_HELD is reserved: declared, but no producer writes it yet; ` +
		`SCHEMA_V2_BEGINS is retired: no longer written; ` +
		`INVOICE_PAID is unknown on stream orders (it belongs to stream billing); ` +
		`NO_SUCH_EVENT is unknown to the catalog`
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if len(de.Problems) != 4 {
		t.Errorf("problems = %d, want 4", len(de.Problems))
	}
	if err := c.CheckDispatch("returns", []event.Type{"ORDER_PLACED"}); !errors.Is(err, event.ErrUnknownStream) {
		t.Errorf("returns stream: %v, want ErrUnknownStream", err)
	}
	if err := c.CheckEmit("users", "USER_TIER_CHANGED"); !errors.Is(err, event.ErrNotDispatchable) {
		t.Errorf("emitting a reserved type: %v, want refused", err)
	}
	if err := c.CheckEmit("users", "USER_REGISTERED"); err != nil {
		t.Errorf("emitting USER_REGISTERED: %v", err)
	}
}

func TestCatalogJSONExport(t *testing.T) {
	js, err := shopCatalog().JSON()
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
	if len(doc.Streams) != 4 || doc.Streams[0].Types[3].Status != event.StatusReserved || doc.Retired[0].Type != "SCHEMA_V2_BEGINS" ||
		doc.Streams[0].DeadLetterKey != "events:{orders}:dlq" {
		t.Fatalf("export does not read back: %+v", doc)
	}
}
