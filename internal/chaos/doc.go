// Package chaos holds headway's chaos run: real processes (a producer
// writing events through the outbox on PostgreSQL, two relays, three
// consumers applying them into PostgreSQL through the inbox) while the
// harness breaks what they depend on, then checks that every event took
// effect exactly once and that /live never failed while only a dependency
// was down.
//
// # The workers
//
// The workers are built from ./chaosworker. They reach Redis (a private
// server with AOF and appendfsync always) and PostgreSQL (a fresh schema)
// through two [github.com/headwaylabs/headway/internal/faultproxy]
// proxies; the harness's own connections go around them. Each event's
// payload names an account and an amount ([Account], [Amount]). The
// handler, in the inbox transaction (dedup.Tx), records the effect in
// chaos_applied (no unique key) and adds the amount to the account's row of
// chaos_balances; then
//
//   - on 10% of all attempts it fails with a non-SQL error after its
//     writes (in-process retry must not keep the failed attempt's writes);
//   - for 5% of the events ([SQLFault]), on the first attempt of every
//     delivery, it runs a statement that fails after its writes (SELECT
//     1/0, or an INSERT violating a CHECK): the transaction is then aborted
//     (SQLSTATE 25P02) unless the consumer undoes the attempt, and the
//     event must still take effect, once, on a later attempt.
//
// Relays and consumers serve /live and /ready (readiness.Probes) on a port
// of their own; their loop's liveness window is 10s, half the PostgreSQL
// freeze, so a loop that waits on a hung dependency for the whole freeze
// shows as wedged.
//
// # The faults
//
//   - every 1–3 s: SIGKILL of a relay or consumer, mid-batch, restarted
//     under the same name a moment later (70%); a Redis restart (15%);
//     every PostgreSQL backend of the workers terminated (15%) — a restart
//     or termination is skipped while that dependency is frozen;
//   - PostgreSQL frozen (every byte held, new connections hang) for 20s,
//     4s into the run; 3s later Redis frozen for 12s; again after 20s of
//     quiet while the producer runs;
//   - 12 bad entries appended straight to the stream (legacy
//     schema_version 1, malformed), which must be dead-lettered once each;
//   - 7 bad rows inserted into the outbox with SQL, past the writer: two
//     above event.DefaultMaxEntryBytes, and one each with an event_id too
//     long, an empty aggregate_id, an invalid event_type, an invalid
//     traceparent, an occurred_at in year 10000. Each must end parked by
//     the relay (a "parked…" column of the outbox set) or refused by the
//     database at insert, and must not hold up the good rows.
//
// Meanwhile the harness GETs /live of every running relay and consumer
// every 250ms.
//
// # The report
//
// At the end (once everything is applied or dead-lettered and nothing is
// pending, or after a deadline) the run logs one line, [Report.String]:
//
//	chaos-report events=3000 applied=3000 effects=3000 double=0 lost=0 balance=1503916/1503916 dead_lettered=legacy_schema:6,malformed:6 injected=12/12 unexpected_dead=0 unpublished=0 reappended=2 bad_rows=7 parked=7 refused=0 stuck=0 parked_column=parked_at live_failures=0/1125 live_by_phase=- sigkills=18 redis_restarts=1 pg_terminated=4 pg_frozen=20s redis_frozen=12s converged=true took=58s
//
// and fails with one message per failed check ([Report.Failures]): any
// event lost (no effect) or applied twice, balances that do not add up to
// the amounts written, dead letters other than the injected ones, a bad
// outbox row neither parked nor refused, a /live failure.
//
// The short run is part of the test suite (about a minute on 2 cores).
// Longer ones, other freezes, other failure rates of the handler ("0"
// disables each; HEADWAY_CHAOS_CONVERGE bounds the wait at the end,
// default 90s; HEADWAY_CHAOS_PG_TERMINATE is the share of chaos steps
// that terminate backends, default 0.15; HEADWAY_CHAOS_LOG keeps every
// worker's log in that file):
//
//	HEADWAY_CHAOS_EVENTS=30000 HEADWAY_CHAOS_RATE=200 go test -run Chaos -v -timeout 30m ./internal/chaos
//	HEADWAY_CHAOS_PG_FREEZE=45s HEADWAY_CHAOS_REDIS_FREEZE=30s HEADWAY_CHAOS_CONVERGE=3m go test -run Chaos -v ./internal/chaos
//	HEADWAY_CHAOS_TRANSIENT=0 HEADWAY_CHAOS_SQL_FAULTS=0.2 go test -run Chaos -v ./internal/chaos
//	HEADWAY_CHAOS_PG_TERMINATE=0.6 HEADWAY_CHAOS_PG_FREEZE=0 go test -run Chaos -v ./internal/chaos
package chaos
