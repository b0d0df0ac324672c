package brandguard

import (
	"errors"
	"fmt"

	"github.com/headwaylabs/headway/event"
)

// Sentinel errors. Verdict errors wrap one of these, and decoding failures
// also wrap the event package's sentinel (errors.Is matches both).
var (
	// ErrLegacySchema: the entry has schema_version 1, which predates
	// brand_id. Counted in event_legacy_schema_total and surfaced to
	// supervision.
	ErrLegacySchema = errors.New("brandguard: legacy schema_version 1")
	// ErrMissingBrand: a schema_version 2 entry has no brand_id.
	ErrMissingBrand = errors.New("brandguard: missing brand_id")
	// ErrUnparseableBrand: brand_id is not a positive 64-bit decimal integer.
	ErrUnparseableBrand = errors.New("brandguard: unparseable brand_id")
	// ErrUnsupportedSchema: schema_version is not a version this build reads.
	ErrUnsupportedSchema = errors.New("brandguard: unsupported schema_version")
	// ErrTooLarge: the entry is larger than the codec's limit.
	ErrTooLarge = errors.New("brandguard: entry too large")
	// ErrMalformed: the entry could not be decoded for another reason.
	ErrMalformed = errors.New("brandguard: malformed entry")
	// ErrBrandMismatch: in enforce mode, the envelope brand differs from the
	// brand of the entity the event is applied to.
	ErrBrandMismatch = errors.New("brandguard: envelope brand differs from target brand")
	// ErrOwnerBrandMismatch: a producer tried to write an outbox row whose
	// envelope brand differs from the owning row's brand.
	ErrOwnerBrandMismatch = errors.New("brandguard: envelope brand differs from owning row brand")
	// ErrInvalidBrand: a target or owner brand passed by the caller is not a
	// positive brand ID.
	ErrInvalidBrand = errors.New("brandguard: invalid brand")
	// ErrInvalidMode: MULTI_BRAND_ENFORCEMENT or Config.Mode holds a value
	// other than observe or enforce.
	ErrInvalidMode = errors.New("brandguard: invalid enforcement mode")
	// ErrNoCatalog is returned by New for a Config without a Catalog.
	ErrNoCatalog = errors.New("brandguard: Catalog is nil (platform.Catalog() for the platform's streams, or a catalog of your own)")
)

// MismatchError is the error of a brand comparison that failed: the
// consumer-side target check in enforce mode (matches [ErrBrandMismatch]) or
// the producer-side owner check (matches [ErrOwnerBrandMismatch]).
type MismatchError struct {
	EventID   string
	EventType event.Type
	Envelope  event.BrandID // brand_id carried by the event
	Other     event.BrandID // the target entity's or owning row's brand
	Producer  bool          // true for the owner check, false for the target check
}

func (e *MismatchError) Error() string {
	if e.Producer {
		return fmt.Sprintf("%v: event %s (%s) has brand %d, owning row has brand %d",
			ErrOwnerBrandMismatch, e.EventID, e.EventType, e.Envelope, e.Other)
	}
	return fmt.Sprintf("%v: event %s (%s) has brand %d, target has brand %d",
		ErrBrandMismatch, e.EventID, e.EventType, e.Envelope, e.Other)
}

// Is matches ErrOwnerBrandMismatch for the producer check and
// ErrBrandMismatch for the target check.
func (e *MismatchError) Is(target error) bool {
	if e.Producer {
		return target == ErrOwnerBrandMismatch
	}
	return target == ErrBrandMismatch
}
