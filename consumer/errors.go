package consumer

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig wraps every configuration error of New.
	ErrInvalidConfig = errors.New("consumer: invalid config")
	// ErrPermanent marks a handler error that no retry can fix: the entry is
	// dead-lettered at once with reason handler_permanent. Wrap it with
	// [Permanent].
	ErrPermanent = errors.New("consumer: permanent failure")
	// ErrHandlerPanic is the error recorded for a handler that panicked.
	ErrHandlerPanic = errors.New("consumer: handler panicked")
)

// Permanent marks err as permanent: the consumer dead-letters the entry
// instead of retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
