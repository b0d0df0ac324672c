package outbox

import (
	"context"
	"time"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/event"
)

// Row is one outbox row: an event with the stream key it goes to.
type Row struct {
	// ID is the store's increasing row id (0 before the row is stored).
	ID int64
	// Stream is the Redis stream key the event is appended to.
	Stream string
	// OwnerBrand is the brand of the business row that owns the event;
	// the writer has checked that it equals Envelope.BrandID.
	OwnerBrand event.BrandID
	Envelope   event.Envelope
	// CreatedAt is when the row was inserted (zero before).
	CreatedAt time.Time
	// Attempts counts the failed appends so far.
	Attempts int
}

// Store is where a [Relay] finds outbox rows. [PostgresStore] is the
// production store; headway/outbox/sqliteoutbox is an embedded one for
// demos and tests without a database server. A store must let several
// relays run at once without publishing a row twice in one round (each
// claim excludes rows another open claim holds) and must never skip a row
// committed late (no "id greater than the last seen" cursor).
//
// One relay holds up to two claims at once: while it appends a full batch
// it claims the next one from another goroutine. So Claim must be safe to
// call while the same process holds another open claim, concurrently with
// that claim's Finish or Release, and must skip that claim's rows as it
// skips another relay's.
type Store interface {
	// Table names the store's outbox table; it labels the relay's metrics
	// and watermark.
	Table() string
	// Claim opens a claim on up to limit unpublished rows that are due,
	// in id order. The claim holds them until it is finished or released.
	Claim(ctx context.Context, limit int) (Claim, error)
	// Backlog counts the unpublished rows (parked ones left out), the age
	// of the oldest, and the parked rows.
	Backlog(ctx context.Context) (Backlog, error)
	// Prune deletes up to limit rows published more than olderThan ago and
	// returns how many it deleted.
	Prune(ctx context.Context, olderThan time.Duration, limit int) (int64, error)
	// Subscribe returns a source of wake-ups: writes that may have made
	// rows due. The relay subscribes once, before its first claim, so that
	// no write between a claim and the wait after it goes unnoticed.
	Subscribe(ctx context.Context) Subscription
}

// Claim is an open claim on outbox rows (a transaction holding row locks
// in PostgreSQL).
type Claim interface {
	// Rows returns the claimed rows, in id order.
	Rows() []Row
	// Finish records o — rows marked published; failed appends with
	// attempts + 1, the error and the next attempt after the backoff;
	// rows parked with their reason — and commits. After an error nothing
	// is recorded: the rows stay unpublished and are claimed again. Rows
	// of the claim in none of o's lists are given back unchanged.
	Finish(ctx context.Context, o Outcome) error
	// Release gives the rows back unchanged. It may be called after
	// Finish, and then does nothing. It takes no context but must not
	// block for long on a dependency that hangs: the stores here bound it
	// by the time Claim's ctx had left.
	Release()
}

// Outcome is what a relay cycle did with the rows of a claim, recorded by
// [Claim.Finish].
type Outcome struct {
	// Published rows were appended to their streams: they are marked
	// published.
	Published []int64
	// Failed rows were not appended because Redis refused or did not
	// answer: a transient failure. They stay unpublished with attempts +
	// 1 and LastError (at most 1 KiB of UTF-8, cut at a rune boundary),
	// due again after Backoff.Delay(attempts + 1): Backoff.Initial after
	// its first failure.
	Failed    []int64
	LastError string
	Backoff   backoff.Exponential
	// Parked rows can never be appended: they do not encode (a row
	// written by an older version or by hand, over the size limit, …).
	// They leave the unpublished set with their reason — never claimed
	// again, not counted as backlog — until an operator unparks or drops
	// them.
	Parked []Parked
}

// Parked is a row set aside with the reason it can never be published.
type Parked struct {
	ID     int64
	Reason string // at most 1 KiB of UTF-8, cut at a rune boundary
}

// Backlog is what [Store.Backlog] counts.
type Backlog struct {
	// Rows is the number of unpublished rows, parked rows left out.
	Rows int64
	// Oldest is the age of the oldest of them (zero when there are none).
	Oldest time.Duration
	// Parked is the number of parked rows.
	Parked int64
}

// ParkedRow is a parked row as an operator sees it (see
// [PostgresStore.ListParked]).
type ParkedRow struct {
	ID        int64
	EventID   string
	Stream    string
	EventType event.Type
	// Reason is why the relay parked it: the encoding error.
	Reason    string
	CreatedAt time.Time
	ParkedAt  time.Time
}

// Subscription wakes a waiting relay.
type Subscription interface {
	// Wait returns when rows may have been written, after d, or when ctx
	// ends, whichever is first. It may return early; the relay then just
	// looks for rows.
	Wait(ctx context.Context, d time.Duration)
	// Close releases the subscription's resources.
	Close()
}
