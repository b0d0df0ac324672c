package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
)

// DefaultTimeout bounds one Redis call unless --timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// redisFlags are the connection flags of the commands that talk to Redis.
type redisFlags struct {
	url     string
	cluster bool
	prefix  string
	timeout time.Duration
}

func (rf *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&rf.url, "redis-url", "", "Redis `URL`: redis://, rediss:// or unix:// (default $"+EnvRedisURL+", else "+DefaultRedisURL+")")
	fs.BoolVar(&rf.cluster, "cluster", false, "the URL names a Redis Cluster node (more nodes with ?addr=host:port)")
	fs.StringVar(&rf.prefix, "prefix", "", "key `prefix` before every stream key, as in <prefix>events:{wallet}")
	fs.DurationVar(&rf.timeout, "timeout", DefaultTimeout, "bound on connecting and on each Redis call")
}

// connect parses the URL and returns a client that has answered a PING.
// A bad URL is a usage error; an unreachable server an operational one.
// Messages never repeat the URL, which may hold a password.
func (a *app) connect(ctx context.Context, rf *redisFlags) (redis.UniversalClient, error) {
	raw := rf.url
	if raw == "" {
		raw = a.env(EnvRedisURL)
	}
	if raw == "" {
		raw = DefaultRedisURL
	}
	if rf.timeout <= 0 {
		return nil, usagef("--timeout must be positive")
	}
	var (
		rdb   redis.UniversalClient
		where string
	)
	if rf.cluster {
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, usagef("bad --redis-url: %v", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = rf.timeout, rf.timeout, rf.timeout
		o.ContextTimeoutEnabled = true // else go-redis ignores context deadlines
		where = "Redis Cluster at " + strings.Join(o.Addrs, ",")
		rdb = redis.NewClusterClient(o)
	} else {
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, usagef("bad --redis-url: %v", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = rf.timeout, rf.timeout, rf.timeout
		o.ContextTimeoutEnabled = true // else go-redis ignores context deadlines
		where = "Redis at " + o.Addr
		rdb = redis.NewClient(o)
	}
	// No deadline of its own: DialTimeout and ReadTimeout bound each try,
	// and the dial error says more than "context deadline exceeded".
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("%s does not answer: %w", where, err)
	}
	return rdb, nil
}

// catalogFlag is the --catalog flag of the commands that read the catalog.
type catalogFlag struct{ path string }

func (cf *catalogFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.path, "catalog", "", "event catalog as JSON `file`, as 'catalog export --format json' writes it (default: the built-in platform catalog)")
}

// load returns the catalog: the platform's, or the file's after Validate.
func (cf *catalogFlag) load() (*event.Catalog, error) {
	if cf.path == "" {
		return event.Platform(), nil
	}
	b, err := os.ReadFile(cf.path)
	if err != nil {
		return nil, usagef("--catalog: %v", err)
	}
	var c event.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, usagef("--catalog %s: not a catalog: %v", cf.path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, usagef("--catalog %s: %v", cf.path, err)
	}
	return &c, nil
}

// streamRef is one catalog stream and its keys under the prefix.
type streamRef struct {
	Name string
	Key  string // prefix + events:{name}
	DLQ  string // prefix + events:{name}:dlq
}

// selectStreams returns the named catalog streams, or all of them when
// names is empty. An unknown name is a usage error that lists the known.
func selectStreams(cat *event.Catalog, prefix string, names []string) ([]streamRef, error) {
	if len(names) == 0 {
		for _, s := range cat.Streams {
			names = append(names, s.Name)
		}
	}
	var out []streamRef
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := cat.Stream(n)
		if !ok {
			return nil, usagef("unknown stream %q (catalog streams: %s)", n, strings.Join(streamNames(cat), ", "))
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, streamRef{Name: s.Name, Key: prefix + s.Key(), DLQ: prefix + s.DeadLetterKey()})
	}
	return out, nil
}

func streamNames(cat *event.Catalog) []string {
	out := make([]string, len(cat.Streams))
	for i, s := range cat.Streams {
		out[i] = s.Name
	}
	return out
}

// isNoSuchKey reports whether err is Redis's answer for a missing stream.
func isNoSuchKey(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && strings.Contains(err.Error(), "no such key")
}
