package deadletter_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/deadletter"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   deadletter.Letter
	}{
		{"every field", map[string]any{
			"event_id": "e1", "x_extra": "kept",
			deadletter.FieldReason: "max_deliveries", deadletter.FieldError: "timeout",
			deadletter.FieldStream: "events:{wallet}", deadletter.FieldGroup: "rolling_service",
			deadletter.FieldConsumer: "pod-a", deadletter.FieldID: "5-1",
			deadletter.FieldDeliveries: "5", deadletter.FieldAt: "2026-05-15T10:20:31Z",
			deadletter.FieldTruncated: "entry of 2000000 bytes in 7 fields; left out: payload",
		}, deadletter.Letter{ID: "9-0", Reason: "max_deliveries", Error: "timeout",
			SourceStream: "events:{wallet}", SourceID: "5-1", Group: "rolling_service", Consumer: "pod-a",
			Deliveries: 5, At: "2026-05-15T10:20:31Z",
			Truncated: "entry of 2000000 bytes in 7 fields; left out: payload",
			Fields:    map[string]string{"event_id": "e1", "x_extra": "kept"}}},
		{"no dlq fields", map[string]any{"event_id": "e2"},
			deadletter.Letter{ID: "9-0", Fields: map[string]string{"event_id": "e2"}}},
		{"no fields at all", nil, deadletter.Letter{ID: "9-0", Fields: map[string]string{}}},
		{"bytes and other values", map[string]any{"payload": []byte("{}"), "n": 3, deadletter.FieldDeliveries: "many"},
			deadletter.Letter{ID: "9-0", Fields: map[string]string{"payload": "{}", "n": "3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := deadletter.Parse(redis.XMessage{ID: "9-0", Values: tc.values})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestIsField(t *testing.T) {
	t.Parallel()
	for _, f := range []string{deadletter.FieldReason, deadletter.FieldError, deadletter.FieldStream, deadletter.FieldGroup,
		deadletter.FieldConsumer, deadletter.FieldID, deadletter.FieldDeliveries, deadletter.FieldAt, deadletter.FieldTruncated} {
		if !deadletter.IsField(f) {
			t.Errorf("IsField(%q) = false", f)
		}
	}
	for _, f := range []string{"event_id", "payload", "dlq_other", ""} {
		if deadletter.IsField(f) {
			t.Errorf("IsField(%q) = true", f)
		}
	}
}

func TestLetterTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 15, 10, 20, 31, 0, time.UTC)
	for _, tc := range []struct {
		name string
		l    deadletter.Letter
		want time.Time
		ok   bool
	}{
		{"dlq_at wins", deadletter.Letter{At: "2026-05-15T10:20:31Z", SourceID: "1000-0", ID: "2000-0"}, at, true},
		{"with a fraction and an offset", deadletter.Letter{At: "2026-05-15T12:20:31.5+02:00"}, at.Add(500 * time.Millisecond), true},
		{"else the source ID", deadletter.Letter{At: "yesterday", SourceID: "1747300000000-3", ID: "2000-0"}, time.UnixMilli(1747300000000), true},
		{"else its own ID", deadletter.Letter{SourceID: "junk", ID: "1747300000001-0"}, time.UnixMilli(1747300000001), true},
		{"a zero ID gives none", deadletter.Letter{ID: "0-1"}, time.Time{}, false},
		{"an ID past int64 gives none", deadletter.Letter{ID: "18446744073709551615-0"}, time.Time{}, false},
		{"nothing", deadletter.Letter{}, time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tc.l.Time()
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("Time() = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParse: Parse never panics, every value lands in exactly one place,
// and what it reads as original fields are no dlq_* fields.
func FuzzParse(f *testing.F) {
	f.Add("1-0", deadletter.FieldDeliveries, "5", "event_id", "e1")
	f.Add("", deadletter.FieldAt, "2026-05-15T10:20:31Z", deadletter.FieldReason, "")
	f.Add("x", "payload", "\xff", deadletter.FieldTruncated, "left out: payload")
	f.Fuzz(func(t *testing.T, id, k1, v1, k2, v2 string) {
		l := deadletter.Parse(redis.XMessage{ID: id, Values: map[string]any{k1: v1, k2: v2}})
		if l.ID != id || l.Fields == nil {
			t.Fatalf("Parse: %+v", l)
		}
		for k := range l.Fields {
			if deadletter.IsField(k) {
				t.Errorf("dlq field %q among the original fields", k)
			}
		}
		for _, k := range []string{k1, k2} {
			if _, ok := l.Fields[k]; ok == deadletter.IsField(k) {
				t.Errorf("field %q: among the original fields %v, a dlq field %v", k, ok, deadletter.IsField(k))
			}
		}
		_, _ = l.Time()
	})
}
