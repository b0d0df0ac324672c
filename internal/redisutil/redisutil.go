// Package redisutil holds small go-redis helpers shared by headway's
// loops.
package redisutil

import "github.com/redis/go-redis/v9"

// ContextTimeouts reports whether the go-redis client honours context
// deadlines (ContextTimeoutEnabled); true when it cannot tell (a client
// type it does not know, such as a Ring or a wrapper). Without it go-redis
// ignores the deadlines a loop puts on its calls, and only the client's
// own read and write timeouts bound them.
func ContextTimeouts(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}
