package brandguard

import "fmt"

// Action is what the consumer does with an entry.
type Action uint8

const (
	// ActionAccept: dispatch the event to its handler. The zero Action is
	// not Accept, so an unset Verdict never lets an event through.
	ActionAccept Action = iota + 1
	// ActionIgnore: acknowledge without dispatch (retired sentinel types).
	ActionIgnore
	// ActionReject: the entry can never succeed; the consumer dead-letters
	// it with the Reason.
	ActionReject
)

func (a Action) String() string {
	switch a {
	case ActionAccept:
		return "accept"
	case ActionIgnore:
		return "ignore"
	case ActionReject:
		return "reject"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Reason says why an entry was ignored or rejected. The values are bounded
// and used as metric labels and as the reason field of dead letters.
type Reason string

const (
	ReasonNone              Reason = ""                   // accepted
	ReasonRetiredType       Reason = "retired_type"       // ignored: retired catalog type
	ReasonLegacySchema      Reason = "legacy_schema"      // schema_version 1
	ReasonUnsupportedSchema Reason = "unsupported_schema" // schema_version missing, 0 or not a number
	ReasonMissingBrand      Reason = "missing_brand"      // schema_version 2 without brand_id
	ReasonUnparseableBrand  Reason = "unparseable_brand"  // brand_id not a positive 64-bit decimal
	ReasonTooLarge          Reason = "entry_too_large"    // over the codec's size limit
	ReasonMalformed         Reason = "malformed"          // any other decoding failure
	ReasonBrandMismatch     Reason = "brand_mismatch"     // enforce mode: envelope brand differs from target
)

// Reasons lists every Reason, for tests, dashboards and documentation.
var Reasons = []Reason{ReasonRetiredType, ReasonLegacySchema, ReasonUnsupportedSchema,
	ReasonMissingBrand, ReasonUnparseableBrand, ReasonTooLarge, ReasonMalformed, ReasonBrandMismatch}

// Signal asks supervision to surface a condition: the rule for legacy
// schema_version 1 entries is "reject and surface to supervision". The
// consumer turns it into a not-ready window on its watermark.
type Signal struct {
	Stream   string
	Consumer string
	Reason   Reason
	EventID  string // empty when the entry did not decode far enough
	Err      error
}

func (s *Signal) String() string {
	return fmt.Sprintf("%s on stream %s, consumer %s: %v", s.Reason, s.Stream, s.Consumer, s.Err)
}

// Verdict is brandguard's decision on one entry.
type Verdict struct {
	Action Action
	Reason Reason // ReasonNone for ActionAccept
	// Err explains an ignore or reject; it wraps a sentinel of this package
	// and, for decoding failures, the event package's sentinel too.
	Err error
	// Signal is non-nil when the verdict must be surfaced to supervision.
	Signal *Signal
}

// Accepted reports whether the event should be dispatched.
func (v Verdict) Accepted() bool { return v.Action == ActionAccept }
