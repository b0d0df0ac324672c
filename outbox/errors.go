package outbox

import "errors"

var (
	// ErrInvalidConfig wraps configuration errors of NewWriter, NewRelay,
	// NewObserver and NewPostgresStore (each config's Validate).
	ErrInvalidConfig = errors.New("outbox: invalid config")
	// ErrNotEmitted: the event type is not listed as emitted on any stream
	// of the catalog (reserved, retired or unknown). A reserved type is
	// promoted by changing its catalog entry first.
	ErrNotEmitted = errors.New("outbox: event type not emitted by the catalog")
	// ErrInvalidEvent: the envelope would not encode (see event.Envelope.Validate).
	ErrInvalidEvent = errors.New("outbox: invalid event")
	// ErrEventTooLarge: the envelope encodes to a stream entry over the
	// codec's size limit (event.DefaultMaxEntryBytes), which the relay
	// could never append. An error that matches it also matches
	// ErrInvalidEvent and event.ErrEntryTooLarge.
	ErrEventTooLarge = errors.New("outbox: event too large for a stream entry")
	// ErrRelayFailing is returned by Relay.Serve after FailureLimit
	// consecutive failed cycles, so the supervisor restarts it (ADR-004).
	ErrRelayFailing = errors.New("outbox: relay keeps failing")
	// ErrReplicasUnconfirmed: fewer than RelayConfig.Replicas replicas
	// confirmed a batch's appends within ReplicaTimeout; its rows stay
	// unpublished and are appended again.
	ErrReplicasUnconfirmed = errors.New("outbox: appends not confirmed by the replicas")
)
