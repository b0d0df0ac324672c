package event

import (
	"testing"
	"time"
)

// referenceTimestamp is what parseTimestamp must agree with.
func referenceTimestamp(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

var timestampCases = []string{
	"2026-05-15T10:20:30Z", "2026-05-15T10:20:30.5Z", "2026-05-15T10:20:30.123456789Z", "2026-05-15T10:20:30.1234567891Z",
	"2026-05-15T10:20:30.000000000Z", "2026-05-15T10:20:30.Z", "2026-05-15T10:20:30,5Z", "2026-05-15T10:20:30.5+09:00",
	"2026-05-15T10:20:30+00:00", "2026-05-15t10:20:30z", "2026-05-15 10:20:30Z", "2026-5-15T10:20:30Z",
	"0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z",
	"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-02-30T00:00:00Z",
	"2026-04-31T00:00:00Z", "2026-04-30T00:00:00Z", "2026-00-10T00:00:00Z", "2026-13-10T00:00:00Z", "2026-01-00T00:00:00Z",
	"2026-01-32T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z", "2026-01-01T23:59:59",
	"2026-01-01T23:59:59ZZ", "2026-01-01T23:59:5aZ", "+026-01-01T00:00:00Z", "-026-01-01T00:00:00Z", "2026-01-01T00:00:00.-1Z",
	"2026-01-01T00:00:00.1a2Z", "2026-01-01T00:00:00. 1Z", "", "Z", "yesterday", "2026-01-01T00:00:00\x00Z",
}

func TestParseTimestampMatchesTimeParse(t *testing.T) {
	for _, c := range timestampCases {
		checkTimestamp(t, c)
	}
}

func checkTimestamp(t *testing.T, s string) {
	t.Helper()
	got, err := parseTimestamp(s)
	want, werr := referenceTimestamp(s)
	if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
		t.Fatalf("parseTimestamp(%q) error %v, time.Parse says %v", s, err, werr)
	}
	gotName, gotOffset := got.Zone()
	wantName, wantOffset := want.Zone()
	if err == nil && (!got.Equal(want) || gotName != wantName || gotOffset != wantOffset ||
		got.Location().String() != want.Location().String()) {
		t.Fatalf("parseTimestamp(%q) = %v, time.Parse says %v", s, got, want)
	}
}

// FuzzParseTimestamp: parseTimestamp agrees with time.Parse(time.RFC3339Nano)
// on every input.
func FuzzParseTimestamp(f *testing.F) {
	for _, c := range timestampCases {
		f.Add(c)
	}
	f.Fuzz(checkTimestamp)
}

func BenchmarkParseTimestamp(b *testing.B) {
	s := time.Date(2026, 5, 15, 10, 20, 30, 123456789, time.UTC).Format(time.RFC3339Nano)
	b.Run("parseTimestamp", func(b *testing.B) {
		for b.Loop() {
			parseTimestamp(s)
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			referenceTimestamp(s)
		}
	})
}
