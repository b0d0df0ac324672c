package outbox_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// proxiedPool returns a pool on db's schema whose connections go through
// a faultproxy in front of PostgreSQL.
func proxiedPool(t *testing.T, pool *pgxpool.Pool) (*pgxpool.Pool, *faultproxy.Proxy) {
	t.Helper()
	cfg := pool.Config().Copy()
	target := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(p.Port())
	cfg.ConnConfig.Fallbacks = nil
	proxied, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the proxy's Close, so it runs first: the relay has
	// stopped by then (runRelay's cleanup runs before both).
	t.Cleanup(proxied.Close)
	return proxied, p
}

// TestRelayStaysLiveWhilePostgresHangs: PostgreSQL stops answering (the
// network holds every byte) for several liveness windows. The relay keeps
// its heartbeat — its watermark is never wedged, so /live never fails —
// and shows the outage as not ready (failing or stalled). When PostgreSQL
// answers again the rows written meanwhile are published and the relay is
// ready again.
func TestRelayStaysLiveWhilePostgresHangs(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	pool, proxy := proxiedPool(t, db.Pool)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	const liveness = 1500 * time.Millisecond
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", LivenessWindow: liveness,
		StallWindow: time.Second, FailureBound: 3})
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.RelayConfig{Pool: pool, Client: rdb, Watermark: wm, OpTimeout: 300 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, InfoInterval: 50 * time.Millisecond, PruneInterval: 50 * time.Millisecond,
		Retry: backoff.Exponential{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, FailureLimit: 1_000_000})
	key := prefix + "events:{wallet}"
	writeEvents(t, db, w, "before", 5, 3)
	testkit.Eventually(t, 10*time.Second, "rows published before the freeze", func() bool { return len(streamEvents(t, rdb, key)) == 5 })

	proxy.Freeze()
	writeEvents(t, db, w, "during", 20, 3) // straight to PostgreSQL, not through the proxy
	frozenFor := 3 * liveness
	end := time.Now().Add(frozenFor)
	notReady := false
	for time.Now().Before(end) {
		st := wm.Status()
		if !st.State.Live() {
			proxy.Thaw()
			t.Fatalf("the relay's watermark is not live while PostgreSQL hangs: %s", st.Reason)
		}
		if st.State == readiness.StateFailing || st.State == readiness.StateStalled {
			notReady = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := wm.Status()
	if !notReady || st.Ready() {
		proxy.Thaw()
		t.Fatalf("after %v of a hung PostgreSQL the relay is %s (seen failing or stalled: %v); want not ready", frozenFor, st.Reason, notReady)
	}
	if n := len(streamEvents(t, rdb, key)); n != 5 {
		t.Fatalf("%d entries on the stream while PostgreSQL hung; want the 5 from before", n)
	}
	t.Logf("while frozen: %s", st.Reason)

	proxy.Thaw()
	testkit.Eventually(t, 20*time.Second, "the rows written during the freeze published", func() bool {
		return count(t, db, "published_at IS NULL") == 0 && len(streamEvents(t, rdb, key)) >= 25
	})
	testkit.Eventually(t, 10*time.Second, "the relay ready again", func() bool { return wm.Status().Ready() })
}

// TestRelayStaysLiveWhileRedisHangs: Redis stops answering (the server is
// paused) for several liveness windows while rows wait. The pipelined
// appends give up after OpTimeout, the rows are kept, the relay is live
// and not ready; once Redis answers, every row is published.
func TestRelayStaysLiveWhileRedisHangs(t *testing.T) {
	db := migrated(t)
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	const liveness = 1500 * time.Millisecond
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", LivenessWindow: liveness,
		StallWindow: time.Second, FailureBound: 3})
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, Watermark: wm, OpTimeout: 300 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, InfoInterval: 50 * time.Millisecond,
		Retry: backoff.Exponential{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, FailureLimit: 1_000_000})
	key := "events:{wallet}"
	writeEvents(t, db, w, "before", 5, 3)
	testkit.Eventually(t, 10*time.Second, "rows published before the pause", func() bool { return len(streamEvents(t, rdb, key)) == 5 })

	srv.Pause()
	writeEvents(t, db, w, "during", 20, 3)
	end := time.Now().Add(3 * liveness)
	notReady := false
	for time.Now().Before(end) {
		st := wm.Status()
		if !st.State.Live() {
			srv.Resume()
			t.Fatalf("the relay's watermark is not live while Redis hangs: %s", st.Reason)
		}
		notReady = notReady || !st.Ready()
		time.Sleep(5 * time.Millisecond)
	}
	st := wm.Status()
	srv.Resume()
	if !notReady || st.Ready() {
		t.Fatalf("while Redis hung the relay was %s (seen not ready: %v); want not ready", st.Reason, notReady)
	}
	t.Logf("while Redis hung: %s", st.Reason)
	testkit.Eventually(t, 20*time.Second, "the rows written during the pause published", func() bool {
		return count(t, db, "published_at IS NULL") == 0 && len(streamEvents(t, rdb, key)) >= 25
	})
	testkit.Eventually(t, 10*time.Second, "the relay ready again", func() bool { return wm.Status().Ready() })
}

// TestNewRelayRefusesWaitsLongerThanTheLivenessWindow: the longest stretch
// without a heartbeat is one call or one wait (OpTimeout + PollInterval,
// an idle relay waking at least every InfoInterval);
// a relay whose watermark would judge that wedged is refused at start, not
// restarted by Kubernetes in the first outage.
func TestNewRelayRefusesWaitsLongerThanTheLivenessWindow(t *testing.T) {
	db := pgtest.New(t)
	rdb, _ := redistest.Client(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", LivenessWindow: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, Watermark: wm}) // 10s + 1s
	if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "LivenessWindow") {
		t.Fatalf("NewRelay with OpTimeout 10s + PollInterval 1s against a 10s liveness window = %v, want ErrInvalidConfig", err)
	}
	if _, err := outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, Watermark: wm, OpTimeout: 3 * time.Second}); err != nil {
		t.Fatalf("NewRelay with 3s + 1s against 10s: %v", err)
	}
}
