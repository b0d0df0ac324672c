package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/retention"
	"github.com/headwaylabs/headway/service"
)

func TestOpenRedisFromTheEnvironment(t *testing.T) {
	t.Setenv(service.EnvRedisURL, "redis://127.0.0.1:6379/0")
	rdb, err := service.OpenRedis("")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rdb.Close() }()
	if !rdb.(*redis.Client).Options().ContextTimeoutEnabled {
		t.Error("ContextTimeoutEnabled is off: a hung Redis would ignore deadlines")
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Setenv(service.EnvRedisURL, "")
	if _, err := service.OpenRedis(""); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("no URL: %v, want ErrInvalidConfig", err)
	}
	_, err = service.OpenRedis("rediss://user:s3cret@host:notaport/0")
	if !errors.Is(err, service.ErrInvalidConfig) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: %v, want ErrInvalidConfig without the password", err)
	}
}

func TestOpenPostgresFromTheEnvironment(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv(service.EnvDatabaseURL, db.URL)
	pool, err := service.OpenPostgres(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Setenv(service.EnvDatabaseURL, "")
	if _, err := service.OpenPostgres(context.Background(), ""); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("no URL: %v, want ErrInvalidConfig", err)
	}
}

func TestGuardAndWriterFromTheService(t *testing.T) {
	s, err := service.New(service.Config{Name: "producer", Addr: "127.0.0.1:0", Registry: prometheus.NewPedanticRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	t.Setenv(brandguard.EnvVar, "observe")
	g, err := s.Guard(platform.Catalog())
	if err != nil || g.Mode() != brandguard.ModeObserve {
		t.Fatalf("Guard with MULTI_BRAND_ENFORCEMENT=observe: %v, %v", g, err)
	}
	t.Setenv(brandguard.EnvVar, "lenient")
	if _, err := s.Guard(platform.Catalog()); !errors.Is(err, brandguard.ErrInvalidMode) {
		t.Errorf("an invalid mode: %v, want ErrInvalidMode", err)
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), Registerer: s.Registerer()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddWriter(w); err != nil {
		t.Fatal(err)
	}
	// Before Run the tree is pending, so /ready is 503; the writer's check
	// is there, and passes.
	rec := httptestGet(t, s.Handler(), "/ready?full=1")
	var checks map[string]string
	if err := json.Unmarshal([]byte(rec.body), &checks); err != nil || checks[service.WriterCheck] != "OK" {
		t.Errorf("/ready = %d %s (%v), want the writer's check OK", rec.code, rec.body, err)
	}
}

type recorded struct {
	code int
	body string
}

func httptestGet(t *testing.T, h http.Handler, path string) recorded {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return recorded{rec.Code, rec.Body.String()}
}

// quietService is a service on a free port that logs nowhere.
func quietService(t *testing.T, cfg service.Config) *service.Service {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test-service"
	}
	cfg.Addr, cfg.DrainDelay = "127.0.0.1:0", -1
	cfg.Registry = prometheus.NewPedanticRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// promotionConfig is a consumer config with no Client, Guard, Registerer
// or Logger: AddConsumer fills them in.
func promotionConfig(stream string, h consumer.Handler) consumer.Config {
	return consumer.Config{Catalog: platform.Catalog(), Stream: stream, CatalogStream: platform.StreamWallet,
		Group: platform.ServicePromotion, Block: 50 * time.Millisecond,
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h}}
}

// TestAddConsumerFillsTheServicesPieces: a consumer added from a config
// with no connection reads through the service's Redis ($REDIS_URL),
// applies, is judged by /ready under its loop check, runs brandguard in
// MULTI_BRAND_ENFORCEMENT's mode (observe here: a brand mismatch is
// applied, not dead-lettered), and the service closes the client it
// opened when Run returns.
func TestAddConsumerFillsTheServicesPieces(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := prefix + event.StreamKey(platform.StreamWallet)
	t.Setenv(service.EnvRedisURL, "redis://"+rdb.Options().Addr+"/0")
	t.Setenv("MULTI_BRAND_ENFORCEMENT", "observe")
	s := quietService(t, service.Config{})
	var applied atomic.Int32
	h := func(ctx context.Context, m *consumer.Message) error {
		if _, err := m.CheckTarget(ctx, 9); err != nil { // the bet's brand, not the envelope's 3
			return err
		}
		applied.Add(1)
		return nil
	}
	if err := s.AddConsumer("promotion", promotionConfig(stream, h)); err != nil {
		t.Fatal(err)
	}
	shared, err := s.Redis()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Redis(); again != shared || !shared.(*redis.Client).Options().ContextTimeoutEnabled {
		t.Fatalf("Redis() opened twice, or without ContextTimeoutEnabled")
	}
	stop, r := run(t, s)
	publish(t, rdb, stream, "e1", "bet-1")
	testkit.Eventually(t, 10*time.Second, "e1 applied in observe mode, /ready 200", func() bool {
		code, _ := get(t, "http://"+s.Addr()+"/ready")
		return applied.Load() == 1 && code == http.StatusOK
	})
	_, body := get(t, "http://"+s.Addr()+"/ready?full=1")
	if loop := "loop/" + platform.ServicePromotion + "@" + stream; !strings.Contains(body, `"`+loop+`": "OK"`) {
		t.Errorf("/ready?full=1 has no %s OK: %s", loop, body)
	}
	stop()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if err := shared.Ping(context.Background()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("the service's Redis client after Run: ping = %v, want closed", err)
	}
}

// TestAddConsumerRefusesAnUndersizedPool: the Redis pool is checked
// against the consumers it serves; a worker refused for another reason
// gives its connections back.
func TestAddConsumerRefusesAnUndersizedPool(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	t.Setenv(service.EnvRedisURL, "redis://"+rdb.Options().Addr+"/0")
	s := quietService(t, service.Config{RedisPoolSize: 2*service.ConnsPerConsumer + service.ConnsPerRelay - 1})
	defer func() { _ = s.Close() }()
	nop := func(context.Context, *consumer.Message) error { return nil }
	bad := promotionConfig(prefix+"s0", nop)
	bad.Group = "" // refused by consumer.New, after the pool was checked
	if err := s.AddConsumer("bad", bad); err == nil {
		t.Fatal("a consumer without a group was added")
	}
	for i := range 2 {
		if err := s.AddConsumer(fmt.Sprint("c", i), promotionConfig(fmt.Sprint(prefix, "s", i), nop)); err != nil {
			t.Fatalf("consumer %d within the pool: %v", i, err)
		}
	}
	err := s.AddRelay(context.Background(), "relay", outbox.RelayConfig{}) // refused before it needs PostgreSQL
	if !errors.Is(err, service.ErrInvalidConfig) || !strings.Contains(err.Error(), "RedisPoolSize") {
		t.Errorf("a relay past the pool: %v, want ErrInvalidConfig naming RedisPoolSize", err)
	}
}

// TestAddRelayUsesTheServicesPostgres: a relay added with no store and no
// pool relays the default outbox table of $DATABASE_URL to $REDIS_URL.
func TestAddRelayUsesTheServicesPostgres(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	db := pgtest.New(t)
	t.Setenv(service.EnvRedisURL, "redis://"+rdb.Options().Addr+"/0")
	t.Setenv(service.EnvDatabaseURL, db.URL)
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err == nil {
		err = store.Migrate(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	s := quietService(t, service.Config{})
	if err := s.AddRelay(context.Background(), "relay", outbox.RelayConfig{PollInterval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		return w.Write(context.Background(), tx, 3, event.Envelope{EventType: platform.BetSettledConfirmed, BrandID: 3,
			AggregateID: "bet-1", OccurredAt: time.Now(), Payload: []byte(`{}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	key := prefix + event.StreamKey(platform.StreamWallet)
	testkit.Eventually(t, 10*time.Second, "the row appended to "+key, func() bool {
		n, _ := rdb.XLen(context.Background(), key).Result()
		return n == 1
	})
	_, body := get(t, "http://"+s.Addr()+"/ready?full=1")
	if !strings.Contains(body, `"loop/relay/headway_outbox": "OK"`) {
		t.Errorf("/ready?full=1 has no relay loop OK: %s", body)
	}
}

// TestServiceConnectionEdges: the URL's pool_size wins over the default
// (and is what the workers are checked against); a worker given the
// service's own client by hand is counted too; after Close the service
// opens nothing more; a Run whose HTTP server cannot serve returns the
// server's error rather than nil.
func TestServiceConnectionEdges(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	t.Setenv(service.EnvRedisURL, "redis://"+rdb.Options().Addr+"/0?pool_size=6")
	s := quietService(t, service.Config{})
	shared, err := s.Redis()
	if err != nil {
		t.Fatal(err)
	}
	if n := shared.(*redis.Client).Options().PoolSize; n != 6 {
		t.Fatalf("pool %d, want the URL's 6", n)
	}
	nop := func(context.Context, *consumer.Message) error { return nil }
	byHand := promotionConfig(prefix+"s1", nop)
	byHand.Client = shared
	if err := s.AddConsumer("c1", byHand); err != nil {
		t.Fatal(err)
	}
	if err := s.AddConsumer("c2", promotionConfig(prefix+"s2", nop)); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("a second consumer on a pool of 6: %v, want refused (the first, given the client by hand, counts)", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redis(); err == nil {
		t.Error("Redis() opened a client after Close")
	}
	if _, err := s.Postgres(context.Background()); err == nil {
		t.Error("Postgres() opened a pool after Close")
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }() // its listener is closed: the server cannot serve
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "HTTP server") {
			t.Errorf("Run = %v, want the HTTP server's failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return when its HTTP server failed")
	}
}

// TestAddRetentionSchedulesAJobPerStream: AddRetention on the service's
// Redis schedules one job per stream, each with its readiness check and
// the service's metrics, trims on schedule, and counts one connection of
// the pool per stream (a keeper past the pool is refused, and gives its
// connections back when its config is refused).
func TestAddRetentionSchedulesAJobPerStream(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	t.Setenv(service.EnvRedisURL, "redis://"+rdb.Options().Addr+"/0")
	reg := prometheus.NewPedanticRegistry()
	s, err := service.New(service.Config{Name: "retention", Addr: "127.0.0.1:0", DrainDelay: -1, Registry: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RedisPoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	stream, dlq := prefix+"events:{wallet}", prefix+"events:{wallet}:dlq"
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"i", i}})
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 3, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		rdb.XAck(ctx, stream, "g", m.ID)
	}

	if _, err := s.AddRetention(retention.KeeperConfig{Streams: []retention.Stream{{Key: stream, Policy: retention.Policy{MinCount: -1}}}}); err == nil {
		t.Fatal("a negative MinCount was accepted")
	}
	k, err := s.AddRetention(retention.KeeperConfig{Interval: 50 * time.Millisecond, Streams: []retention.Stream{
		{Key: stream}, {Key: dlq, Policy: retention.Policy{DeadLetter: true, MinAge: time.Hour}},
	}})
	if err != nil {
		t.Fatalf("two streams within a pool of 3 (the refused keeper gave its connection back): %v", err)
	}
	_, err = s.AddRetention(retention.KeeperConfig{Streams: []retention.Stream{{Key: prefix + "a"}, {Key: prefix + "b"}}})
	if !errors.Is(err, service.ErrInvalidConfig) || !strings.Contains(err.Error(), "RedisPoolSize") {
		t.Errorf("two more streams past the pool: %v, want ErrInvalidConfig naming RedisPoolSize", err)
	}
	run(t, s)
	testkit.Eventually(t, 10*time.Second, "the 3 acknowledged entries trimmed and both jobs ready", func() bool {
		r := httptestGet(t, s.Handler(), "/ready?full=1")
		return r.code == http.StatusOK && strings.Contains(r.body, `"job/`+retention.JobName(stream)+`": "OK"`) &&
			strings.Contains(r.body, `"job/`+retention.JobName(dlq)+`": "OK"`) && k.Status()[0].Result.Length == 2
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	trimmed := -1.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "headway_retention_trimmed_entries_total" && m.GetLabel()[0].GetValue() == stream {
				trimmed = m.GetCounter().GetValue()
			}
		}
	}
	if trimmed != 3 {
		t.Errorf("trimmed_entries_total{stream} = %v in the service's registry, want 3", trimmed)
	}
}

// TestOpenRedisForms: REDIS_URL in its three forms gives a client of each
// kind, with ContextTimeoutEnabled, the pool the service asks for, and
// working commands: one node, Sentinel (master_name; follows the primary
// the Sentinels name) and Cluster (redis+cluster://). A bad URL of each
// form is ErrInvalidConfig and never repeats the password.
func TestOpenRedisForms(t *testing.T) {
	ctx := context.Background()
	primary := redistest.StartServer(t, redistest.ServerOptions{})
	sentinels := redistest.StartSentinels(t, "events", primary.Addr, 3)
	cluster := redistest.StartCluster(t)

	sc, err := service.OpenRedis(redistest.SentinelURL("events", sentinels) + "&pool_size=7")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Close() }()
	if o := sc.(*redis.Client).Options(); !o.ContextTimeoutEnabled || o.PoolSize != 7 {
		t.Errorf("Sentinel client: ContextTimeoutEnabled %v, pool %d; want true, 7", o.ContextTimeoutEnabled, o.PoolSize)
	}
	if err := sc.Set(ctx, "through-sentinel", "1", 0).Err(); err != nil {
		t.Fatalf("Sentinel client: %v", err)
	}
	if v, err := primary.Client().Get(ctx, "through-sentinel").Result(); err != nil || v != "1" {
		t.Errorf("the primary has %q, %v: the Sentinel client did not write to it", v, err)
	}

	cc, err := service.OpenRedis(cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	c, ok := cc.(*redis.ClusterClient)
	if !ok || !c.Options().ContextTimeoutEnabled || len(c.Options().Addrs) != 3 {
		t.Fatalf("cluster URL: %T %+v, want a cluster client of the three seeds with ContextTimeoutEnabled", cc, c.Options())
	}
	for i := range 20 { // keys in every node's slots
		if err := cc.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatalf("cluster client: %v", err)
		}
	}

	for _, bad := range []string{
		"redis+cluster://user:s3cret@host:notaport",
		"redis://user:s3cret@host:26379/0?master_name=events&no_such_option=1",
		"redis://user:s3cret@host:26379/0?master_name=events&route_randomly=true",
		"rediss://user:s3cret@host:notaport/0",
		"redis://:s3c/ret@host:6379/0", // an unencoded / in the password
		"redis+cluster://:s3c#ret@host:6379",
	} {
		if _, err := service.OpenRedis(bad); !errors.Is(err, service.ErrInvalidConfig) || strings.Contains(err.Error(), "s3c") {
			t.Errorf("%q: %v, want ErrInvalidConfig without the password", strings.ReplaceAll(bad, "s3cret", "…"), err)
		}
	}
}
