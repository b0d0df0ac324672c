package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// projection is a consumer's read model: per player, the sum of settled
// bet amounts (rolling turnover) or the number of settled bets (promotion
// progress), net of rollbacks.
type projection struct {
	name  string
	dir   *directory
	count bool // promotion: count bets; rolling: sum amounts
	fail  float64
	hang  bool

	mu       sync.Mutex
	rng      *rand.Rand
	byPlayer map[string]int64
	bets     map[string]betPayload // settled and not rolled back
	seen     map[string]time.Time  // bets applied and not yet reconciled
	// since is when the projection started: bets of events that occurred
	// before it are not reconciled. The projections live in memory, so
	// after a restart one group may be redelivered an event the other
	// applied before the restart, into a projection that is gone.
	since time.Time
}

func newProjection(name string, dir *directory, count bool, fail float64, hang bool) *projection {
	return &projection{name: name, dir: dir, count: count, fail: fail, hang: hang,
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11)),
		byPlayer: map[string]int64{}, bets: map[string]betPayload{}, seen: map[string]time.Time{}, since: time.Now()}
}

// errInjected is the transient failure of -fault-fail.
var errInjected = errors.New("injected handler failure (-fault-fail)")

// handlers returns the consumer's handlers for the two types it dispatches.
func (p *projection) handlers() map[event.Type]consumer.Handler {
	return map[event.Type]consumer.Handler{
		platform.BetSettledConfirmed:    p.handle(p.settle),
		platform.BetRolledBackConfirmed: p.handle(p.rollback),
	}
}

func (p *projection) handle(apply func(b betPayload, reconciled bool)) consumer.Handler {
	return func(ctx context.Context, m *consumer.Message) error {
		if p.hang {
			<-ctx.Done() // -fault-hang: never finishes on its own
			return ctx.Err()
		}
		var b betPayload
		if err := json.Unmarshal(m.Envelope.Payload, &b); err != nil || b.BetID == "" || b.PlayerID == "" {
			return consumer.Permanent(fmt.Errorf("bet payload: %v", err))
		}
		target, ok := p.dir.brand[b.PlayerID]
		if !ok {
			return consumer.Permanent(fmt.Errorf("unknown player %s", b.PlayerID))
		}
		// The player's brand is the target; brandguard compares it with the
		// envelope's brand (observe: log, count, use the envelope's;
		// enforce: the event is dead-lettered).
		if _, err := m.CheckTarget(ctx, target); err != nil {
			return err
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fail > 0 && p.rng.Float64() < p.fail {
			return errInjected
		}
		apply(b, !m.Envelope.OccurredAt.Before(p.since))
		return nil
	}
}

// settle applies a settled bet; reconciled says whether the reconciliation
// job compares it (an event that occurred since the projection started).
func (p *projection) settle(b betPayload, reconciled bool) {
	if _, dup := p.bets[b.BetID]; dup {
		return
	}
	p.bets[b.BetID] = b
	p.byPlayer[b.PlayerID] += p.delta(b)
	if reconciled {
		p.seen[b.BetID] = time.Now()
	}
}

func (p *projection) rollback(b betPayload, _ bool) {
	settled, ok := p.bets[b.BetID]
	if !ok {
		return
	}
	delete(p.bets, b.BetID)
	p.byPlayer[settled.PlayerID] -= p.delta(settled)
}

func (p *projection) delta(b betPayload) int64 {
	if p.count {
		return 1
	}
	return b.AmountCents
}

// reconcile compares the bets two projections have applied. A bet applied
// by one and not by the other for longer than grace is a divergence; bets
// both applied are forgotten. It returns an error naming the divergence.
func reconcile(a, b *projection, grace time.Duration, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range a.seen {
		if _, ok := b.seen[id]; ok {
			delete(a.seen, id)
			delete(b.seen, id)
		}
	}
	var errs []error
	for _, pair := range [][2]*projection{{a, b}, {b, a}} {
		var late []string
		for id, at := range pair[0].seen {
			if now.Sub(at) > grace {
				late = append(late, id)
			}
		}
		if len(late) > 0 {
			sort.Strings(late)
			errs = append(errs, fmt.Errorf("%d bets applied by %s over %s ago are missing from %s (first %s)",
				len(late), pair[0].name, grace, pair[1].name, late[0]))
		}
	}
	return errors.Join(errs...)
}
