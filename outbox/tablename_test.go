package outbox_test

import (
	"strings"
	"testing"

	"github.com/headwaylabs/headway/outbox"
)

func TestValidTableName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		outbox.DefaultTable:     true,
		"_x":                    true,
		"a1":                    true,
		strings.Repeat("a", 41): true,
		strings.Repeat("a", 42): false,
		"":                      false,
		"1a":                    false,
		"Outbox":                false,
		"public.outbox":         false,
		"outbox; drop table x":  false,
		"outbox\n":              false,
		`"outbox"`:              false,
	} {
		if got := outbox.ValidTableName(name); got != want {
			t.Errorf("ValidTableName(%q) = %v, want %v", name, got, want)
		}
	}
}
