package dedup

import (
	"context"
	"testing"

	"github.com/headwaylabs/headway/internal/redistest"
)

// TestClaimScriptRunTwice: go-redis runs a script again when the
// connection broke before its reply, with the same arguments. The second
// run must report the keys the first one took as taken by this claim,
// not as leased by a live batch: the caller would skip their handlers,
// and the batch's settle would then record them as done — a lost event.
func TestClaimScriptRunTwice(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	s, err := NewRedis(RedisConfig{Client: rdb, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := []string{s.batchPrefix("g") + "x1", s.key(Key{Scope: "g", EventID: "e1"}), s.key(Key{Scope: "g", EventID: "e2"})}
	run := func() []int64 {
		res, err := s.claimScript.Run(ctx, rdb, names, "B:x1", s.token, s.lease.Milliseconds(),
			s.done.Milliseconds(), s.batchPrefix("g")).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if first := run(); first[0] != 0 || first[1] != 0 {
		t.Fatalf("first run: %v, want both taken", first)
	}
	if again := run(); again[0] != 0 || again[1] != 0 {
		t.Fatalf("the same claim run again: %v, want both still taken by it (0), not leased (2)", again)
	}
}
