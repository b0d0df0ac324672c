package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCleanCellDefusesTerminalInput(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "-",
		"plain BET_SETTLED":         "plain BET_SETTLED",
		"a\tb\nc\r\n":               "a b c  ",
		"\x1b[31mred\x1b[0m":        `\x1b[31mred\x1b[0m`,
		"\x1b]0;owned\x07":          `\x1b]0;owned\x07`,
		"bell\x07 del\x7f c1\u009b": `bell\x07 del\x7f c1\x9b`,
		"abc\u202edcba":             `abc\u202edcba`,
		"bad \xff\xfe byte":         `bad \xff\xfe byte`,
		"ok � ünïcode 日本":           "ok � ünïcode 日本",
	} {
		if got := cleanCell(in); got != want {
			t.Errorf("cleanCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCleanCell: whatever a stream entry holds, a table cell is valid
// UTF-8 with no control character and no bidirectional override, and text
// without any of those passes unchanged.
func FuzzCleanCell(f *testing.F) {
	for _, s := range []string{"", "x", "\x1b[2J", "a\tb", "\xff", "\u202e", "日本\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := cleanCell(s)
		if !utf8.ValidString(out) {
			t.Fatalf("cleanCell(%q) = %q: not UTF-8", s, out)
		}
		for _, r := range out {
			if unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("cleanCell(%q) = %q: contains %U", s, out, r)
			}
		}
		clean := s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
			return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
		})
		if clean && out != s {
			t.Fatalf("cleanCell(%q) = %q: changed clean text", s, out)
		}
	})
}

func TestWriteJSONEscapesTerminalControls(t *testing.T) {
	in := "id\u009b31m \u202eevil\u202c \u2066x\u2069 del\x7f \u200f\u061c é 日本 \u00a0"
	var b strings.Builder
	if err := writeJSON(&b, map[string]string{"event_id": in}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, esc := range []string{`\u009b`, `\u202e`, `\u202c`, `\u2066`, `\u2069`, `\u007f`, `\u200f`, `\u061c`} {
		if !strings.Contains(out, esc) {
			t.Errorf("output lacks %s:\n%s", esc, out)
		}
	}
	if !strings.Contains(out, "é 日本 \u00a0") {
		t.Errorf("plain non-ASCII text escaped:\n%s", out)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got["event_id"] != in {
		t.Errorf("decodes to %q, want %q", got["event_id"], in)
	}
}

// FuzzWriteJSON: whatever a stream entry holds, the JSON output has no
// control character and no bidirectional control outside escapes, and it
// decodes to what encoding/json alone would give.
func FuzzWriteJSON(f *testing.F) {
	for _, s := range []string{"", "x", "\x1b[2J", "\u009b", "\u202e", "日本\x00", "\xff\u2066", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		if err := writeJSON(&b, []string{s}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, r := range out {
			if (unicode.IsControl(r) && r != '\n') || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("writeJSON(%q) = %q: contains %U", s, out, r)
			}
		}
		var got, want []string
		plain, err := json.Marshal([]string{s})
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(plain, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("writeJSON(%q) = %q: not JSON: %v", s, out, err)
		}
		if len(got) != 1 || got[0] != want[0] {
			t.Fatalf("writeJSON(%q) decodes to %q, want %q", s, got, want)
		}
	})
}
