package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestChaosReportChecks(t *testing.T) {
	t.Parallel()
	pass := Report{Events: 100, Applied: 100, Effects: 100, BalanceCents: 5000, AmountCents: 5000,
		DeadLettered: map[string]int{"legacy_schema": 6, "malformed": 6}, Injected: 12, InjectedDead: 12,
		BadRows: 6, Parked: 4, Refused: 2, ParkedColumn: "parked_at", LivePolls: 50, Converged: true,
		PGFrozen: 20 * time.Second, Took: 61 * time.Second}
	if f := pass.Failures(); len(f) != 0 {
		t.Errorf("a clean run fails: %q", f)
	}
	line := pass.String()
	for _, want := range []string{"events=100 ", "double=0 ", "lost=0 ", "balance=5000/5000 ",
		"dead_lettered=legacy_schema:6,malformed:6 ", "parked=4 ", "live_failures=0/50 ", "pg_frozen=20s "} {
		if !strings.Contains(line, want) {
			t.Errorf("report line lacks %q: %s", want, line)
		}
	}

	bad := pass
	bad.Applied, bad.Effects, bad.Double, bad.DoubleEvents, bad.Lost = 97, 104, 7, 7, 3
	bad.BalanceCents = 5100
	bad.Parked, bad.Refused, bad.Stuck, bad.ParkedColumn = 0, 0, 6, ""
	bad.LiveFailures, bad.LiveByPhase = 9, map[string]int{"pg": 9}
	got := strings.Join(bad.Failures(), "\n")
	for _, want := range []string{"lost: 3 of 100", "double effects: 7", "balances sum to 5100 cents, the events written to 5000 (+100)",
		"6 of 6 neither parked nor refused (the outbox has no parked column", "/live failed 9 of 50 polls"} {
		if !strings.Contains(got, want) {
			t.Errorf("failures lack %q:\n%s", want, got)
		}
	}
}

func TestChaosFaultSpread(t *testing.T) {
	t.Parallel()
	kinds := map[string]int{}
	accounts := map[string]bool{}
	for i := range 10000 {
		id := fmt.Sprintf("ev-%06d", i)
		kinds[SQLFault(id, 0.05)]++
		accounts[Account(id)] = true
		if a := Amount(id); a < 1 || a > 1000 {
			t.Fatalf("Amount(%s) = %d", id, a)
		}
	}
	faulty := kinds[FaultDivisionByZero] + kinds[FaultCheckViolation]
	if faulty < 400 || faulty > 600 || kinds[FaultDivisionByZero] < 150 || kinds[FaultCheckViolation] < 150 {
		t.Errorf("5%% SQL faults of 10000 events: %v", kinds)
	}
	if len(accounts) != Accounts {
		t.Errorf("events spread over %d accounts, want %d", len(accounts), Accounts)
	}
	if SQLFault("ev-000001", 0) != "" {
		t.Error("fraction 0 still faults")
	}
}
