package brandguard

import (
	"fmt"
	"strings"
)

// EnvVar is the environment variable that selects the [Mode].
const EnvVar = "MULTI_BRAND_ENFORCEMENT"

// Mode says what happens when an event's envelope brand differs from the
// brand of the entity a handler applies it to.
type Mode uint8

const (
	// ModeEnforce rejects the event. It is the zero value and the default
	// when MULTI_BRAND_ENFORCEMENT is unset (docs/adr/ADR-009).
	ModeEnforce Mode = iota
	// ModeObserve logs and counts the mismatch and goes on with the
	// envelope brand.
	ModeObserve
)

// DefaultMode is the mode used when none is configured.
const DefaultMode = ModeEnforce

func (m Mode) String() string {
	switch m {
	case ModeEnforce:
		return "enforce"
	case ModeObserve:
		return "observe"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

func (m Mode) valid() bool { return m == ModeEnforce || m == ModeObserve }

// ParseMode reads "observe" or "enforce" (case and surrounding spaces do
// not matter). Any other text, including the empty string, returns an error
// wrapping [ErrInvalidMode]: a typo never falls back to a default.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enforce":
		return ModeEnforce, nil
	case "observe":
		return ModeObserve, nil
	}
	return 0, fmt.Errorf("%w %q: want observe or enforce", ErrInvalidMode, s)
}

// ModeFromEnv reads [EnvVar] through lookup (pass os.LookupEnv). Unset
// means [DefaultMode]; set to anything but observe or enforce — empty
// included — is an error wrapping [ErrInvalidMode], meant to stop the
// process at start-up.
func ModeFromEnv(lookup func(string) (string, bool)) (Mode, error) {
	v, ok := lookup(EnvVar)
	if !ok {
		return DefaultMode, nil
	}
	m, err := ParseMode(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", EnvVar, err)
	}
	return m, nil
}
