package event

// The rules of each envelope field, as Decode applies them to what a
// producer wrote (docs/wire-format.md).

import (
	"strconv"
	"unicode/utf8"
)

func parseSchemaVersion(s string) (int, *FieldError) {
	if !isCanonicalDecimal(s) {
		return 0, fieldErr(FieldSchemaVersion, ErrBadSchemaVersion, "%s is not a positive whole number", quoteShort(s))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < MinSchemaVersion || n > MaxSchemaVersion {
		return 0, fieldErr(FieldSchemaVersion, ErrBadSchemaVersion,
			"%s is not a version this build reads (%d or more)", quoteShort(s), MinSchemaVersion)
	}
	return n, nil
}

// isCanonicalDecimal reports whether s is one or more ASCII digits without a
// leading zero.
func isCanonicalDecimal(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkEventID(s string) *FieldError {
	if s == "" {
		return fieldErr(FieldEventID, ErrBadField, "empty")
	}
	if len(s) > maxEventIDLen {
		return fieldErr(FieldEventID, ErrBadField, "%d bytes, at most %d", len(s), maxEventIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fieldErr(FieldEventID, ErrBadField, "byte %d is not visible ASCII", i)
		}
	}
	return nil
}

func checkType(s string) *FieldError {
	if s == "" {
		return fieldErr(FieldEventType, ErrBadField, "empty")
	}
	if !ValidTypeName(s) {
		return fieldErr(FieldEventType, ErrBadField, "%s is not an UPPER_SNAKE_CASE name of at most %d bytes", quoteShort(s), maxTypeLen)
	}
	return nil
}

// ValidTypeName reports whether s is a well-formed event type name.
func ValidTypeName(s string) bool {
	if s == "" || len(s) > maxTypeLen || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func checkAggregateID(s string) *FieldError {
	if s == "" {
		return fieldErr(FieldAggregateID, ErrBadField, "empty")
	}
	if len(s) > maxAggregateIDLen {
		return fieldErr(FieldAggregateID, ErrBadField, "%d bytes, at most %d", len(s), maxAggregateIDLen)
	}
	if !utf8.ValidString(s) {
		return fieldErr(FieldAggregateID, ErrBadField, "not UTF-8")
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return fieldErr(FieldAggregateID, ErrBadField, "contains a control character")
		}
	}
	return nil
}

// validTraceParent checks the W3C Trace Context traceparent form
// version-traceid-parentid-flags (version 00 layout; a higher version may
// carry more after the flags). Version ff and all-zero IDs are invalid.
func validTraceParent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if !lowerHex(s[0:2]) || s[0:2] == "ff" || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return false
	}
	if allZero(s[3:35]) || allZero(s[36:52]) {
		return false
	}
	if s[0:2] == "00" {
		return len(s) == 55
	}
	return len(s) == 55 || s[55] == '-'
}

// validTraceState is a conservative check of a W3C tracestate value: at most
// 512 bytes of printable ASCII.
func validTraceState(s string) bool {
	if len(s) > maxTraceStateLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// quoteShort quotes s for an error message, cut to 32 bytes so that a hostile
// value cannot blow up logs.
func quoteShort(s string) string {
	if len(s) > 32 {
		return strconv.Quote(s[:32]) + "…"
	}
	return strconv.Quote(s)
}
