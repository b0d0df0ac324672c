package event_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// TestRedisRoundTrip writes encoded envelopes to a real stream and decodes
// what XRANGE and XREADGROUP return: the codec must agree with what go-redis
// and the server do to the values, payload bytes included.
func TestRedisRoundTrip(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	key := prefix + event.StreamKey(platform.StreamWallet)

	in := []event.Envelope{validEnvelope(), validEnvelope()}
	in[1].EventID = "evt-2"
	in[1].TraceParent, in[1].TraceState = "", ""
	in[1].Payload = []byte(`{"note":"héllo \u00e9 ✓","n":[1,2.5,null]}`)
	for _, e := range in {
		fields, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(in) {
		t.Fatalf("read %d entries, want %d", len(msgs), len(in))
	}
	for i, m := range msgs {
		out, err := event.Decode(m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		if !equalEnvelope(in[i], out) {
			t.Errorf("entry %d changed through Redis:\n in %+v\nout %+v", i, in[i], out)
		}
	}

	if err := rdb.XGroupCreateMkStream(ctx, key, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{key, ">"}, Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range streams[0].Messages {
		if out, err := event.Decode(m.Values); err != nil || !equalEnvelope(in[i], out) {
			t.Errorf("XREADGROUP entry %d: %v %+v", i, err, out)
		}
	}
}
