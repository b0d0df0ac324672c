// Package failover holds the Redis failover test: a primary, a replica and
// three Sentinels (redis-server --sentinel) on loopback, the outbox relay
// publishing through a Sentinel client and two consumer groups applying
// with the PostgreSQL inbox. Mid-stream the primary is killed (SIGKILL);
// Sentinel promotes the replica; the old primary comes back empty and
// Sentinel makes it a replica of the new one. The test counts what was
// written, published, applied and how often: with the relay confirming
// each batch on the replica (RelayConfig.Replicas 1) nothing is lost and
// nothing takes effect twice; without it, it reports what was lost.
//
// The short run is part of the test suite. A larger one:
//
//	HEADWAY_FAILOVER_EVENTS=20000 HEADWAY_FAILOVER_RATE=2000 go test -run Failover -v ./internal/failover
//
// docs/reliability.md records its figures.
package failover
