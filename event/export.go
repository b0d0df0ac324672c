package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// GeneratedHeader opens every generated catalog document.
const GeneratedHeader = "Code generated from an event catalog; DO NOT EDIT."

// Markdown renders the catalog as the Markdown page docs/event-catalog.md.
// The output depends only on the catalog's contents and order.
func (c *Catalog) Markdown() []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cell := func(s string) string {
		if s == "" {
			return "—"
		}
		return strings.ReplaceAll(s, "|", `\|`)
	}
	list := func(ts []Type) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = "`" + string(t) + "`"
		}
		return strings.Join(s, ", ")
	}
	byStatus := func(s *StreamInfo, st Status) []Type {
		var out []Type
		for _, ti := range s.Types {
			if ti.Status == st {
				out = append(out, ti.Type)
			}
		}
		return out
	}

	p("<!-- %s -->\n\n", GeneratedHeader)
	p("# Event catalog\n\n")
	p("The streams and the event types on each, generated from the event\n")
	p("catalog. A type is **emitted** when a producer writes it,\n")
	p("**reserved** when only its name is declared, **retired** when it is no\n")
	p("longer written but may remain in old backlogs. A reserved type becomes\n")
	p("emitted by changing its entry in the catalog in the same change that\n")
	p("lands its producer (the outbox writer refuses types that are not emitted).\n")
	p("Consumers check the types they dispatch at start-up with\n")
	p("`Catalog.CheckDispatch`; the same data is in `event-catalog.json`.\n\n")
	p("Stream keys carry a Redis Cluster hash tag: the stream `events:{name}` and\n")
	p("its dead-letter stream `events:{name}:dlq` share one slot.\n\n")

	p("## Streams\n\n")
	p("| Stream | Key | Dead letters | Producer | Consumers | Emitted | Reserved |\n")
	p("|---|---|---|---|---|---|---|\n")
	for i := range c.Streams {
		s := &c.Streams[i]
		var cons []string
		for _, co := range s.Consumers {
			cons = append(cons, co.Service)
		}
		p("| %s | `%s` | `%s` | %s | %s | %s | %s |\n", s.Name, s.Key(), s.DeadLetterKey(), cell(s.Producer),
			cell(strings.Join(cons, ", ")), cell(list(byStatus(s, StatusEmitted))), cell(list(byStatus(s, StatusReserved))))
	}
	p("\n")

	for i := range c.Streams {
		s := &c.Streams[i]
		p("## Stream %s\n\n", s.Name)
		p("Key `%s`, dead letters `%s`, produced by %s.\n\n", s.Key(), s.DeadLetterKey(), cell(s.Producer))
		if s.Note != "" {
			p("%s\n\n", s.Note)
		}
		p("| Type | Status | Dispatched by | Note |\n|---|---|---|---|\n")
		for _, ti := range s.Types {
			p("| `%s` | %s | %s | %s |\n", ti.Type, ti.Status, cell(strings.Join(s.ConsumersOf(ti.Type), ", ")), cell(ti.Note))
		}
		p("\n")
	}

	if len(c.Retired) > 0 {
		p("## Retired on every stream\n\n")
		p("| Type | Note |\n|---|---|\n")
		for _, ti := range c.Retired {
			p("| `%s` | %s |\n", ti.Type, cell(ti.Note))
		}
		p("\n")
	}
	p("## Not declared\n\n")
	p("There is no promotion stream: promotion has no outbound stream contract.\n")
	p("A stream is declared only with at least one emitted type and a consumer in\n")
	p("view; the catalog's own validation refuses a stream without an emitted type.\n")
	return b.Bytes()
}

type jsonStream struct {
	Name          string         `json:"name"`
	Key           string         `json:"key"`
	DeadLetterKey string         `json:"dead_letter_key"`
	Producer      string         `json:"producer"`
	Consumers     []ConsumerInfo `json:"consumers"`
	Types         []TypeInfo     `json:"types"`
	Note          string         `json:"note,omitempty"`
}

// JSON renders the catalog for other tools: streams with their keys,
// producer, consumers and types, and the catalog-wide retired types.
func (c *Catalog) JSON() ([]byte, error) {
	doc := struct {
		Comment string       `json:"_comment"`
		Streams []jsonStream `json:"streams"`
		Retired []TypeInfo   `json:"retired"`
	}{Comment: GeneratedHeader, Retired: c.Retired}
	if doc.Retired == nil {
		doc.Retired = []TypeInfo{}
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		js := jsonStream{Name: s.Name, Key: s.Key(), DeadLetterKey: s.DeadLetterKey(), Producer: s.Producer,
			Consumers: s.Consumers, Types: s.Types, Note: s.Note}
		if js.Consumers == nil {
			js.Consumers = []ConsumerInfo{}
		}
		doc.Streams = append(doc.Streams, js)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("event: catalog to JSON: %w", err)
	}
	return append(out, '\n'), nil
}
