// Package redistest gives tests a connection to the real Redis server and a
// key prefix of their own.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// AddrEnv names the environment variable that overrides the server address.
const AddrEnv = "HEADWAY_REDIS_ADDR"

// DefaultAddr is the shared Redis server of the development machines and CI.
const DefaultAddr = "127.0.0.1:6379"

// Client returns a client of the shared Redis server and a key prefix unique
// to the test, of the form "test:<random>:". Keys under the prefix are
// deleted and the client closed when the test ends. When the server does
// not answer, the test fails with a message that says how to start it; it
// never skips.
func Client(t testing.TB) (*redis.Client, string) {
	t.Helper()
	addr := os.Getenv(AddrEnv)
	if addr == "" {
		addr = DefaultAddr
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("redistest: Redis at %s does not answer (%v). Start it with:\n"+
			"  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"+
			"or point %s at a running server.", addr, err, AddrEnv)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				t.Logf("redistest: cleaning %s*: %v", prefix, err)
				break
			}
			if len(keys) > 0 {
				c.Unlink(ctx, keys...)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		_ = c.Close()
	})
	return c, prefix
}
