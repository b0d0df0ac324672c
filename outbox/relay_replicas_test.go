package outbox_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// startReplica starts a redis-server replicating primary and waits until
// its link is up.
func startReplica(t *testing.T, primary *redistest.Server) *redistest.Server {
	t.Helper()
	host, port, _ := strings.Cut(primary.Addr, ":")
	r := redistest.StartServer(t, redistest.ServerOptions{Args: []string{"--replicaof", host, port}})
	c := r.Client()
	testkit.Eventually(t, 10*time.Second, "the replica's link to the primary up", func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	return r
}

// TestRelayConfirmsOnReplicas: with Replicas 1, a row is marked published
// only once the replica has its entry: at every moment, the replica holds
// at least as many entries as rows are marked published. With the replica
// frozen, batches are not confirmed: their rows stay unpublished (counted
// in replica_unconfirmed_total), the relay's watermark fails, and once the
// replica is back every row is published, the copies appended meanwhile
// included.
func TestRelayConfirmsOnReplicas(t *testing.T) {
	db := migrated(t)
	primary := redistest.StartServer(t, redistest.ServerOptions{})
	replica := startReplica(t, primary)
	rdb, rrep := primary.Client(), replica.Client()
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", FailureBound: 2})
	reg := prometheus.NewPedanticRegistry()
	rr := runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, BatchSize: 20, PollInterval: 20 * time.Millisecond,
		Replicas: 1, ReplicaTimeout: 200 * time.Millisecond, FailureLimit: 1000, Watermark: wm, Registerer: reg,
		Retry: backoff.Exponential{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond}})
	key := "events:{wallet}"

	// Confirmed: published rows are on the replica, sampled while they
	// are published.
	writeEvents(t, db, w, "a", 100, 3)
	for count(t, db, "published_at IS NULL") > 0 {
		published := count(t, db, "published_at IS NOT NULL")
		onReplica, err := rrep.XLen(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if onReplica < int64(published) {
			t.Fatalf("%d rows marked published, %d entries on the replica", published, onReplica)
		}
		time.Sleep(2 * time.Millisecond) // the sampling rate
	}

	// The replica frozen: nothing is confirmed, nothing is published.
	replica.Pause()
	writeEvents(t, db, w, "b", 10, 3)
	testkit.Eventually(t, 10*time.Second, "the batch unconfirmed, its rows kept and the relay failing", func() bool {
		return count(t, db, "published_at IS NULL AND attempts >= 2") == 10 &&
			metricValue(t, reg, "headway_outbox_replica_unconfirmed_total") >= 20 &&
			wm.Snapshot().ConsecutiveFailures >= 2 && !wm.Status().Ready()
	})
	if e := count(t, db, "last_error LIKE '%not confirmed by the replicas%'"); e != 10 {
		t.Errorf("%d rows carry the replicas' error, want 10", e)
	}
	replica.Resume()
	testkit.Eventually(t, 15*time.Second, "every row published once the replica confirms", func() bool {
		return count(t, db, "published_at IS NULL") == 0
	})
	ids := map[string]bool{}
	for _, e := range streamEvents(t, rdb, key) {
		ids[e.EventID] = true
	}
	for i := range 10 {
		if !ids["b-"+strconv.Itoa(i)] {
			t.Errorf("b-%d is not on the stream", i)
		}
	}
	testkit.Eventually(t, 5*time.Second, "the relay ready again", func() bool { return rr.r.Watermark().Status().Ready() })
}

// TestRelayWaitOutlastsTheReadTimeout: a ReplicaTimeout longer than the
// client's ReadTimeout neither cuts WAIT off early nor makes go-redis send
// the appends again: a batch the frozen replica does not confirm is on
// the primary once, its rows kept for their retry.
func TestRelayWaitOutlastsTheReadTimeout(t *testing.T) {
	db := migrated(t)
	primary := redistest.StartServer(t, redistest.ServerOptions{})
	replica := startReplica(t, primary)
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr, ReadTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	replica.Pause()
	t.Cleanup(replica.Resume)
	writeEvents(t, db, w, "c", 10, 3)
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 20 * time.Millisecond,
		Replicas: 1, ReplicaTimeout: 400 * time.Millisecond, FailureLimit: 1000,
		Retry: backoff.Exponential{Initial: time.Minute, Max: time.Minute}}) // one attempt within the test
	testkit.Eventually(t, 10*time.Second, "the batch tried once and kept", func() bool {
		return count(t, db, "attempts = 1 AND published_at IS NULL AND last_error LIKE '%within 400ms%'") == 10
	})
	if n, err := rdb.XLen(context.Background(), "events:{wallet}").Result(); err != nil || n != 10 {
		t.Errorf("%d entries on the primary (%v), want the 10 appended once", n, err)
	}
}

// metricValue returns the value of the one-series counter name in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRelayReplicasConfig: Replicas is refused with a cluster or ring client, a
// ReplicaTimeout under 1ms (WAIT 0 blocks for ever) or not below
// OpTimeout.
func TestRelayReplicasConfig(t *testing.T) {
	db := migrated(t)
	node := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	t.Cleanup(func() { _ = node.Close(); _ = cluster.Close(); _ = ring.Close() })
	for name, cfg := range map[string]outbox.RelayConfig{
		"cluster":           {Pool: db.Pool, Client: cluster, Replicas: 1},
		"ring":              {Pool: db.Pool, Client: ring, Replicas: 1},
		"timeout under 1ms": {Pool: db.Pool, Client: node, Replicas: 1, ReplicaTimeout: time.Microsecond},
		"timeout too long":  {Pool: db.Pool, Client: node, Replicas: 1, ReplicaTimeout: 10 * time.Second},
		"negative":          {Pool: db.Pool, Client: node, Replicas: -1},
	} {
		if err := cfg.Validate(); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := (outbox.RelayConfig{Pool: db.Pool, Client: cluster}).Validate(); err != nil {
		t.Errorf("a cluster client without Replicas: %v", err)
	}
	if err := (outbox.RelayConfig{Pool: db.Pool, Client: node, Replicas: 2}).Validate(); err != nil {
		t.Errorf("Replicas 2 with the default timeout: %v", err)
	}
}
