package event

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceValidJSON is what validJSON must agree with.
func referenceValidJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

var jsonCases = []string{
	``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a":1,}`, `{,}`, `[1,]`, `[,1]`, `[1 2]`, `{"a" 1}`, `{"a":}`,
	`{a:1}`, `{"a":1 "b":2}`, `{"a":[1,{"b":null}],"c":"d"}`, `[[[]]]`, `[[[]]`, `]`, `}`, `{]`, `[}`,
	`0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `2.`, `00`, `-01`, `1.0e`,
	`true`, `false`, `null`, `tru`, `nul`, `falsey`, `truefalse`, `True`, `NULL`, `true false`,
	`""`, `"a"`, `"\"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\x"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u12"`, `"\ud800"`,
	"\"\x00\"", "\"\x1f\"", "\"\x7f\"", "\"é\"", "\"\xff\"", "\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\"", "\"\xe2\x82\"",
	"é", "[\"a\"]\xff", "\t\n\r 1 \t\n\r", "\v1", "1\x00", `"unterminated`, `{"a":1}}`, `[1]]`, `{"a":{"b":{}}}`,
	`{"amount":"12.50","bet_id":12345,"currency":"EUR"}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10000) + "{}" + strings.Repeat("}", 10000),
	strings.Repeat("[", 9999) + "{}" + strings.Repeat("]", 9999),
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range jsonCases {
		if got, want := validJSON([]byte(c)), referenceValidJSON([]byte(c)); got != want {
			t.Errorf("validJSON(%.40q) = %v, want %v", c, got, want)
		}
	}
}

// FuzzValidJSON: validJSON agrees with utf8.Valid && json.Valid on every
// input.
func FuzzValidJSON(f *testing.F) {
	for _, c := range jsonCases {
		if len(c) < 200 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), referenceValidJSON(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json and utf8 say %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	payload := []byte(`{"amount":"12.50","bet_id":12345,"currency":"EUR","note":"caf\u00e9 é"}`)
	b.Run("validJSON", func(b *testing.B) {
		for b.Loop() {
			validJSON(payload)
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			referenceValidJSON(payload)
		}
	})
}
