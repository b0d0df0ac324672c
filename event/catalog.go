package event

import (
	"errors"
	"fmt"
	"strings"
)

// Status is where an event type stands in its lifecycle.
type Status int

const (
	// StatusEmitted: a producer writes it; consumers can rely on it.
	StatusEmitted Status = iota + 1
	// StatusReserved: the name is declared so nobody invents another, but no
	// producer writes it. It becomes emitted only by changing its catalog
	// entry in the same change that lands the producer.
	StatusReserved
	// StatusRetired: no longer written; old entries may remain in long-lived
	// backlogs and current consumers ignore them.
	StatusRetired
)

var statusNames = [...]string{StatusEmitted: "emitted", StatusReserved: "reserved", StatusRetired: "retired"}

func (s Status) String() string {
	if s >= StatusEmitted && s <= StatusRetired {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText writes the status name.
func (s Status) MarshalText() ([]byte, error) {
	if s < StatusEmitted || s > StatusRetired {
		return nil, fmt.Errorf("event: invalid status %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if i > 0 && n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("event: unknown status %q", b)
}

// TypeInfo is one event type in the catalog.
type TypeInfo struct {
	Type   Type   `json:"type"`
	Status Status `json:"status"`
	Note   string `json:"note,omitempty"`
}

// ConsumerInfo is one consuming service of a stream and the event types it
// dispatches to handlers. Every other type on the stream is acknowledged by
// it as unhandled.
type ConsumerInfo struct {
	Service    string `json:"service"`
	Dispatches []Type `json:"dispatches"`
}

// StreamInfo is one stream of the catalog.
type StreamInfo struct {
	// Name is the short name, e.g. "wallet"; the Redis key is [StreamKey].
	Name      string         `json:"name"`
	Producer  string         `json:"producer"`
	Consumers []ConsumerInfo `json:"consumers"`
	Types     []TypeInfo     `json:"types"`
	Note      string         `json:"note,omitempty"`
}

// Key returns the stream's Redis key, [StreamKey] of its name.
func (s *StreamInfo) Key() string { return StreamKey(s.Name) }

// DeadLetterKey returns the key of the stream's dead-letter stream,
// [DeadLetterKey] of its name.
func (s *StreamInfo) DeadLetterKey() string { return DeadLetterKey(s.Name) }

// Type returns the catalog entry of t on this stream.
func (s *StreamInfo) Type(t Type) (TypeInfo, bool) {
	for _, ti := range s.Types {
		if ti.Type == t {
			return ti, true
		}
	}
	return TypeInfo{}, false
}

// ConsumersOf returns the services that dispatch t on this stream.
func (s *StreamInfo) ConsumersOf(t Type) []string {
	var out []string
	for _, c := range s.Consumers {
		for _, d := range c.Dispatches {
			if d == t {
				out = append(out, c.Service)
			}
		}
	}
	return out
}

// StreamKey returns the Redis key of the stream called name:
// "events:{name}". The braces are a Redis Cluster hash tag, so the stream
// and its dead-letter stream live in one slot and one script (or
// MULTI/EXEC) may touch both.
func StreamKey(name string) string { return "events:{" + name + "}" }

// DeadLetterKey returns the key of the dead-letter stream of the stream
// called name: "events:{name}:dlq", in the same hash slot as [StreamKey].
func DeadLetterKey(name string) string { return StreamKey(name) + ":dlq" }

// Catalog lists the streams of the platform and the event types on each.
// It is plain data: build one by hand (package platform has the
// platform's), check it with [Catalog.Validate], then share it read-only
// between goroutines.
type Catalog struct {
	Streams []StreamInfo `json:"streams"`
	// Retired lists types retired on every stream, such as the
	// BRAND_AWARE_PUBLISHING_BEGINS sentinel that each producer once wrote.
	Retired []TypeInfo `json:"retired"`
}

// Stream returns the stream called name.
func (c *Catalog) Stream(name string) (*StreamInfo, bool) {
	for i := range c.Streams {
		if c.Streams[i].Name == name {
			return &c.Streams[i], true
		}
	}
	return nil, false
}

// StreamByKey returns the stream whose Redis key is key.
func (c *Catalog) StreamByKey(key string) (*StreamInfo, bool) {
	for i := range c.Streams {
		if c.Streams[i].Key() == key {
			return &c.Streams[i], true
		}
	}
	return nil, false
}

// IsRetired reports whether t is retired on every stream.
func (c *Catalog) IsRetired(t Type) bool {
	for _, ti := range c.Retired {
		if ti.Type == t {
			return true
		}
	}
	return false
}

// Lookup returns what the catalog says of t on the stream called stream,
// including catalog-wide retired types.
func (c *Catalog) Lookup(stream string, t Type) (TypeInfo, bool) {
	if s, ok := c.Stream(stream); ok {
		if ti, ok := s.Type(t); ok {
			return ti, true
		}
	}
	for _, ti := range c.Retired {
		if ti.Type == t {
			return ti, true
		}
	}
	return TypeInfo{}, false
}

// Sentinel errors of catalog checks.
var (
	// ErrInvalidCatalog: the catalog breaks one of its own rules.
	ErrInvalidCatalog = errors.New("event: invalid catalog")
	// ErrUnknownStream: no stream of that name in the catalog.
	ErrUnknownStream = errors.New("event: unknown stream")
	// ErrNotDispatchable: a consumer declared a handler for a type that is
	// not emitted on its stream.
	ErrNotDispatchable = errors.New("event: type not emitted on stream")
)

// TypeProblem is one refused type of a [DispatchError].
type TypeProblem struct {
	Type Type
	Why  string // "reserved: no producer writes it", "retired", "unknown on stream wallet", ...
}

// DispatchError is returned by [Catalog.CheckDispatch] and
// [Catalog.CheckEmit]; it names every refused type and matches
// [ErrNotDispatchable].
type DispatchError struct {
	Stream   string
	Problems []TypeProblem
}

func (e *DispatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "event: stream %q: ", e.Stream)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s is %s", p.Type, p.Why)
	}
	return b.String()
}

// Is matches ErrNotDispatchable.
func (e *DispatchError) Is(target error) bool { return target == ErrNotDispatchable }

// CheckDispatch is the start-up check of a consumer: given its stream and the
// event types it has handlers for, it returns nil when every type is emitted
// on that stream, or a [*DispatchError] naming every type that is reserved,
// retired or unknown there. An unknown stream returns an error wrapping
// [ErrUnknownStream].
func (c *Catalog) CheckDispatch(stream string, types []Type) error {
	s, ok := c.Stream(stream)
	if !ok {
		return fmt.Errorf("%w %q (catalog streams: %s)", ErrUnknownStream, stream, strings.Join(c.streamNames(), ", "))
	}
	var problems []TypeProblem
	for _, t := range types {
		if why := c.notEmitted(s, t); why != "" {
			problems = append(problems, TypeProblem{Type: t, Why: why})
		}
	}
	if problems != nil {
		return &DispatchError{Stream: stream, Problems: problems}
	}
	return nil
}

// CheckEmit reports whether a producer may write t to the stream called
// stream: only emitted types may be written. The error is a
// [*DispatchError] (or wraps [ErrUnknownStream]).
func (c *Catalog) CheckEmit(stream string, t Type) error {
	return c.CheckDispatch(stream, []Type{t})
}

func (c *Catalog) notEmitted(s *StreamInfo, t Type) string {
	if ti, ok := s.Type(t); ok {
		switch ti.Status {
		case StatusEmitted:
			return ""
		case StatusReserved:
			return "reserved: declared, but no producer writes it yet"
		case StatusRetired:
			return "retired: no longer written"
		}
		return "of unknown status " + ti.Status.String()
	}
	if c.IsRetired(t) {
		return "retired: no longer written"
	}
	for i := range c.Streams {
		if _, ok := c.Streams[i].Type(t); ok {
			return fmt.Sprintf("unknown on stream %s (it belongs to stream %s)", s.Name, c.Streams[i].Name)
		}
	}
	return "unknown to the catalog"
}

func (c *Catalog) streamNames() []string {
	names := make([]string, len(c.Streams))
	for i := range c.Streams {
		names[i] = c.Streams[i].Name
	}
	return names
}

// Validate checks the catalog's own rules and returns every violation
// joined, each wrapping [ErrInvalidCatalog]:
//   - stream names are unique lower-case words, each stream has a producer
//     and at least one emitted type (no stream is declared empty);
//   - type names are well formed and no type appears twice, on one stream
//     or on two;
//   - catalog-wide entries are retired, stream entries have a known status;
//   - a consumer names its service and dispatches only types emitted on
//     its stream.
func (c *Catalog) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidCatalog}, args...)...))
	}
	streams := map[string]bool{}
	types := map[Type]string{}
	seeType := func(where string, ti TypeInfo) {
		if !ValidTypeName(string(ti.Type)) {
			bad("%s: type name %q is not UPPER_SNAKE_CASE", where, ti.Type)
		}
		if prev, dup := types[ti.Type]; dup {
			bad("type %s is listed twice (%s and %s)", ti.Type, prev, where)
		}
		types[ti.Type] = where
	}
	if len(c.Streams) == 0 {
		bad("no streams")
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		where := "stream " + s.Name
		if !validStreamName(s.Name) {
			bad("stream name %q is not a lower-case word", s.Name)
		}
		if streams[s.Name] {
			bad("stream %s is listed twice", s.Name)
		}
		streams[s.Name] = true
		if s.Producer == "" {
			bad("%s has no producer", where)
		}
		emitted := 0
		for _, ti := range s.Types {
			seeType(where, ti)
			switch ti.Status {
			case StatusEmitted:
				emitted++
			case StatusReserved, StatusRetired:
			default:
				bad("%s: type %s has invalid status %d", where, ti.Type, int(ti.Status))
			}
		}
		if emitted == 0 {
			bad("%s has no emitted type: do not pre-declare empty streams", where)
		}
		consumers := map[string]bool{}
		for _, co := range s.Consumers {
			if co.Service == "" {
				bad("%s has a consumer without a service name", where)
			}
			if consumers[co.Service] {
				bad("%s lists consumer %s twice", where, co.Service)
			}
			consumers[co.Service] = true
			if len(co.Dispatches) == 0 {
				bad("%s: consumer %s dispatches nothing", where, co.Service)
			}
			for _, t := range co.Dispatches {
				if ti, ok := s.Type(t); !ok || ti.Status != StatusEmitted {
					bad("%s: consumer %s dispatches %s, which is not emitted there", where, co.Service, t)
				}
			}
		}
	}
	for _, ti := range c.Retired {
		seeType("catalog-wide retired list", ti)
		if ti.Status != StatusRetired {
			bad("catalog-wide type %s has status %s, want retired", ti.Type, ti.Status)
		}
	}
	return errors.Join(errs...)
}

func validStreamName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
