package event

import (
	"regexp"
	"sort"
	"testing"
	"time"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewIDFormatAndTime(t *testing.T) {
	at := time.Date(2026, 12, 5, 22, 0, 0, 123_000_000, time.UTC)
	id := newID(at)
	if !uuidV7.MatchString(id) {
		t.Fatalf("%q is not a canonical UUID version 7", id)
	}
	// The first 48 bits are the Unix time in milliseconds.
	var ms int64
	for _, c := range id[:8] + id[9:13] {
		ms = ms<<4 | int64(hexVal(c))
	}
	if ms != at.UnixMilli() {
		t.Errorf("%q encodes %d ms, want %d", id, ms, at.UnixMilli())
	}
	if checkEventID(id) != nil {
		t.Errorf("%q is not a valid event_id: %v", id, checkEventID(id))
	}
}

func hexVal(c rune) int {
	if c <= '9' {
		return int(c - '0')
	}
	return int(c-'a') + 10
}

func TestNewIDSortsByTimeAndIsUnique(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for i := range 2000 {
		id := newID(base.Add(time.Duration(i) * time.Millisecond))
		if seen[id] {
			t.Fatalf("duplicate %q", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("IDs of later milliseconds do not sort after earlier ones")
	}
	// Many in one millisecond: still unique.
	for range 10000 {
		id := newID(base)
		if seen[id] {
			t.Fatalf("duplicate %q within one millisecond", id)
		}
		seen[id] = true
	}
	if id := NewID(); !uuidV7.MatchString(id) {
		t.Errorf("NewID() = %q", id)
	}
}
