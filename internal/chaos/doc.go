// Package chaos holds headway's chaos run: real processes (a producer
// writing events through the outbox on PostgreSQL, relays, consumers
// applying them into PostgreSQL through the inbox) while the harness
// SIGKILLs consumers and relays at random, restarts Redis (a private
// server with AOF and appendfsync always) and terminates PostgreSQL
// backends. At the end every produced event must have been applied exactly
// once, and the dead-letter stream must hold exactly the bad entries the
// harness injected.
//
// The short run is part of the test suite (about a minute). A longer one:
//
//	HEADWAY_CHAOS_EVENTS=30000 HEADWAY_CHAOS_RATE=200 go test -run Chaos -v -timeout 30m ./internal/chaos
package chaos
