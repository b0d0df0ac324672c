package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster of three masters on loopback ports,
// built from redis-server --cluster-enabled yes and redis-cli --cluster
// create. It is stopped when the test ends.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts a three-node cluster (no replicas) and waits until
// every node reports cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not in PATH: %v", err)
	}
	c := &Cluster{t: t}
	addrs := make([]string, 3)
	for i := range 3 {
		// The cluster bus port defaults to port+10000, which overflows for
		// high ephemeral ports: give it a free port of its own.
		bus := freePort(t)
		s := StartServer(t, ServerOptions{Args: []string{
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
		}})
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Nodes {
		n := redis.NewClient(&redis.Options{Addr: s.Addr})
		for {
			info, err := n.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = n.Close()
				t.Fatalf("redistest: cluster node %s not ok: %v %s", s.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = n.Close()
	}
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Client returns a cluster client, closed when the test ends. It waits
// until the client can route a command to every slot's owner.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		c.t.Fatalf("redistest: cluster client: %v", err)
	}
	return cc
}

// URL returns the REDIS_URL of the Cluster form (service.OpenRedis):
// redis+cluster://node-1?addr=node-2&addr=node-3.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	q := make([]string, 0, len(addrs)-1)
	for _, a := range addrs[1:] {
		q = append(q, "addr="+a)
	}
	return "redis+cluster://" + addrs[0] + "?" + strings.Join(q, "&")
}
