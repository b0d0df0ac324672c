// Package runbookcheck holds the test of the log lines that
// docs/operations.md quotes: each one must be a message that headway's
// code logs, and the attribute keys the runbook names beside it must be
// keys that call sets. It has no code of its own.
//
// # The convention
//
// The runbook quotes a log message as the words "log line" followed by the
// message in backquotes, and names its attributes after "with" or
// "carries" in the same sentence:
//
//	The log line `stream read failed`, with `error` and `consecutive`.
//
// An ellipsis (…) in a quoted message stands for any text, so a long
// message can be shortened: `outbox row parked: …`. Quoting a message any
// other way ("logs `…`", "logged `…`") fails the test, so that no quote
// escapes the check.
package runbookcheck
