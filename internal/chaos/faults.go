package chaos

import (
	"fmt"
	"hash/fnv"
)

// Accounts is the number of balance rows the events are spread over
// (table chaos_balances, accounts "acct-00" to "acct-19").
const Accounts = 20

// SQL fault kinds: the statement a handler runs, on its first attempt of a
// delivery, after its balance write.
const (
	FaultDivisionByZero = "division_by_zero" // SELECT 1/0 (SQLSTATE 22012)
	FaultCheckViolation = "check_violation"  // INSERT violating a CHECK (SQLSTATE 23514)
)

func hash(eventID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(eventID))
	return h.Sum64()
}

// Amount is the amount in cents (1 to 1000) that the producer puts in the
// payload of the event eventID; the handler adds it to the event's account.
func Amount(eventID string) int64 { return int64(hash(eventID)%1000) + 1 }

// Account is the balance row the event eventID moves.
func Account(eventID string) string { return fmt.Sprintf("acct-%02d", (hash(eventID)>>10)%Accounts) }

// SQLFault says which SQL error, if any, the handler of eventID hits on
// the first attempt of every delivery: about fraction of the events, the
// same ones in every process, half of them each kind. "" means none.
func SQLFault(eventID string, fraction float64) string {
	h := hash(eventID) >> 20
	if float64(h%10000) >= fraction*10000 {
		return ""
	}
	if (h/10000)%2 == 0 {
		return FaultDivisionByZero
	}
	return FaultCheckViolation
}
