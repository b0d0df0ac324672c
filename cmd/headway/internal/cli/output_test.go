package cli

import (
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
