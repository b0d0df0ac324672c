package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of one chaos run: what was written, what took
// effect, what was dead-lettered, how the bad outbox rows ended and what
// /live said while dependencies were down. [Report.String] is the line
// docs/reliability.md quotes; [Report.Failures] lists the checks that
// failed.
type Report struct {
	// Events is the number of good events written through the outbox.
	Events int
	// Applied is how many of them took effect at least once; Effects is
	// the number of effects committed (rows of chaos_applied); Double is
	// Effects beyond one per applied event; DoubleEvents is how many
	// events took effect more than once.
	Applied, Effects, Double, DoubleEvents int
	// Lost is how many good events never took effect; LostSQLFault is
	// how many of those the handler's first attempt failed with an SQL
	// error, LostDeadLettered how many of those are in the dead-letter
	// stream.
	Lost, LostSQLFault, LostDeadLettered int
	// BalanceCents is the sum of the balances; AmountCents the sum of the
	// amounts of the events written. Equal means exactly once.
	BalanceCents, AmountCents int64
	// DeadLettered counts the dead-letter stream's entries by reason.
	DeadLettered map[string]int
	// Injected is the number of bad entries appended straight to the
	// stream; InjectedDead how many of them are dead-lettered exactly once;
	// Unexpected the dead letters that are neither (good events, repeats).
	Injected, InjectedDead, Unexpected int
	// Unpublished counts good outbox rows still unpublished at the end;
	// Reappended the stream entries beyond one per event and injected
	// entry (rows a relay appended again because it was killed, or lost
	// its connection, before it marked them published; the inbox absorbs
	// them, ADR-011).
	Unpublished, Reappended int
	// BadRows is the number of bad outbox rows inserted with SQL (too
	// large, or invalid as an envelope); Parked, Refused and Stuck how
	// they ended: parked by the relay, refused by the database at insert,
	// or neither (still retried, or appended). ParkedColumn names the
	// outbox column that marks a parked row, "" when the table has none;
	// MaxAttempts is the highest attempts count of a stuck row.
	BadRows, Parked, Refused, Stuck, MaxAttempts int
	ParkedColumn                                 string
	// LivePolls and LiveFailures count the harness's GET /live of the
	// relays and consumers; a failure is an answer other than 200, or
	// none within a second from a running worker. LiveByPhase splits the
	// failures by what was frozen at the time ("pg", "redis", "none").
	LivePolls, LiveFailures int
	LiveByPhase             map[string]int
	// The faults: SIGKILLs of relays and consumers, Redis restarts,
	// PostgreSQL backends terminated, and how long each dependency was
	// frozen in all.
	Kills, RedisRestarts, PGTerminations int
	PGFrozen, RedisFrozen                time.Duration
	// Converged is false when the run did not settle (every event applied
	// or dead-lettered, nothing pending) before its deadline.
	Converged bool
	// Took is the run's wall time, from the first worker's start.
	Took time.Duration
}

// counts formats m as "k:v,k:v" in key order, "-" when empty.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// String is the report on one line of key=value fields, the format
// docs/reliability.md quotes.
func (r Report) String() string {
	parked := r.ParkedColumn
	if parked == "" {
		parked = "absent"
	}
	return fmt.Sprintf("chaos-report events=%d applied=%d effects=%d double=%d lost=%d balance=%d/%d "+
		"dead_lettered=%s injected=%d/%d unexpected_dead=%d unpublished=%d reappended=%d "+
		"bad_rows=%d parked=%d refused=%d stuck=%d parked_column=%s "+
		"live_failures=%d/%d live_by_phase=%s "+
		"sigkills=%d redis_restarts=%d pg_terminated=%d pg_frozen=%s redis_frozen=%s converged=%t took=%s",
		r.Events, r.Applied, r.Effects, r.Double, r.Lost, r.BalanceCents, r.AmountCents,
		counts(r.DeadLettered), r.InjectedDead, r.Injected, r.Unexpected, r.Unpublished, r.Reappended,
		r.BadRows, r.Parked, r.Refused, r.Stuck, parked,
		r.LiveFailures, r.LivePolls, counts(r.LiveByPhase),
		r.Kills, r.RedisRestarts, r.PGTerminations, r.PGFrozen.Round(time.Second), r.RedisFrozen.Round(time.Second),
		r.Converged, r.Took.Round(time.Second))
}

// Failures returns one sentence, with its numbers, per check that failed;
// none means the run passed.
func (r Report) Failures() []string {
	var f []string
	if !r.Converged {
		f = append(f, "did not converge: some events were neither applied nor dead-lettered, or entries stayed pending")
	}
	if r.Lost > 0 {
		f = append(f, fmt.Sprintf("lost: %d of %d events never took effect (%d of them hit an SQL error on a first attempt; %d are dead-lettered)",
			r.Lost, r.Events, r.LostSQLFault, r.LostDeadLettered))
	}
	if r.Double > 0 {
		f = append(f, fmt.Sprintf("double effects: %d effects beyond one per event, on %d events", r.Double, r.DoubleEvents))
	}
	if r.BalanceCents != r.AmountCents {
		f = append(f, fmt.Sprintf("balances sum to %d cents, the events written to %d (%+d): not exactly once",
			r.BalanceCents, r.AmountCents, r.BalanceCents-r.AmountCents))
	}
	if r.Unpublished > 0 {
		f = append(f, fmt.Sprintf("outbox: %d good rows unpublished", r.Unpublished))
	}
	if r.InjectedDead != r.Injected || r.Unexpected > 0 {
		f = append(f, fmt.Sprintf("dead letters: %d of %d injected entries dead-lettered once, %d other dead letters (by reason: %s)",
			r.InjectedDead, r.Injected, r.Unexpected, counts(r.DeadLettered)))
	}
	if r.Stuck > 0 {
		col := "the outbox has no parked column"
		if r.ParkedColumn != "" {
			col = "parked column " + r.ParkedColumn + " not set"
		}
		f = append(f, fmt.Sprintf("bad outbox rows: %d of %d neither parked nor refused (%s; up to %d attempts)",
			r.Stuck, r.BadRows, col, r.MaxAttempts))
	}
	if r.LiveFailures > 0 {
		f = append(f, fmt.Sprintf("/live failed %d of %d polls of running relays and consumers (by what was frozen: %s)",
			r.LiveFailures, r.LivePolls, counts(r.LiveByPhase)))
	}
	return f
}
