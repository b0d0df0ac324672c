package event

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped in a [*FieldError]) by [Codec.Decode],
// [Codec.Encode] and [Envelope.Validate]. Match them with [errors.Is].
var (
	// ErrMissingField: a required field is absent from the entry.
	ErrMissingField = errors.New("missing field")
	// ErrBadField: a field is present but its value is not acceptable
	// (wrong type, empty, not UTF-8, bad syntax).
	ErrBadField = errors.New("bad field")
	// ErrBadSchemaVersion: schema_version is not a whole number this build
	// can read (see [MinSchemaVersion] and [MaxSchemaVersion]), or, when
	// encoding, is not [CurrentSchemaVersion].
	ErrBadSchemaVersion = errors.New("bad schema_version")
	// ErrBadBrandID: brand_id is not a positive 64-bit integer written as
	// decimal text.
	ErrBadBrandID = errors.New("bad brand_id")
	// ErrBadTimestamp: occurred_at is not an RFC 3339 timestamp.
	ErrBadTimestamp = errors.New("bad timestamp")
	// ErrPayloadNotJSON: payload is not one valid JSON value.
	ErrPayloadNotJSON = errors.New("payload is not JSON")
	// ErrEntryTooLarge: the entry's fields and values together exceed the
	// codec's size limit.
	ErrEntryTooLarge = errors.New("entry too large")
)

// FieldError is the error type of every decoding and encoding failure. It
// names the wire field at fault (empty for entry-level failures such as
// [ErrEntryTooLarge]), wraps one of the sentinels above, and records the
// schema_version when it could be read, so that a caller can tell a legacy
// (version 1) entry from a malformed one even when decoding failed.
//
// Detail never contains payload content.
type FieldError struct {
	Field         string // wire field name, such as "brand_id"; "" for the whole entry
	Err           error  // one of the package's sentinel errors
	Detail        string // what was wrong, for people
	SchemaVersion int    // the entry's schema_version if it parsed, else 0
}

func (e *FieldError) Error() string {
	msg := "event: "
	if e.Field != "" {
		msg += e.Field + ": "
	}
	msg += e.Err.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, sentinel error, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}
