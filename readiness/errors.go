package readiness

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these; match
// them with [errors.Is].
var (
	// ErrInvalidConfig: a Config field holds a value that cannot work (a
	// negative window, an empty name, …). The wrapping error names the field.
	ErrInvalidConfig = errors.New("readiness: invalid config")
	// ErrDuplicateCheck: a check with that name is already registered on the
	// [Probes]. heptiolabs/healthcheck would overwrite (or, with metrics,
	// panic); Probes refuses instead.
	ErrDuplicateCheck = errors.New("readiness: duplicate check name")
	// ErrNotReady is wrapped by the error a failing check returns, so a
	// caller of [Probes.Check] can tell a not-ready verdict apart.
	ErrNotReady = errors.New("readiness: not ready")
)
