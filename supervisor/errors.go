package supervisor

import "errors"

// Sentinel errors; errors returned by this package wrap one of these.
var (
	// ErrInvalidConfig: a Config or JobConfig field holds a value that
	// cannot work, or Add was given an empty name or a nil service.
	ErrInvalidConfig = errors.New("supervisor: invalid config")
	// ErrDuplicateName: a worker (service or job) with that name was
	// already added to the tree. Names key the per-worker state, the
	// metrics and the checks, so they must be unique.
	ErrDuplicateName = errors.New("supervisor: duplicate worker name")
	// ErrStopped: the tree is shutting down or has stopped; nothing can be
	// added any more.
	ErrStopped = errors.New("supervisor: tree stopped")
	// ErrAlreadyServed: Serve was called a second time. A tree serves
	// once; the error also wraps suture.ErrDoNotRestart so a parent
	// supervisor does not retry it.
	ErrAlreadyServed = errors.New("supervisor: tree already served")
	// ErrJobPanicked is recorded as the error of a job run that panicked
	// (the panic itself goes on to the supervisor, which restarts the
	// job's runner).
	ErrJobPanicked = errors.New("supervisor: job panicked")
)
