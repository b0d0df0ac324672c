package event

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Wire field names of an entry (docs/wire-format.md).
const (
	FieldEventID       = "event_id"
	FieldEventType     = "event_type"
	FieldSchemaVersion = "schema_version"
	FieldBrandID       = "brand_id"
	FieldOccurredAt    = "occurred_at"
	FieldAggregateID   = "aggregate_id"
	FieldPayload       = "payload"
	FieldTraceParent   = "traceparent"
	FieldTraceState    = "tracestate"
)

// DefaultMaxEntryBytes is the size limit of a [Codec] whose MaxEntryBytes is
// zero: 1 MiB of field names and values together.
const DefaultMaxEntryBytes = 1 << 20

const (
	maxEventIDLen     = 128
	maxTypeLen        = 128
	maxAggregateIDLen = 256
	maxTraceStateLen  = 512
)

// Codec converts envelopes to and from Redis stream entry fields. The zero
// value is ready to use with [DefaultMaxEntryBytes]. A Codec is a plain
// value and safe for concurrent use.
type Codec struct {
	// MaxEntryBytes bounds the sum of the lengths of all field names and
	// values of one entry, known or not. Zero or negative means
	// DefaultMaxEntryBytes.
	MaxEntryBytes int
}

func (c Codec) limit() int {
	if c.MaxEntryBytes <= 0 {
		return DefaultMaxEntryBytes
	}
	return c.MaxEntryBytes
}

// Decode decodes with the zero [Codec].
func Decode(fields map[string]any) (Envelope, error) { return Codec{}.Decode(fields) }

// Encode encodes with the zero [Codec].
func Encode(e Envelope) ([]any, error) { return Codec{}.Encode(e) }

// Decode turns the fields of one stream entry, as go-redis returns them in
// [redis.XMessage.Values] (string values; []byte is accepted too), into an
// Envelope.
//
// Every failure is a [*FieldError] wrapping one of [ErrMissingField],
// [ErrBadField], [ErrBadSchemaVersion], [ErrBadBrandID], [ErrBadTimestamp],
// [ErrPayloadNotJSON] or [ErrEntryTooLarge]. The size limit is checked
// before anything is parsed. Unknown extra fields are tolerated. brand_id is
// required from schema version 2; a version 1 entry may lack it (brandguard
// rejects version 1 entries; decoding them lets it count them). An invalid
// traceparent is dropped, not an error.
//
// Beside an error it returns the identity fields that are valid each on
// its own (event_id, event_type, brand_id, aggregate_id, and the
// schema_version when it parsed), so that a rejected entry can be logged
// and counted under its type; that envelope is not valid and must not be
// applied.
func (c Codec) Decode(fields map[string]any) (Envelope, error) {
	var e Envelope
	// One pass over the map sizes the entry and picks out the known
	// fields (cheaper than a lookup per field).
	var f entryFields
	size := 0
	for k, v := range fields {
		size += len(k)
		switch v := v.(type) {
		case string:
			size += len(v)
		case []byte:
			size += len(v)
		}
		if i := knownField(k); i >= 0 {
			f.values[i], f.present = v, f.present|1<<i
		}
	}
	if size > c.limit() {
		return f.identity(0), &FieldError{Err: ErrEntryTooLarge, Detail: strconv.Itoa(size) + " bytes, limit " + strconv.Itoa(c.limit())}
	}

	sv, err := f.required(fSchemaVersion)
	if err != nil {
		return f.identity(0), err
	}
	if e.SchemaVersion, err = parseSchemaVersion(sv); err != nil {
		return f.identity(0), err
	}
	fail := func(err *FieldError) (Envelope, error) {
		err.SchemaVersion = e.SchemaVersion
		return f.identity(e.SchemaVersion), err
	}

	if e.EventID, err = f.required(fEventID); err != nil {
		return fail(err)
	}
	if err := checkEventID(e.EventID); err != nil {
		return fail(err)
	}
	typ, err := f.required(fEventType)
	if err != nil {
		return fail(err)
	}
	if err := checkType(typ); err != nil {
		return fail(err)
	}
	e.EventType = Type(typ)

	brand, present, err := f.optional(fBrandID)
	if err != nil {
		return fail(err)
	}
	switch {
	case present:
		b, perr := parseBrand(brand)
		if perr != nil {
			return fail(perr)
		}
		e.BrandID = b
	case e.SchemaVersion >= 2:
		return fail(fieldErr(FieldBrandID, ErrMissingField, "required from schema_version 2"))
	}

	ts, err := f.required(fOccurredAt)
	if err != nil {
		return fail(err)
	}
	t, perr := parseTimestamp(ts)
	if perr != nil {
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is not RFC 3339", quoteShort(ts)))
	}
	e.OccurredAt = t.UTC()
	if y := e.OccurredAt.Year(); y < 1 || y > 9999 {
		// As Envelope.Validate: what is decoded can be encoded again.
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is in year %d in UTC, outside 1 to 9999", quoteShort(ts), y))
	}
	if e.OccurredAt.IsZero() {
		// Validate refuses Go's zero time (it means "not set"), so decoding
		// does too.
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is the zero time", quoteShort(ts)))
	}

	if e.AggregateID, err = f.required(fAggregateID); err != nil {
		return fail(err)
	}
	if err := checkAggregateID(e.AggregateID); err != nil {
		return fail(err)
	}

	payload, err := f.requiredBytes(fPayload)
	if err != nil {
		return fail(err)
	}
	if !validJSON(payload) {
		return fail(fieldErr(FieldPayload, ErrPayloadNotJSON, "%d bytes", len(payload)))
	}
	e.Payload = payload

	// Trace context is advisory: the W3C spec asks receivers to ignore an
	// invalid traceparent rather than fail, so it never rejects an event.
	if tp, ok, _ := f.optional(fTraceParent); ok && validTraceParent(tp) {
		e.TraceParent = tp
		if ts, ok, _ := f.optional(fTraceState); ok && validTraceState(ts) {
			e.TraceState = ts
		}
	}
	return e, nil
}

// Encode validates e with [Envelope.Validate] and returns its fields as
// alternating names and values in a fixed order, ready for
// redis.XAddArgs.Values. The optional trace fields are written only when
// set. An entry over the size limit returns [ErrEntryTooLarge].
func (c Codec) Encode(e Envelope) ([]any, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	n := 14
	if e.TraceParent != "" {
		n += 2
	}
	if e.TraceState != "" {
		n += 2
	}
	out := make([]any, 0, n)
	out = append(out,
		FieldEventID, e.EventID,
		FieldEventType, string(e.EventType),
		FieldSchemaVersion, strconv.Itoa(e.SchemaVersion),
		FieldBrandID, e.BrandID.String(),
		FieldOccurredAt, e.OccurredAt.UTC().Format(time.RFC3339Nano),
		FieldAggregateID, e.AggregateID,
		FieldPayload, string(e.Payload),
	)
	if e.TraceParent != "" {
		out = append(out, FieldTraceParent, e.TraceParent)
	}
	if e.TraceState != "" {
		out = append(out, FieldTraceState, e.TraceState)
	}
	size := 0
	for _, v := range out {
		size += len(v.(string))
	}
	if size > c.limit() {
		return nil, &FieldError{Err: ErrEntryTooLarge, Detail: strconv.Itoa(size) + " bytes, limit " + strconv.Itoa(c.limit())}
	}
	return out, nil
}

// parseTimestamp returns what time.Parse(time.RFC3339Nano, s) returns. The
// form Encode writes — UTC with a "Z" and at most nine fraction digits — is
// parsed here, several times faster; anything else goes to time.Parse
// (the fuzz test compares them).
func parseTimestamp(s string) (time.Time, error) {
	if t, ok := parseUTCTimestamp(s); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// parseUTCTimestamp parses YYYY-MM-DDTHH:MM:SS[.fraction]Z with a valid
// date and time of day; ok is false for anything else.
func parseUTCTimestamp(s string) (t time.Time, ok bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
		s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return t, false
	}
	var v [6]int // year, month, day, hour, minute, second
	for i, at := range [6]int{0, 5, 8, 11, 14, 17} {
		n := 2
		if i == 0 {
			n = 4
		}
		for _, c := range []byte(s[at : at+n]) {
			if c < '0' || c > '9' {
				return t, false
			}
			v[i] = v[i]*10 + int(c-'0')
		}
	}
	year, month, day := v[0], v[1], v[2]
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || v[3] > 23 || v[4] > 59 || v[5] > 59 {
		return t, false
	}
	nsec := 0
	switch frac := s[19 : len(s)-1]; {
	case frac == "":
	case len(frac) >= 2 && len(frac) <= 10 && frac[0] == '.':
		for _, c := range []byte(frac[1:]) {
			if c < '0' || c > '9' {
				return t, false
			}
			nsec = nsec*10 + int(c-'0')
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	default:
		return t, false
	}
	return time.Date(year, time.Month(month), day, v[3], v[4], v[5], nsec, time.UTC), true
}

// daysIn returns the number of days of a month (1 to 12) in the proleptic
// Gregorian calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// validJSON reports whether b is one JSON value in UTF-8 (RFC 8259 §8.1;
// json.Valid alone lets invalid UTF-8 inside strings through), with
// optional white space around it. It reports exactly what
// utf8.Valid(b) && json.Valid(b) report, nesting limit included, in one
// pass over b and several times faster (the fuzz test compares them).
func validJSON(b []byte) bool {
	var stackBuf [32]bool // open containers: true for an object, false for an array
	stack := stackBuf[:0]
	i := skipJSONSpace(b, 0)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxJSONDepth {
				return false
			}
			stack = append(stack, c == '{')
			i = skipJSONSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if i = skipJSONKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = skipJSONString(b, i); i < 0 {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if i = skipJSONNumber(b, i); i < 0 {
				return false
			}
		case c == 't' && hasPrefix(b[i:], "true"), c == 'n' && hasPrefix(b[i:], "null"):
			i += 4
		case c == 'f' && hasPrefix(b[i:], "false"):
			i += 5
		default:
			return false
		}
		// After a value: close containers until a comma or the end.
		for {
			i = skipJSONSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			object := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipJSONSpace(b, i+1)
				if object {
					if i = skipJSONKey(b, i); i < 0 {
						return false
					}
				}
				break
			}
			if (object && b[i] != '}') || (!object && b[i] != ']') {
				return false
			}
			i++
			stack = stack[:len(stack)-1]
		}
	}
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipJSONKey skips an object member's name and colon from b[i] and the
// white space after them; -1 when they are not there.
func skipJSONKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = skipJSONString(b, i); i < 0 {
		return -1
	}
	if i = skipJSONSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipJSONSpace(b, i+1)
}

// skipJSONString returns the index after the string that starts at b[i]
// (a quote), or -1 when it is not a valid string of valid UTF-8.
func skipJSONString(b []byte, i int) int {
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < ' ':
			return -1
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return -1
			}
			i += size
		}
	}
	return -1
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipJSONNumber returns the index after the number that starts at b[i],
// or -1 when it is not a valid number.
func skipJSONNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// Indexes of the known fields in entryFields.
const (
	fEventID = iota
	fEventType
	fSchemaVersion
	fBrandID
	fOccurredAt
	fAggregateID
	fPayload
	fTraceParent
	fTraceState
	numKnownFields
)

var knownFieldNames = [numKnownFields]string{FieldEventID, FieldEventType, FieldSchemaVersion, FieldBrandID,
	FieldOccurredAt, FieldAggregateID, FieldPayload, FieldTraceParent, FieldTraceState}

// knownField returns the index of a known field name, or -1.
func knownField(name string) int {
	switch name {
	case FieldEventID:
		return fEventID
	case FieldEventType:
		return fEventType
	case FieldSchemaVersion:
		return fSchemaVersion
	case FieldBrandID:
		return fBrandID
	case FieldOccurredAt:
		return fOccurredAt
	case FieldAggregateID:
		return fAggregateID
	case FieldPayload:
		return fPayload
	case FieldTraceParent:
		return fTraceParent
	case FieldTraceState:
		return fTraceState
	}
	return -1
}

// identity returns an envelope with the entry's identity fields that are
// valid each on its own — event_id, event_type, brand_id, aggregate_id —
// and schemaVersion: what Decode returns beside an error, so a rejected
// entry can still be logged and counted under its type. It is not a valid
// envelope.
func (f *entryFields) identity(schemaVersion int) Envelope {
	e := Envelope{SchemaVersion: schemaVersion}
	if id, _, err := f.optional(fEventID); err == nil && checkEventID(id) == nil {
		e.EventID = id
	}
	if typ, _, err := f.optional(fEventType); err == nil && checkType(typ) == nil {
		e.EventType = Type(typ)
	}
	if b, ok, err := f.optional(fBrandID); err == nil && ok {
		if brand, perr := parseBrand(b); perr == nil {
			e.BrandID = brand
		}
	}
	if agg, _, err := f.optional(fAggregateID); err == nil && checkAggregateID(agg) == nil {
		e.AggregateID = agg
	}
	return e
}

// entryFields holds the known fields of an entry, by index.
type entryFields struct {
	values  [numKnownFields]any
	present uint16 // bit i: field i is in the entry (its value may be nil)
}

func (f *entryFields) optional(i int) (string, bool, *FieldError) {
	if f.present&(1<<i) == 0 {
		return "", false, nil
	}
	switch v := f.values[i].(type) {
	case string:
		return v, true, nil
	case []byte:
		return string(v), true, nil
	default:
		return "", true, fieldErr(knownFieldNames[i], ErrBadField, "value of type %T, want a string", v)
	}
}

func (f *entryFields) required(i int) (string, *FieldError) {
	s, ok, err := f.optional(i)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fieldErr(knownFieldNames[i], ErrMissingField, "")
	}
	return s, nil
}

func (f *entryFields) requiredBytes(i int) ([]byte, *FieldError) {
	if f.present&(1<<i) == 0 {
		return nil, fieldErr(knownFieldNames[i], ErrMissingField, "")
	}
	switch v := f.values[i].(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return append([]byte(nil), v...), nil
	default:
		return nil, fieldErr(knownFieldNames[i], ErrBadField, "value of type %T, want a string", v)
	}
}

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
