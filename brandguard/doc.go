// Package brandguard enforces the platform's multi-brand envelope rules
// (docs/adr/ADR-009-multi-brand-envelope.md) on both sides of a stream.
//
// # Consumer side
//
// A [Guard] is built once per process from a [Config]; each consumer takes a
// [Scope] for its stream and name, and asks it for a [Verdict] on every
// entry:
//
//	guard, err := brandguard.New(brandguard.Config{Mode: mode, Catalog: platform.Catalog(), Registerer: reg, Logger: log})
//	scope := guard.Scope("events:{wallet}", "rolling_service")
//	env, v := scope.Decode(msg.Values)
//	switch v.Action {
//	case brandguard.ActionAccept:  // dedup, dispatch
//	case brandguard.ActionIgnore:  // acknowledge, no dispatch
//	case brandguard.ActionReject:  // dead-letter with v.Reason; surface v.Signal if set
//	}
//
// The rules, in order:
//   - an entry that does not decode is rejected with a Reason that says why
//     (entry_too_large, unsupported_schema, missing_brand,
//     unparseable_brand, malformed) — except that a schema_version 1 entry
//     is always legacy, whatever else is wrong with it;
//   - a type the catalog retired on every stream (the
//     BRAND_AWARE_PUBLISHING_BEGINS sentinel) is ignored;
//   - schema_version 1 increments event_legacy_schema_total{stream,consumer},
//     is rejected (legacy_schema) and carries a [Signal] that the consumer
//     surfaces to supervision;
//   - schema_version 2 takes brand_id from the envelope; a missing or
//     unparseable brand is rejected in both modes;
//   - everything else is accepted.
//
// A handler that applies an event to an entity compares brands with
// [Scope.CheckTarget]. The [Mode] decides a mismatch: [ModeObserve] logs,
// counts and continues with the envelope brand; [ModeEnforce] (the default)
// rejects with [ErrBrandMismatch]. The mode comes from
// MULTI_BRAND_ENFORCEMENT through [ModeFromEnv]; an invalid value is an
// error, never a silent default.
//
// # Producer side
//
// The outbox writer calls [Guard.CheckProducer] (or the metric-free
// [CheckOwner]) before writing a row: the envelope brand must equal the
// owning row's brand, or the write fails with [ErrOwnerBrandMismatch].
//
// # Metrics
//
// event_legacy_schema_total{stream,consumer},
// headway_brandguard_verdicts_total{stream,consumer,action,reason},
// headway_brandguard_brand_mismatch_total{stream,consumer,mode} and
// headway_brandguard_producer_violations_total{stream}; see docs/metrics.md.
package brandguard
