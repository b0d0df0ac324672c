package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// quiet drops go-redis's own log lines, as cmd/headway does.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// redisURL is the URL of the test server, from the address redistest uses.
func redisURL() string {
	addr := os.Getenv(redistest.AddrEnv)
	if addr == "" {
		addr = redistest.DefaultAddr
	}
	return "redis://" + addr + "/0"
}

func testEnv(k string) string {
	if k == EnvRedisURL {
		return redisURL()
	}
	return ""
}

// result is one in-process run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command line in process with the test server as REDIS_URL.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runApp(t, context.Background(), &app{now: time.Now}, args...)
}

// runApp runs a prepared app (a clock or hook of the test's) in process.
func runApp(t *testing.T, ctx context.Context, a *app, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a.stdout, a.stderr, a.env = &out, &errb, testEnv
	code := a.run(ctx, args)
	if testing.Verbose() {
		t.Logf("headway %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errb.String())
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustRun runs the command line and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := run(t, args...)
	if r.code != ExitOK {
		t.Fatalf("headway %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

// walletKeys returns the wallet stream's keys under prefix.
func walletKeys(prefix string) (stream, dlq string) {
	return prefix + event.StreamKey(platform.StreamWallet), prefix + event.DeadLetterKey(platform.StreamWallet)
}

func envelope(id string, typ event.Type) event.Envelope {
	return event.Envelope{EventID: id, EventType: typ, SchemaVersion: 2, BrandID: 3,
		OccurredAt: time.Date(2026, 5, 15, 10, 20, 30, 0, time.UTC), AggregateID: "bet-" + id,
		Payload: []byte(`{"amount":"12.50","id":"` + id + `"}`)}
}

// deadLetterRaw appends a dead letter as the consumer writes it: the
// original fields plus the dlq_* fields. It returns the dead letter's ID.
func deadLetterRaw(t testing.TB, rdb redis.UniversalClient, prefix string, original map[string]any, reason string, deliveries int) string {
	t.Helper()
	stream, dlq := walletKeys(prefix)
	values := make([]any, 0, 2*len(original)+16)
	for k, v := range original {
		values = append(values, k, v)
	}
	values = append(values,
		deadletter.FieldReason, reason,
		deadletter.FieldError, "handler: ledger row missing",
		deadletter.FieldStream, stream,
		deadletter.FieldGroup, platform.ServiceRolling,
		deadletter.FieldConsumer, "pod-a",
		deadletter.FieldID, "1747300000000-"+strconv.Itoa(deliveries),
		deadletter.FieldDeliveries, strconv.Itoa(deliveries),
		deadletter.FieldAt, "2026-05-15T10:20:31Z",
	)
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: dlq, Values: values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fieldsOf returns the wire fields of e as a map.
func fieldsOf(t testing.TB, e event.Envelope) map[string]any {
	t.Helper()
	list, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]any, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		m[list[i].(string)] = list[i+1]
	}
	return m
}

// deadLetter appends a dead letter of a valid event.
func deadLetter(t testing.TB, rdb redis.UniversalClient, prefix string, e event.Envelope, reason string) string {
	t.Helper()
	return deadLetterRaw(t, rdb, prefix, fieldsOf(t, e), reason, 5)
}

// legacyFields are the fields of a schema_version 1 event (no brand).
func legacyFields(id string) map[string]any {
	return map[string]any{
		event.FieldEventID: id, event.FieldEventType: string(platform.BetSettledConfirmed),
		event.FieldSchemaVersion: "1", event.FieldOccurredAt: "2026-05-15T10:20:30Z",
		event.FieldAggregateID: "bet-" + id, event.FieldPayload: `{}`,
	}
}

// eventIDs counts the entries of key by event_id.
func eventIDs(t testing.TB, rdb redis.UniversalClient, key string) map[string]int {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		id, _ := m.Values[event.FieldEventID].(string)
		out[id]++
	}
	return out
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
