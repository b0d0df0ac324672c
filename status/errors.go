package status

import "errors"

// ErrInvalidConfig: a [Config] field holds a value that cannot work. The
// wrapping error names the field. Match it with errors.Is.
var ErrInvalidConfig = errors.New("status: invalid config")
