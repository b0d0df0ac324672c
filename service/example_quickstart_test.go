package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/service"
)

// Example_promotionConsumer is the README's first code block — a whole
// promotion consumer with a PostgreSQL inbox, in enforce mode, serving
// /live, /ready, /metrics and /status — run against the real Redis (its
// database 9, so the platform's stream key meets no other test) and
// PostgreSQL (a schema of its own). A second goroutine plays the world
// around it: it waits for /ready, settles and rolls back a bet, reads the
// four endpoints, then sends SIGTERM, as Kubernetes does, and watches
// /ready fail before the service stops.
func Example_promotionConsumer() {
	env, err := quickStartEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.restore()
	defer env.catchSIGTERM()() // the SIGTERM below is Run's, never the test binary's death
	seen := make(chan []string, 1)
	go func() { seen <- env.drive() }()

	// README:begin
	svc, err := service.New(service.Config{Name: "promotion-service"}) // /live /ready /metrics /status on $LISTEN_ADDR or :8080
	check(err)
	db, err := svc.Postgres(context.Background()) // $DATABASE_URL
	check(err)
	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db}) // the transactional inbox: table headway_inbox
	check(err)
	check(inbox.Migrate(context.Background()))
	apply := func(ctx context.Context, m *consumer.Message) error { // runs in the inbox's transaction: its effect commits once
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, `INSERT INTO promotion_ledger (event_id, kind, bet_id, brand_id) VALUES ($1, $2, $3, $4)`,
			m.Envelope.EventID, m.Envelope.EventType, m.Envelope.AggregateID, m.Envelope.BrandID)
		return err
	}
	check(svc.AddConsumer("promotion", consumer.Config{Catalog: platform.Catalog(), Dedup: inbox, // Redis: $REDIS_URL; brands: MULTI_BRAND_ENFORCEMENT, default enforce
		Stream: event.StreamKey(platform.StreamWallet), Group: platform.ServicePromotion,
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: apply, platform.BetRolledBackConfirmed: apply}}))
	check(svc.Run(context.Background())) // until SIGTERM: /ready fails first, then the consumer drains
	// README:end

	for _, line := range <-seen {
		fmt.Println(line)
	}
	// Output:
	// /ready 200: loop/promotion_service@events:{wallet} OK, service/promotion OK
	// ledger: BET_ROLLED_BACK_CONFIRMED bet-1, BET_SETTLED_CONFIRMED bet-1
	// /live 200
	// /metrics: headway_loop_ready{loop="promotion_service@events:{wallet}"} 1
	// /status 200, shows promotion_service@events:{wallet}
	// after SIGTERM: /ready 503 while the consumer still runs
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// quickStart is the environment of Example_promotionConsumer.
type quickStart struct {
	addr   string        // the service's listen address
	rdb    *redis.Client // database 9 of the test Redis
	admin  *pgx.Conn
	schema string
	dbURL  string
	env    map[string]*string // the variables set, with their old values
	killed bool               // SIGTERM sent
}

// quickStartEnv points the example's service at a free address, database
// 9 of the test Redis and a fresh PostgreSQL schema holding the service's
// own table, through the environment variables the service reads.
func quickStartEnv() (*quickStart, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	q := &quickStart{addr: l.Addr().String(), env: map[string]*string{}}
	_ = l.Close()
	redisAddr := os.Getenv(redistest.AddrEnv)
	if redisAddr == "" {
		redisAddr = redistest.DefaultAddr
	}
	q.rdb = redis.NewClient(&redis.Options{Addr: redisAddr, DB: 9})
	pgURL := os.Getenv(pgtest.URLEnv)
	if pgURL == "" {
		pgURL = pgtest.DefaultURL
	}
	ctx := context.Background()
	if q.admin, err = pgx.Connect(ctx, pgURL); err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	q.schema = "quickstart_" + hex.EncodeToString(b[:])
	if _, err := q.admin.Exec(ctx, "CREATE SCHEMA "+q.schema+"; CREATE TABLE "+q.schema+
		".promotion_ledger (event_id text PRIMARY KEY, kind text NOT NULL, bet_id text NOT NULL, brand_id bigint NOT NULL); CREATE TABLE "+
		q.schema+".wallet_bets (id text PRIMARY KEY, brand_id bigint NOT NULL, status text NOT NULL); INSERT INTO "+
		q.schema+".wallet_bets VALUES ('bet-1', 3, 'open')"); err != nil {
		return nil, err
	}
	sep := "?"
	if strings.Contains(pgURL, "?") {
		sep = "&"
	}
	q.clean()
	q.setenv(service.EnvListenAddr, q.addr)
	q.setenv(service.EnvRedisURL, "redis://"+redisAddr+"/9")
	q.dbURL = pgURL + sep + "search_path=" + q.schema
	q.setenv(service.EnvDatabaseURL, q.dbURL)
	q.setenv("MULTI_BRAND_ENFORCEMENT", "enforce")
	return q, nil
}

func (q *quickStart) setenv(k, v string) {
	if old, ok := os.LookupEnv(k); ok {
		q.env[k] = &old
	} else {
		q.env[k] = nil
	}
	_ = os.Setenv(k, v)
}

func (q *quickStart) databaseURL() string { return q.dbURL }

// get sends GET path to the service and returns the status and body.
func (q *quickStart) get(path string) (int, string) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + q.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// until polls cond every 20ms until it holds (true) or within passes
// (false).
func until(within time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// ready waits up to 20s for /ready to answer 200 and returns its checks.
func (q *quickStart) ready() (map[string]string, bool) {
	if !until(20*time.Second, func() bool { code, _ := q.get("/ready"); return code == http.StatusOK }) {
		return nil, false
	}
	var checks map[string]string
	_, body := q.get("/ready?full=1")
	_ = json.Unmarshal([]byte(body), &checks)
	return checks, true
}

// sigterm sends the process SIGTERM, once: the service's Run turns it
// into a shutdown, and once Run has returned a second one would kill the
// test binary.
func (q *quickStart) sigterm() {
	if !q.killed {
		q.killed = true
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}

// catchSIGTERM registers a channel for SIGTERM until the returned stop is
// called, so that the signal the example sends itself is never fatal,
// even when Run is not listening (it returned early, or has returned):
// Go delivers a signal to every channel registered for it.
func (q *quickStart) catchSIGTERM() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	return func() { signal.Stop(c) }
}

// clean deletes the stream and its dead letters from database 9.
func (q *quickStart) clean() {
	key := event.StreamKey(platform.StreamWallet)
	q.rdb.Del(context.Background(), key, event.DeadLetterKey(platform.StreamWallet))
}

func (q *quickStart) restore() {
	for k, v := range q.env {
		if v == nil {
			_ = os.Unsetenv(k)
		} else {
			_ = os.Setenv(k, *v)
		}
	}
	q.clean()
	_ = q.rdb.Close()
	_, _ = q.admin.Exec(context.Background(), "DROP SCHEMA "+q.schema+" CASCADE")
	_ = q.admin.Close(context.Background())
}

// drive waits for the service, sends it a bet settled and rolled back,
// reads its endpoints, sends SIGTERM and watches /ready fail. It returns
// what it saw, or where it gave up; it sends SIGTERM once in every case,
// so the example never hangs.
func (q *quickStart) drive() (seen []string) {
	ctx := context.Background()
	defer q.sigterm()
	checks, ok := q.ready()
	if !ok {
		return []string{"gave up waiting for /ready 200"}
	}
	loop := platform.ServicePromotion + "@" + event.StreamKey(platform.StreamWallet)
	seen = append(seen, fmt.Sprintf("/ready 200: loop/%s %s, service/promotion %s", loop, checks["loop/"+loop], checks["service/promotion"]))

	for i, typ := range []event.Type{platform.BetSettledConfirmed, platform.BetRolledBackConfirmed} {
		fields, _ := event.Encode(event.Envelope{EventID: fmt.Sprintf("ev-%d", i), EventType: typ, SchemaVersion: event.CurrentSchemaVersion,
			BrandID: 3, OccurredAt: time.Now(), AggregateID: "bet-1", Payload: []byte(`{}`)})
		q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: event.StreamKey(platform.StreamWallet), Values: fields})
	}
	var ledger []string
	if !until(20*time.Second, func() bool {
		rows, _ := q.admin.Query(ctx, "SELECT kind || ' ' || bet_id FROM "+q.schema+".promotion_ledger ORDER BY kind")
		ledger, _ = pgx.CollectRows(rows, pgx.RowTo[string])
		return len(ledger) == 2
	}) {
		return append(seen, fmt.Sprintf("gave up waiting for the ledger: %v", ledger))
	}
	seen = append(seen, "ledger: "+strings.Join(ledger, ", "))
	code, _ := q.get("/live")
	seen = append(seen, fmt.Sprintf("/live %d", code))
	_, metrics := q.get("/metrics")
	for line := range strings.SplitSeq(metrics, "\n") {
		if strings.HasPrefix(line, `headway_loop_ready{loop="`+loop+`"}`) {
			seen = append(seen, "/metrics: "+line)
		}
	}
	code, page := q.get("/status")
	seen = append(seen, fmt.Sprintf("/status %d, shows %s", code, map[bool]string{true: loop, false: "no promotion loop"}[strings.Contains(page, loop)]))

	q.sigterm()
	if !until(5*time.Second, func() bool { code, _ := q.get("/ready"); return code == http.StatusServiceUnavailable }) {
		return append(seen, "after SIGTERM: /ready never failed")
	}
	_, body := q.get("/ready?full=1")
	checks = nil
	if err := json.Unmarshal([]byte(body), &checks); err != nil {
		return append(seen, "after SIGTERM: /ready?full=1: "+body)
	}
	if checks["loop/"+loop] == "OK" && checks[service.ShutdownCheck] != "OK" {
		return append(seen, "after SIGTERM: /ready 503 while the consumer still runs")
	}
	return append(seen, "after SIGTERM: "+body)
}

// TestReadmeBlocksAreTheExamples keeps the README's first two code blocks
// and Example_promotionConsumer and Example_producer the same programs:
// each block's main is its example's README region, and the block's other
// declarations are in the example's file.
func TestReadmeBlocksAreTheExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```")
	for i, file := range []string{"example_quickstart_test.go", "example_producer_test.go"} {
		if 2*i+1 >= len(blocks) || !strings.HasPrefix(blocks[2*i+1], "go\n") {
			t.Fatalf("the README's code block %d is not Go", i+1)
		}
		block := strings.TrimPrefix(blocks[2*i+1], "go\n")
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		region := string(src)
		region = region[strings.Index(region, "// README:begin\n")+len("// README:begin\n") : strings.Index(region, "\t// README:end")]
		mainStart := strings.Index(block, "func main() {\n")
		if mainStart < 0 {
			t.Fatalf("the README's code block %d has no func main", i+1)
		}
		mainEnd := mainStart + strings.Index(block[mainStart:], "\n}\n")
		if got := block[mainStart+len("func main() {\n") : mainEnd+1]; got != region {
			t.Errorf("README block %d's main differs from %s's README region:\n--- README\n%s--- example\n%s", i+1, file, got, region)
		}
		for decl := range strings.SplitSeq(strings.TrimSpace(block[mainEnd+3:]), "\n\n") {
			if !strings.Contains(string(src), decl) {
				t.Errorf("a declaration of README block %d is not in %s:\n%s", i+1, file, decl)
			}
		}
		if i == 0 {
			if lines := strings.Count(block[mainStart:], "\n"); lines > 25 {
				t.Errorf("the README consumer is %d lines beside its package clause and imports; the README promises at most 25", lines)
			}
		}
	}
}
