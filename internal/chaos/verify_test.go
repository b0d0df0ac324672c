package chaos_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/chaos"
	"github.com/headwaylabs/headway/platform"
)

// state is what the run left in PostgreSQL and Redis, read around the
// proxies.
type state struct {
	good        []string // event IDs of the good outbox rows
	unpublished int      // of them
	amount      int64    // the sum of their amounts
	effects     map[string]int
	balance     int64
	dead        map[string][]string // event ID -> reason of each dead letter
	deadDetail  map[string][]string // event ID -> reason, deliveries, consumer and error of each
	pending     int64               // in the group; -1 when unknown
	entries     int64               // in the stream
}

func readState(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client) (state, error) {
	s := state{effects: map[string]int{}, dead: map[string][]string{}, deadDetail: map[string][]string{}, pending: -1}
	rows, err := pool.Query(ctx, `SELECT event_id, published_at IS NULL, coalesce((payload->>'amount')::bigint, 0)
		FROM headway_outbox WHERE event_id LIKE 'ev-%' ORDER BY event_id`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var id string
		var unpublished bool
		var amount int64
		if err := rows.Scan(&id, &unpublished, &amount); err != nil {
			rows.Close()
			return s, err
		}
		s.good = append(s.good, id)
		s.amount += amount
		if unpublished {
			s.unpublished++
		}
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	rows, err = pool.Query(ctx, "SELECT event_id, count(*) FROM chaos_applied GROUP BY event_id")
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return s, err
		}
		s.effects[id] = n
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	if err := pool.QueryRow(ctx, "SELECT coalesce(sum(cents), 0) FROM chaos_balances").Scan(&s.balance); err != nil {
		return s, err
	}
	msgs, err := rdb.XRange(ctx, event.DeadLetterKey(platform.StreamWallet), "-", "+").Result()
	if err != nil {
		return s, err
	}
	for _, m := range msgs {
		id, _ := m.Values[event.FieldEventID].(string)
		reason, _ := m.Values[deadletter.FieldReason].(string)
		s.dead[id] = append(s.dead[id], reason)
		s.deadDetail[id] = append(s.deadDetail[id], fmt.Sprintf("%s after %v deliveries by %v: %v", reason,
			m.Values[deadletter.FieldDeliveries], m.Values[deadletter.FieldConsumer], m.Values[deadletter.FieldError]))
	}
	if s.entries, err = rdb.XLen(ctx, event.StreamKey(platform.StreamWallet)).Result(); err != nil {
		return s, err
	}
	if p, err := rdb.XPending(ctx, event.StreamKey(platform.StreamWallet), platform.ServiceRolling).Result(); err == nil {
		s.pending = p.Count
	}
	return s, nil
}

// settled: every good row published, every good event applied or
// dead-lettered, every injected entry dead-lettered, nothing pending.
func (s state) settled(events int, injected map[string]bool) bool {
	if len(s.good) != events || s.unpublished != 0 || s.pending != 0 {
		return false
	}
	for _, id := range s.good {
		if s.effects[id] == 0 && len(s.dead[id]) == 0 {
			return false
		}
	}
	for id := range injected {
		if len(s.dead[id]) == 0 {
			return false
		}
	}
	return true
}

// report fills the outcome fields of r from s.
func (s state) report(r *chaos.Report, injected map[string]bool, sqlFaults float64) {
	r.Events, r.Unpublished, r.AmountCents, r.BalanceCents = len(s.good), s.unpublished, s.amount, s.balance
	r.Injected = len(injected)
	r.Reappended = int(s.entries) - len(s.good) - len(injected)
	r.DeadLettered = map[string]int{}
	good := make(map[string]bool, len(s.good))
	for _, id := range s.good {
		good[id] = true
		n := s.effects[id]
		switch {
		case n == 0:
			r.Lost++
			if chaos.SQLFault(id, sqlFaults) != "" {
				r.LostSQLFault++
			}
			if len(s.dead[id]) > 0 {
				r.LostDeadLettered++
			}
		case n > 1:
			r.DoubleEvents++
			r.Double += n - 1
		}
		if n > 0 {
			r.Applied++
			r.Effects += n
		}
	}
	for id, n := range s.effects {
		if !good[id] {
			r.Effects += n // an effect of no good event: counted, so it shows as double
			r.Double += n
		}
	}
	for id, reasons := range s.dead {
		for _, reason := range reasons {
			r.DeadLettered[strings.TrimSpace(reason)]++
		}
		if injected[id] && len(reasons) == 1 {
			r.InjectedDead++
		} else {
			r.Unexpected += len(reasons)
			if injected[id] {
				r.Unexpected-- // one of them was expected
			}
		}
	}
}

// notes names a few of the events behind each failed count: lost
// without, and after, an SQL fault (with their dead-letter reasons),
// dead-lettered though applied, dead-lettered more than once.
func (s state) notes(injected map[string]bool, sqlFaults float64) []string {
	var lost, lostFault, deadApplied, deadTwice []string
	for _, id := range s.good {
		reasons := strings.Join(s.deadDetail[id], "; ")
		fault := chaos.SQLFault(id, sqlFaults)
		switch {
		case s.effects[id] == 0 && fault == "" && len(lost) < 5:
			lost = append(lost, fmt.Sprintf("%s (dead letters %q)", id, reasons))
		case s.effects[id] == 0 && fault != "" && len(lostFault) < 3:
			lostFault = append(lostFault, fmt.Sprintf("%s (%s, dead letters %q)", id, fault, reasons))
		case s.effects[id] > 0 && len(s.dead[id]) > 0 && len(deadApplied) < 5:
			deadApplied = append(deadApplied, fmt.Sprintf("%s (%d effects, dead letters %q)", id, s.effects[id], reasons))
		}
	}
	for id, reasons := range s.dead {
		if len(reasons) > 1 && len(deadTwice) < 5 {
			deadTwice = append(deadTwice, fmt.Sprintf("%s (%q, injected %t)", id, strings.Join(reasons, ","), injected[id]))
		}
	}
	var out []string
	add := func(what string, ids []string) {
		if len(ids) > 0 {
			out = append(out, what+": "+strings.Join(ids, "; "))
		}
	}
	add("lost without an SQL fault", lost)
	add("lost after an SQL fault, e.g.", lostFault)
	add("dead-lettered though applied", deadApplied)
	add("dead-lettered more than once", deadTwice)
	return out
}
