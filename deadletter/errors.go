package deadletter

import "errors"

// ErrNotFound: the dead-letter stream does not hold the entry (never did,
// or it was redriven or deleted meanwhile).
var ErrNotFound = errors.New("deadletter: no such dead letter")

// ErrSourceMismatch: the dead letter's dlq_stream names another stream than
// the one it is to be redriven to; it is left in place.
var ErrSourceMismatch = errors.New("deadletter: dead-lettered from another stream")

// ErrNoFields: the dead letter has no original fields, so there is nothing
// to append; it is left in place.
var ErrNoFields = errors.New("deadletter: no original fields")
