// Package healthtable holds the tests of docs/health.md, the health truth
// table: each row of the table is a scenario run against the real Redis
// and PostgreSQL, and the test fails when what /live, /ready, the reason,
// the status metric or the shipped alerts say differs from the row. It has
// no code of its own.
package healthtable
