package consumer

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestFreshnessForgetsTakenWithTheBatch: IDs found taken are reported once
// and forgotten when their batch is released.
func TestFreshnessForgetsTakenWithTheBatch(t *testing.T) {
	t.Parallel()
	var f freshness
	one := []redis.XMessage{{ID: "1-0"}, {ID: "1-1"}}
	two := []redis.XMessage{{ID: "2-0"}}
	f.hold(one)
	f.hold(two)
	if added := f.note(&f.takenIDs, []string{"1-1", "2-0"}); len(added) != 2 {
		t.Fatalf("first note added %v", added)
	}
	if added := f.note(&f.takenIDs, []string{"1-1", "2-0"}); len(added) != 0 {
		t.Fatalf("second note added %v, want none (reported once)", added)
	}
	if !f.isTaken("1-1") || f.isTaken("1-0") {
		t.Fatal("isTaken wrong while held")
	}
	f.release(one)
	if f.isTaken("1-1") || !f.isTaken("2-0") {
		t.Fatal("release forgot the wrong batch's IDs")
	}
	// A reply about a batch released meanwhile records nothing.
	if added := f.note(&f.takenIDs, []string{"1-0"}); len(added) != 0 || f.isTaken("1-0") {
		t.Fatalf("noted %v of a released batch", added)
	}
	if ids := f.ids(); len(ids) != 1 || ids[0] != "2-0" {
		t.Fatalf("held %v", ids)
	}
}
