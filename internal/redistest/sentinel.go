package redistest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartSentinels starts n Sentinels (redis-server --sentinel) on loopback
// ports of their own, monitoring the primary at addr as master, with a
// quorum of a majority, judging it down after a second, and stops them
// when the test ends. A Sentinel's log is shown when the test fails.
func StartSentinels(t testing.TB, master, primary string, n int) []*Server {
	t.Helper()
	host, port, _ := strings.Cut(primary, ":")
	var out []*Server
	for range n {
		s := &Server{t: t, port: freePort(t), dir: t.TempDir()}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		conf := filepath.Join(s.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 3000\nsentinel parallel-syncs %s 1\n",
			s.port, s.dir, filepath.Join(s.dir, "redis.log"), master, host, port, n/2+1, master, master, master)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s.args = []string{conf, "--sentinel"}
		s.start("redis-server")
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("sentinel %s, last log lines:\n%s", s.Addr, strings.Join(lines[max(0, len(lines)-15):], "\n"))
			}
			s.Stop()
		})
		out = append(out, s)
	}
	return out
}

// SentinelURL is the REDIS_URL of the Sentinel form (service.OpenRedis)
// for master through sentinels.
func SentinelURL(master string, sentinels []*Server) string {
	q := url.Values{"master_name": {master}}
	for _, s := range sentinels[1:] {
		q.Add("addr", s.Addr)
	}
	return "redis://" + sentinels[0].Addr + "/0?" + q.Encode()
}

// Agreed reports whether every Sentinel names addr as master's primary.
func Agreed(ctx context.Context, sentinels []*Server, master, addr string) bool {
	for _, s := range sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		a, err := c.GetMasterAddrByName(ctx, master).Result()
		_ = c.Close()
		if err != nil || len(a) != 2 || net.JoinHostPort(a[0], a[1]) != addr {
			return false
		}
	}
	return true
}

// AwaitReplica waits until the server at addr is a replica whose link to
// its primary is up.
func AwaitReplica(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(within)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s is not a replica in sync after %v", addr, within)
		}
		time.Sleep(20 * time.Millisecond) // polling the replication state
	}
}
