// Package logkey holds the log attribute keys that more than one headway
// package writes, so that a fact has the same key in every record. The
// packages re-export them as their Attr constants (consumer.AttrStream,
// brandguard.AttrStream, supervisor.AttrError, …); a key that one package
// alone writes stays defined there.
package logkey

const (
	Stream      = "stream"      // stream key
	Consumer    = "consumer"    // consumer name in its group
	EventID     = "event_id"    // the envelope's event ID
	EventType   = "event_type"  // the envelope's event type
	Reason      = "reason"      // why an entry or row was set aside
	Error       = "error"       // error text
	Consecutive = "consecutive" // consecutive failures of a loop
)
