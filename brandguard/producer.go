package brandguard

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/headwaylabs/headway/event"
)

// CheckOwner is the producer-side invariant without metrics or logs: the
// envelope brand must equal the brand of the row that owns the event. It
// returns nil, a [*MismatchError] matching [ErrOwnerBrandMismatch], or an
// error wrapping [ErrInvalidBrand] when ownerBrand is not positive.
func CheckOwner(ownerBrand event.BrandID, env event.Envelope) error {
	if !ownerBrand.Valid() {
		return fmt.Errorf("%w: owning row brand %d for event %s", ErrInvalidBrand, ownerBrand, env.EventID)
	}
	if env.BrandID != ownerBrand {
		return &MismatchError{EventID: env.EventID, EventType: env.EventType, Envelope: env.BrandID, Other: ownerBrand, Producer: true}
	}
	return nil
}

// CheckProducer runs [CheckOwner] for a write to stream and, on a
// violation, counts it in headway_brandguard_producer_violations_total and
// logs an error. The outbox writer calls it before inserting a row and
// fails the write with the returned error. [New] creates the series of
// every stream of its catalog at 0, so the first violation is an increase.
func (g *Guard) CheckProducer(ctx context.Context, stream string, ownerBrand event.BrandID, env event.Envelope) error {
	err := CheckOwner(ownerBrand, env)
	if err != nil {
		g.m.producers.WithLabelValues(stream).Inc()
		g.log.LogAttrs(ctx, slog.LevelError, "outbox write refused: envelope brand differs from owning row",
			slog.String(AttrStream, stream), slog.String(AttrEventID, env.EventID),
			slog.String(AttrEventType, string(env.EventType)),
			slog.Int64(AttrEnvelopeBrand, int64(env.BrandID)), slog.Int64(AttrOwnerBrand, int64(ownerBrand)))
	}
	return err
}
