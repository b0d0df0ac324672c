package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/headwaylabs/headway/internal/streamid"
)

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

// row writes one line; tabs and line breaks inside cells become spaces so
// that they cannot break the alignment.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cleanCell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cleanCell makes s safe for one table cell on a terminal: tabs and line
// breaks become spaces, and every other control character (an ANSI escape
// sequence in a hostile entry, say), every bidirectional-text control and
// every byte that is not UTF-8 is shown escaped (\x1b, \u202e), so stream
// content can neither break the table nor drive the operator's terminal.
func cleanCell(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r == utf8.RuneError && isBadByte(s[i:]):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		case bidiControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// bidiControl reports whether r is a bidirectional-text control, which
// reorders what a terminal shows: the embeddings and overrides
// U+202A–U+202E, the isolates U+2066–U+2069, the marks U+200E, U+200F and
// U+061C.
func bidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// isBadByte reports whether s starts with a byte that is not valid UTF-8
// (as opposed to a literal U+FFFD, which is valid and printed as is).
func isBadByte(s string) bool {
	r, size := utf8.DecodeRuneInString(s)
	return r == utf8.RuneError && size == 1
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeJSON writes v as indented JSON. Like a table cell, it cannot drive
// the operator's terminal: besides what encoding/json escapes (the C0
// controls, U+2028 and U+2029), DEL, the C1 controls and the
// bidirectional-text controls are written as \uXXXX escapes, which decode
// to the same strings.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(escapeControls(buf.Bytes()))
	return err
}

// escapeControls escapes DEL, the C1 controls and the bidirectional-text
// controls in the JSON text js as \uXXXX. Outside its strings JSON text is
// ASCII, so every such character is inside a string, where the escape
// stands for the same character.
func escapeControls(js []byte) []byte {
	var out []byte
	done := 0 // js[:done] is in out
	for i := 0; i < len(js); {
		r, size := utf8.DecodeRune(js[i:])
		if r == 0x7f || (r >= 0x80 && r < 0xa0) || bidiControl(r) {
			out = append(out, js[done:i]...)
			out = fmt.Appendf(out, `\u%04x`, r)
			done = i + size
		}
		i += size
	}
	if out == nil {
		return js
	}
	return append(out, js[done:]...)
}

// fmtAge renders seconds for people: 850ms, 4.2s, 3m04s, 2h03m, 3d04h.
func fmtAge(sec float64) string {
	if sec < 0 || math.IsNaN(sec) {
		return "-"
	}
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// idAge returns the age in seconds of a stream ID's millisecond part at
// now; 0 for an ID without time.
func idAge(id string, now time.Time) float64 {
	ms, ok := streamid.Millis(id)
	if !ok || ms == 0 || ms > math.MaxInt64 {
		return 0
	}
	return max(now.Sub(time.UnixMilli(int64(ms))).Seconds(), 0)
}

// seconds rounds to milliseconds for JSON.
func seconds(sec float64) float64 { return math.Round(sec*1000) / 1000 }
