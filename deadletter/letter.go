package deadletter

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// Fields a dead letter adds to the original entry's fields.
const (
	FieldReason     = "dlq_reason"     // why: a brandguard reason, max_deliveries, handler_permanent
	FieldError      = "dlq_error"      // the error text (at most 2 KiB; never the payload)
	FieldStream     = "dlq_stream"     // the source stream key
	FieldGroup      = "dlq_group"      // the consumer group
	FieldConsumer   = "dlq_consumer"   // the consumer that gave up
	FieldID         = "dlq_id"         // the entry ID in the source stream
	FieldDeliveries = "dlq_deliveries" // Redis's delivery count at that time
	FieldAt         = "dlq_at"         // when, RFC 3339 UTC
	// FieldTruncated is present when the original entry was over the
	// codec's size limit: it gives the entry's size and which of its fields
	// were left out (those over 4 KiB). The dead letter keeps the rest, so
	// the entry can be found and diagnosed; it cannot be redriven whole.
	FieldTruncated = "dlq_truncated"
)

// fields are the fields a dead letter adds to the original entry.
var fields = []string{FieldReason, FieldError, FieldStream, FieldGroup, FieldConsumer, FieldID,
	FieldDeliveries, FieldAt, FieldTruncated}

// IsField reports whether name is one of the fields a dead letter adds.
func IsField(name string) bool { return slices.Contains(fields, name) }

// Letter is one entry of a dead-letter stream, as [Parse] reads it. A
// field the entry lacks leaves its member zero.
type Letter struct {
	ID           string // the entry ID in the dead-letter stream
	Reason       string // dlq_reason
	Error        string // dlq_error
	SourceStream string // dlq_stream: the key of the stream it was dead-lettered from
	SourceID     string // dlq_id: its entry ID in that stream
	Group        string // dlq_group
	Consumer     string // dlq_consumer
	Deliveries   int64  // dlq_deliveries; 0 when absent or not a number
	At           string // dlq_at as written (RFC 3339 UTC); see [Letter.Time]
	Truncated    string // dlq_truncated: empty unless the original was over the size limit
	// Fields are the original entry's fields, without the dlq_* ones. It
	// is never nil.
	Fields map[string]string
}

// Parse reads a dead letter from an entry of a dead-letter stream. It does
// not fail: an entry missing dlq_* fields (written by an older version, or
// by hand) gives a Letter with those members zero.
func Parse(msg redis.XMessage) Letter {
	l := Letter{ID: msg.ID, Fields: make(map[string]string, len(msg.Values))}
	for k, v := range msg.Values {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case []byte:
			s = string(v)
		default:
			s = fmt.Sprint(v)
		}
		switch k {
		case FieldReason:
			l.Reason = s
		case FieldError:
			l.Error = s
		case FieldStream:
			l.SourceStream = s
		case FieldGroup:
			l.Group = s
		case FieldConsumer:
			l.Consumer = s
		case FieldID:
			l.SourceID = s
		case FieldDeliveries:
			l.Deliveries, _ = strconv.ParseInt(s, 10, 64)
		case FieldAt:
			l.At = s
		case FieldTruncated:
			l.Truncated = s
		default:
			l.Fields[k] = s
		}
	}
	return l
}

// Time returns when l was dead-lettered: its dlq_at, else the time of its
// entry ID in the source stream (dlq_id), else the time of its own ID in
// the dead-letter stream. It reports false when none of them gives one.
func (l Letter) Time() (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, l.At); err == nil {
		return t, true
	}
	for _, id := range []string{l.SourceID, l.ID} {
		if ms, _, ok := streamid.Parse(id); ok && ms > 0 && ms <= math.MaxInt64 {
			return time.UnixMilli(int64(ms)), true
		}
	}
	return time.Time{}, false
}
