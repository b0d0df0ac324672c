package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

func ExampleEncode() {
	fields, err := event.Encode(event.Envelope{
		EventID:       "01J0B7ZK6S3Q",
		EventType:     platform.BetSettledConfirmed,
		SchemaVersion: event.CurrentSchemaVersion,
		BrandID:       3,
		OccurredAt:    time.Date(2026, 5, 15, 10, 20, 30, 0, time.UTC),
		AggregateID:   "bet-77",
		Payload:       json.RawMessage(`{"amount":"12.50"}`),
	})
	if err != nil {
		panic(err)
	}
	for i := 0; i < len(fields); i += 2 {
		fmt.Printf("%s=%s\n", fields[i], fields[i+1])
	}
	// Output:
	// event_id=01J0B7ZK6S3Q
	// event_type=BET_SETTLED_CONFIRMED
	// schema_version=2
	// brand_id=3
	// occurred_at=2026-05-15T10:20:30Z
	// aggregate_id=bet-77
	// payload={"amount":"12.50"}
}

func ExampleDecode() {
	// msg.Values of a go-redis XMessage.
	values := map[string]any{
		"event_id": "01J0B7ZK6S3Q", "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2",
		"brand_id": "acme", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-77",
		"payload": `{"amount":"12.50"}`,
	}
	_, err := event.Decode(values)
	var fe *event.FieldError
	if errors.As(err, &fe) {
		fmt.Println("field:", fe.Field)
		fmt.Println("brand error:", errors.Is(err, event.ErrBadBrandID))
		fmt.Println(err)
	}
	// Output:
	// field: brand_id
	// brand error: true
	// event: brand_id: bad brand_id: "acme" is not a positive decimal integer
}

func ExampleCatalog_CheckDispatch() {
	c := platform.Catalog()
	// The rolling consumer's handlers pass.
	fmt.Println(c.CheckDispatch(platform.StreamWallet, []event.Type{platform.BetSettledConfirmed, platform.BetRolledBackConfirmed}))
	// A handler for a reserved type is refused at start-up.
	fmt.Println(c.CheckDispatch(platform.StreamWallet, []event.Type{platform.BetSettledConfirmed, platform.BetAuthorized}))
	// Output:
	// <nil>
	// event: stream "wallet": BET_AUTHORIZED is reserved: declared, but no producer writes it yet
}

func ExampleStreamKey() {
	fmt.Println(event.StreamKey(platform.StreamWallet))
	fmt.Println(event.DeadLetterKey(platform.StreamWallet))
	// Output:
	// events:{wallet}
	// events:{wallet}:dlq
}
