package dedup

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Key identifies one event for one processing scope: a consumer group
// processes each event once, two groups each process it once.
type Key struct {
	Scope   string // the consumer group (or another stable processing scope)
	EventID string
}

func (k Key) String() string { return k.Scope + "/" + k.EventID }

// Outcome is what a store decided about one event.
type Outcome uint8

const (
	// Processed: the handler ran and succeeded, and the event is now
	// recorded as done.
	Processed Outcome = iota + 1
	// Duplicate: the event was done before; the handler did not run. The
	// caller acknowledges the entry.
	Duplicate
	// Busy: another worker holds the event's in-flight lease; the handler did
	// not run. The caller leaves the entry pending and tries again later.
	Busy
	// Failed: the handler ran and returned an error (or panicked); the
	// event is not recorded and will run again on redelivery.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Processed:
		return "processed"
	case Duplicate:
		return "duplicate"
	case Busy:
		return "busy"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Func is the work done for one event: the consumer's handler chain.
type Func func(ctx context.Context) error

// Store runs an event's handler at most once to success per [Key].
//
// Process runs fn unless the key is done or leased by another worker. When
// fn returns nil the key is recorded as done and Process returns
// (Processed, nil). When fn fails, the key is left unrecorded so the event
// runs again on redelivery — a failed handler never turns its event into a
// duplicate — and Process returns (Failed, the handler's error). When fn
// panics, the key is left unrecorded and the panic goes on up. An error of
// the store itself wraps [ErrStore]; the outcome is then Failed if fn ran
// and 0 if it did not.
//
// Implementations are safe for concurrent use; concurrent Process calls for
// one key run fn at most once at a time.
type Store interface {
	Process(ctx context.Context, key Key, fn Func) (Outcome, error)
}

// Batcher is implemented by stores that can lease and settle many keys in
// one round trip; the consumer uses it when present. Keys are leased with
// Claim, each handler runs outside the store, and Settle records the keys
// whose handler succeeded as done and drops the leases of the others.
type Batcher interface {
	Store
	// Claim sets out[i] to Processed when the caller now holds key i's
	// lease and must run its handler, or to Duplicate or Busy. len(out)
	// must equal len(keys). An error wraps ErrStore and leases nothing
	// reliably; the caller treats every key as Busy.
	Claim(ctx context.Context, keys []Key, out []Outcome) error
	// Settle records done as processed and releases the leases of failed.
	Settle(ctx context.Context, done, failed []Key) error
	// Extend renews the leases this store holds on keys for another lease
	// period, so a batch that runs long keeps them; keys it does not hold
	// are left alone.
	Extend(ctx context.Context, keys []Key) error
}

var (
	// ErrStore wraps failures of the store itself (as opposed to the
	// handler's).
	ErrStore = errors.New("dedup: store failure")
	// ErrInvalidKey: the key has an empty Scope or EventID, or one with a
	// NUL byte (which PostgreSQL's text cannot hold).
	ErrInvalidKey = errors.New("dedup: invalid key")
)

func checkKey(k Key) error {
	if k.Scope == "" || k.EventID == "" || strings.ContainsRune(k.Scope, 0) || strings.ContainsRune(k.EventID, 0) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, k.String())
	}
	return nil
}
