package outbox

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateAtRuneBoundary: error texts stored in the outbox are cut to
// maxStoredError bytes without splitting a UTF-8 sequence (PostgreSQL
// refuses one in a text column).
func TestTruncateAtRuneBoundary(t *testing.T) {
	s := "x" + strings.Repeat("é", maxStoredError) // é is 2 bytes: the limit falls inside one
	got := truncate(s, maxStoredError)
	if len(got) > maxStoredError || !utf8.ValidString(got) || len(got) < maxStoredError-1 {
		t.Fatalf("truncate: %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if short := "short"; truncate(short, maxStoredError) != short {
		t.Fatal("a short text changed")
	}
}
