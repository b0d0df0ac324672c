package cli

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// TestStatusMatchesXINFO prepares a wallet stream with three groups — one
// with two consumers and pending entries, one created at an arbitrary ID
// (lag unknown to Redis), one caught up — and dead letters, and checks
// status against what XINFO and XPENDING report.
func TestStatusMatchesXINFO(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, dlq := walletKeys(prefix)

	now := time.Now().Truncate(time.Millisecond)
	base := now.Add(-time.Hour).UnixMilli()
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = strconv.FormatInt(base+int64(i)*1000, 10) + "-0"
		fields := fieldsOf(t, envelope("s"+strconv.Itoa(i), platform.BetSettledConfirmed))
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: ids[i], Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.XGroupCreate(ctx, stream, "rolling_service", "0").Err())
	must(rdb.XGroupCreate(ctx, stream, "late_group", ids[4]).Err())
	must(rdb.XGroupCreate(ctx, stream, "caught_up", "$").Err())
	read := func(consumer string, n int64) {
		t.Helper()
		must(rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: consumer,
			Streams: []string{stream, ">"}, Count: n}).Err())
	}
	read("pod-a", 4) // ids 0..3
	must(rdb.XAck(ctx, stream, "rolling_service", ids[0]).Err())
	read("pod-b", 2) // ids 4..5
	deadLetter(t, rdb, prefix, envelope("d1", platform.BetSettledConfirmed), "max_deliveries")
	deadLetter(t, rdb, prefix, envelope("d2", platform.BetSettledConfirmed), "handler_permanent")

	r := runApp(t, ctx, &app{now: func() time.Time { return now }}, "status", "--prefix", prefix, "--stream", "wallet", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got struct{ Streams []StreamStatus }
	decodeJSON(t, r.stdout, &got)
	if len(got.Streams) != 1 {
		t.Fatalf("%d streams, want 1", len(got.Streams))
	}
	s := got.Streams[0]

	info, err := rdb.XInfoStream(ctx, stream).Result()
	must(err)
	dlqLen, err := rdb.XLen(ctx, dlq).Result()
	must(err)
	if !s.Exists || s.Key != stream || s.Length != info.Length || s.LastID != info.LastGeneratedID ||
		s.FirstID != info.FirstEntry.ID || s.DeadLetters != dlqLen || s.DeadLetters != 2 || s.DeadLetterKey != dlq {
		t.Errorf("stream: %+v; XINFO STREAM length %d last %s, XLEN dlq %d", s, info.Length, info.LastGeneratedID, dlqLen)
	}

	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	must(err)
	if len(s.Groups) != len(groups) {
		t.Fatalf("%d groups, XINFO GROUPS has %d", len(s.Groups), len(groups))
	}
	byName := map[string]GroupStatus{}
	for _, g := range s.Groups {
		byName[g.Name] = g
	}
	for _, xg := range groups {
		g, ok := byName[xg.Name]
		if !ok {
			t.Errorf("group %s missing", xg.Name)
			continue
		}
		if g.LastDeliveredID != xg.LastDeliveredID || g.Pending != xg.Pending || len(g.Consumers) != int(xg.Consumers) {
			t.Errorf("group %s: %+v; XINFO GROUPS %+v", xg.Name, g, xg)
		}
		switch {
		case xg.Lag < 0 && g.Lag != nil:
			t.Errorf("group %s: lag %d where Redis cannot tell it", xg.Name, *g.Lag)
		case xg.Lag >= 0 && (g.Lag == nil || *g.Lag != xg.Lag):
			t.Errorf("group %s: lag %v, XINFO says %d", xg.Name, g.Lag, xg.Lag)
		}
		p, err := rdb.XPending(ctx, stream, xg.Name).Result()
		must(err)
		if g.Pending != p.Count || (p.Count > 0 && g.OldestPendingID != p.Lower) {
			t.Errorf("group %s: pending %d oldest %s; XPENDING %+v", xg.Name, g.Pending, g.OldestPendingID, p)
		}
		cons, err := rdb.XInfoConsumers(ctx, stream, xg.Name).Result()
		must(err)
		for i, co := range cons {
			gc := g.Consumers[i]
			if gc.Name != co.Name || gc.Pending != co.Pending || math.Abs(gc.IdleSeconds-co.Idle.Seconds()) > 5 {
				t.Errorf("group %s consumer %d: %+v; XINFO CONSUMERS %+v", xg.Name, i, gc, co)
			}
		}
	}

	// The figures themselves, from the prepared stream.
	rs := byName["rolling_service"]
	if rs.Lag == nil || *rs.Lag != 4 || rs.Pending != 5 || rs.OldestPendingID != ids[1] || len(rs.Consumers) != 2 {
		t.Errorf("rolling_service: %+v", rs)
	}
	ageOf := func(i int) float64 { return float64(now.UnixMilli()-(base+int64(i)*1000)) / 1000 }
	if rs.LagSeconds != ageOf(6) {
		t.Errorf("lag seconds %v, want the age of the first undelivered entry %v", rs.LagSeconds, ageOf(6))
	}
	if rs.OldestPendingAgeSeconds != ageOf(1) {
		t.Errorf("oldest pending age %v, want %v", rs.OldestPendingAgeSeconds, ageOf(1))
	}
	if rs.Consumers[0].Name != "pod-a" || rs.Consumers[0].Pending != 3 || rs.Consumers[1].Name != "pod-b" || rs.Consumers[1].Pending != 2 {
		t.Errorf("consumers %+v", rs.Consumers)
	}
	// Retention keeps the stream for rolling_service, whose oldest pending
	// entry (1) is older than what late_group needs (5); caught_up needs
	// nothing.
	if s.HeldBy != "rolling_service" || s.HeldEntries == nil || *s.HeldEntries != 9 || s.OldestAgeSeconds != ageOf(0) {
		t.Errorf("held by %q (%v entries), oldest age %v: want rolling_service, 9 (5 pending, 4 undelivered), %v",
			s.HeldBy, s.HeldEntries, s.OldestAgeSeconds, ageOf(0))
	}
	if s.OldestDeadLetterAgeSeconds < 0 || s.OldestDeadLetterAgeSeconds > 60 {
		t.Errorf("oldest dead letter age %v, want the age of the dead letters just written", s.OldestDeadLetterAgeSeconds)
	}
	if lg := byName["late_group"]; lg.Lag != nil || lg.LagSeconds != ageOf(5) {
		t.Errorf("late_group: lag %v (want unknown), lag seconds %v (want %v)", lg.Lag, lg.LagSeconds, ageOf(5))
	}
	if cu := byName["caught_up"]; cu.Lag == nil || *cu.Lag != 0 || cu.LagSeconds != 0 || cu.Pending != 0 {
		t.Errorf("caught_up: %+v", cu)
	}

	// The tables say the same, aligned.
	r = runApp(t, ctx, &app{now: func() time.Time { return now }}, "status", "--prefix", prefix, "--stream", "wallet")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(r.stdout, "\n")
	row := func(prefix string) string {
		t.Helper()
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line %q in:\n%s", prefix, r.stdout)
		return ""
	}
	groupHeader := row("STREAM  GROUP ")
	for _, tc := range []struct{ line, column, value string }{
		{row("wallet  rolling_service"), "LAG ", "4 "},
		{row("wallet  rolling_service"), "LAG AGE", "59m54s"},
		{row("wallet  rolling_service"), "PENDING", "5 "},
		{row("wallet  rolling_service"), "OLDEST PENDING", "59m59s"},
		{row("wallet  late_group"), "LAG ", "unknown"},
		{row("wallet  caught_up"), "LAG ", "0 "},
	} {
		col := strings.Index(groupHeader, tc.column)
		if col < 0 || !strings.HasPrefix(tc.line[col:], tc.value) {
			t.Errorf("column %q of %q is not %q (header %q)", tc.column, tc.line, tc.value, groupHeader)
		}
	}
	header := row("STREAM  LENGTH")
	for _, tc := range []struct{ column, value string }{
		{"DEAD LETTERS", "2 "}, {"HELD BY", "rolling_service (9)"}, {"OLDEST ", "1h00m "},
	} {
		if col := strings.Index(header, tc.column); col < 0 || !strings.HasPrefix(row("wallet ")[col:], tc.value) {
			t.Errorf("column %q of %q is not %q (header %q)", tc.column, row("wallet "), tc.value, header)
		}
	}
	if !strings.Contains(r.stdout, "pod-a") || !strings.Contains(r.stdout, "pod-b") {
		t.Errorf("consumers missing:\n%s", r.stdout)
	}
}

func TestStatusOfAbsentStreams(t *testing.T) {
	t.Parallel()
	_, prefix := redistest.Client(t)
	r := mustRun(t, "status", "--prefix", prefix, "--json")
	var got struct{ Streams []StreamStatus }
	decodeJSON(t, r.stdout, &got)
	if len(got.Streams) != len(platform.Catalog().Streams) {
		t.Fatalf("%d streams, want every catalog stream", len(got.Streams))
	}
	for _, s := range got.Streams {
		if s.Exists || s.Length != 0 || s.DeadLetters != 0 || len(s.Groups) != 0 {
			t.Errorf("absent stream reported as %+v", s)
		}
	}
	r = mustRun(t, "status", "--prefix", prefix)
	if !strings.Contains(r.stdout, "(no stream)") || strings.Contains(r.stdout, "LAG") {
		t.Errorf("table:\n%s", r.stdout)
	}
}

// TestStatusOnMiniredis runs status against miniredis, the demo's embedded
// Redis, whose XINFO STREAM has neither the groups count nor the first
// entry: the groups are listed all the same, read from XINFO GROUPS.
func TestStatusOnMiniredis(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	stream, _ := walletKeys("")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, 5)
	for i := range ids {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fieldsOf(t, envelope("m"+strconv.Itoa(i), platform.BetSettledConfirmed))}).Result()
		must(err)
		ids[i] = id
	}
	must(rdb.XGroupCreate(ctx, stream, platform.ServiceRolling, "0").Err())
	must(rdb.XGroupCreate(ctx, stream, "promotion_service", "$").Err())
	must(rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: platform.ServiceRolling, Consumer: "pod-a",
		Streams: []string{stream, ">"}, Count: 3}).Err())
	must(rdb.XAck(ctx, stream, platform.ServiceRolling, ids[0]).Err())
	deadLetter(t, rdb, "", envelope("d1", platform.BetSettledConfirmed), "max_deliveries")

	url := "redis://" + mr.Addr() + "/0"
	var got struct{ Streams []StreamStatus }
	decodeJSON(t, mustRun(t, "status", "--redis-url", url, "--stream", "wallet", "--json").stdout, &got)
	if len(got.Streams) != 1 {
		t.Fatalf("%d streams, want 1", len(got.Streams))
	}
	s := got.Streams[0]
	if !s.Exists || s.Length != 5 || s.FirstID != ids[0] || s.LastID != ids[4] || s.DeadLetters != 1 {
		t.Errorf("stream: %+v", s)
	}
	if len(s.Groups) != 2 {
		t.Fatalf("%d groups, want 2: %+v", len(s.Groups), s.Groups)
	}
	if p := s.Groups[0]; p.Name != "promotion_service" || p.Pending != 0 || p.Lag == nil || *p.Lag != 0 ||
		p.LastDeliveredID != ids[4] || len(p.Consumers) != 0 {
		t.Errorf("promotion_service: %+v", p)
	}
	r := s.Groups[1]
	if r.Name != platform.ServiceRolling || r.Pending != 2 || r.OldestPendingID != ids[1] || r.LastDeliveredID != ids[2] ||
		len(r.Consumers) != 1 || r.Consumers[0].Name != "pod-a" || r.Consumers[0].Pending != 2 {
		t.Errorf("rolling_service: %+v", r)
	}

	table := mustRun(t, "status", "--redis-url", url, "--stream", "wallet").stdout
	lines := strings.Split(table, "\n")
	if col := strings.Index(lines[0], "GROUPS"); col < 0 || len(lines) < 2 || !strings.HasPrefix(lines[1][col:], "2 ") {
		t.Errorf("GROUPS column is not 2:\n%s", table)
	}
	for _, want := range []string{"wallet  promotion_service", "wallet  rolling_service", "pod-a"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}
