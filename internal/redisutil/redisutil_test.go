package redisutil_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/redisutil"
)

func TestContextTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    redis.UniversalClient
		want bool
	}{
		{"client without", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), false},
		{"client with", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true}), true},
		{"cluster without", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), false},
		{"cluster with", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true}), true},
	} {
		if got := redisutil.ContextTimeouts(tc.c); got != tc.want {
			t.Errorf("%s: ContextTimeouts = %v, want %v", tc.name, got, tc.want)
		}
		_ = tc.c.Close()
	}
}
