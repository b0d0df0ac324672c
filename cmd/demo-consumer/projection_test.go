package main

import (
	"strings"
	"testing"
	"time"
)

// TestReconcileSkipsEventsFromBeforeTheStart: the projections live in
// memory, so after a restart one group may be redelivered a bet the other
// applied before the restart. Such a bet (its event occurred before the
// projection started) is applied but not reconciled; a bet of this
// process's time still is, and one group missing it fails the job.
func TestReconcileSkipsEventsFromBeforeTheStart(t *testing.T) {
	dir := newDirectory(1)
	rolling := newProjection("rolling_service", dir, false, 0, false)
	promotion := newProjection("promotion_service", dir, true, 0, false)
	old := betPayload{BetID: "bet-old", PlayerID: playerID(1, 0), AmountCents: 100}
	rolling.settle(old, false) // redelivered after the restart; promotion applied it before
	later := time.Now().Add(time.Minute)
	if err := reconcile(rolling, promotion, time.Second, later); err != nil {
		t.Fatalf("a bet from before the start failed the reconciliation: %v", err)
	}
	if rolling.byPlayer[old.PlayerID] != 100 {
		t.Errorf("the old bet was not applied: %d", rolling.byPlayer[old.PlayerID])
	}
	fresh := betPayload{BetID: "bet-new", PlayerID: playerID(1, 0), AmountCents: 50}
	rolling.settle(fresh, true)
	err := reconcile(rolling, promotion, time.Second, later)
	if err == nil || !strings.Contains(err.Error(), "bet-new") {
		t.Fatalf("a bet of this process missing from promotion: %v, want a divergence naming bet-new", err)
	}
	promotion.settle(fresh, true)
	if err := reconcile(rolling, promotion, time.Second, later); err != nil {
		t.Errorf("both applied: %v", err)
	}
}
