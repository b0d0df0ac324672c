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
	e1 := s.key(Key{Scope: "g", EventID: "e1"})
	// e1 twice in the call: its repeat is leased by its first (2), in
	// either run.
	names := []string{s.batchPrefix("g") + "x1", e1, s.key(Key{Scope: "g", EventID: "e2"}), e1}
	run := func() []int64 {
		res, err := s.claimScript.Run(ctx, rdb, names, "B:x1", s.token, s.lease.Milliseconds(),
			s.done.Milliseconds(), s.batchPrefix("g")).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if first := run(); first[0] != 0 || first[1] != 0 || first[2] != 2 {
		t.Fatalf("first run: %v, want e1 and e2 taken, the repeat of e1 leased", first)
	}
	if again := run(); again[0] != 0 || again[1] != 0 || again[2] != 2 {
		t.Fatalf("the same claim run again: %v, want e1 and e2 still taken by it (0), not leased (2), and the repeat leased", again)
	}
}
