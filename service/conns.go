package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Close releases the listen address and the connections the service
// opened, for a Service whose Run was never called; Run releases them
// itself.
func (s *Service) Close() error {
	s.closeConns()
	return s.listener.Close()
}

// closeConns closes the Redis client and the PostgreSQL pool the service
// opened.
//
// A worker the tree abandoned (it missed the supervisor's shutdown
// timeout) may still hold a PostgreSQL connection, and the pool's Close
// waits for every connection to come back: the close is given
// poolCloseTimeout, then left to finish in the background, so that Run
// keeps its shutdown deadline.
func (s *Service) closeConns() {
	s.mu.Lock()
	rdb, db := s.rdb, s.db
	s.rdb, s.db, s.closed = nil, nil, true
	s.mu.Unlock()
	if rdb != nil {
		_ = rdb.Close()
	}
	if db != nil {
		done := make(chan struct{})
		go func() { db.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(poolCloseTimeout):
			s.log.Warn("PostgreSQL pool not closed: a connection is still in use by a worker that did not stop",
				slog.Duration("waited", poolCloseTimeout))
		}
	}
}

// poolCloseTimeout bounds how long Run waits for the PostgreSQL pool to
// close.
const poolCloseTimeout = 5 * time.Second

// Environment variables the helpers below read.
const (
	EnvRedisURL    = "REDIS_URL"    // one node, Sentinel or Cluster: see OpenRedis
	EnvDatabaseURL = "DATABASE_URL" // postgres://…
)

// OpenRedis returns a Redis client for url (when empty, $REDIS_URL), in
// one of three forms (ADR-023):
//
//   - one node: redis://[user:password@]host:port[/db][?options], or
//     rediss:// for TLS;
//   - Sentinel: the same with a master_name parameter, the host and every
//     addr parameter being Sentinels —
//     redis://sentinel-1:26379/0?master_name=events&addr=sentinel-2:26379&addr=sentinel-3:26379 —
//     a go-redis failover client, which follows the primary Sentinel
//     names. In this form user:password@ authenticates to the Sentinels;
//     the primary's own password is the password parameter (and its user
//     the username parameter). route_by_latency, route_randomly and
//     replica_only are refused: they read from replicas;
//   - Cluster: redis+cluster:// (or rediss+cluster://) with the seed nodes
//     as host and addr parameters —
//     redis+cluster://node-1:6379?addr=node-2:6379&addr=node-3:6379.
//
// The options are go-redis's URL parameters (pool_size, dial_timeout, …).
// Every client has ContextTimeoutEnabled, so that every call honours its
// context's deadline (a hung Redis then fails calls on time instead of
// after the client's read timeouts and retries). The pool is go-redis's
// default (10 per CPU, per node on a cluster): each consumer holds one
// connection in its blocking read, beside its handlers' and the relay's
// calls. An error never repeats the URL, which may carry a password.
func OpenRedis(url string) (redis.UniversalClient, error) { return openRedis(url, 0) }

// openRedis is OpenRedis with a pool of poolSize: 0 is go-redis's
// default, negative the service's (defaultRedisPool), each unless the
// URL's pool_size sets it.
func openRedis(url string, poolSize int) (redis.UniversalClient, error) {
	source := "the Redis URL"
	if url == "" {
		url, source = os.Getenv(EnvRedisURL), EnvRedisURL
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no Redis URL (set %s)", ErrInvalidConfig, EnvRedisURL)
	}
	size := func(p *int) {
		switch {
		case poolSize > 0:
			*p = poolSize
		case poolSize < 0 && *p == 0: // the service's default, unless the URL's pool_size says otherwise
			*p = defaultRedisPool()
		}
	}
	invalid := func(form string, err error) error {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			// The URL parser's message can quote part of the password (an
			// unencoded "/", "?", "#" or "@" in it moves the host): say
			// what to check instead.
			return fmt.Errorf("%w: %s is not a valid %s URL: it does not parse (check the host and port, and percent-encode /, ?, # and @ in the password)",
				ErrInvalidConfig, source, form)
		}
		return fmt.Errorf("%w: %s is not a valid %s URL: %v", ErrInvalidConfig, source, form, err)
	}
	scheme, rest, _ := strings.Cut(url, "://")
	switch {
	case scheme == "redis+cluster" || scheme == "rediss+cluster":
		opts, err := redis.ParseClusterURL(strings.TrimSuffix(scheme, "+cluster") + "://" + rest)
		if err != nil {
			return nil, invalid("redis+cluster://", err)
		}
		opts.ContextTimeoutEnabled = true
		size(&opts.PoolSize)
		return redis.NewClusterClient(opts), nil
	case hasParam(url, "master_name"):
		for _, p := range []string{"route_by_latency", "route_randomly", "replica_only"} {
			if hasParam(url, p) {
				// They read from replicas (a failover cluster client),
				// where stream appends and acknowledgements fail.
				return nil, fmt.Errorf("%w: %s: the Sentinel form does not take %s: headway writes to the primary", ErrInvalidConfig, source, p)
			}
		}
		opts, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, invalid("Sentinel", err)
		}
		opts.ContextTimeoutEnabled = true
		size(&opts.PoolSize)
		return redis.NewFailoverClient(opts), nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, invalid("redis://", err)
	}
	opts.ContextTimeoutEnabled = true
	size(&opts.PoolSize)
	return redis.NewClient(opts), nil
}

// hasParam reports whether url has the query parameter name (an
// unparseable URL has none: the parser of its form says what is wrong).
func hasParam(url, name string) bool {
	u, err := neturl.Parse(url)
	return err == nil && u.Query().Has(name)
}

// OpenPostgres returns a pgx pool for url (when empty, $DATABASE_URL). It
// does not connect: the first use does (pgxpool.Pool.Ping to check).
func OpenPostgres(ctx context.Context, url string) (*pgxpool.Pool, error) {
	source := "the PostgreSQL URL"
	if url == "" {
		url, source = os.Getenv(EnvDatabaseURL), EnvDatabaseURL
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no PostgreSQL URL (set %s)", ErrInvalidConfig, EnvDatabaseURL)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a valid PostgreSQL URL", ErrInvalidConfig, source)
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Connections a worker of [Service.AddConsumer] or [Service.AddRelay]
// needs from the Redis pool at once: a consumer holds one in its blocking
// read, and at most three more for its batch in flight (the dedup claim,
// the settle and acknowledgement, the ownership refresh and lag reads); a
// relay one for its pipelined append and one for its stream reads.
const (
	ConnsPerConsumer = 4
	ConnsPerRelay    = 2
)

// Redis returns the service's Redis client, opening it on the first call
// with [OpenRedis] (Config.RedisURL, else $REDIS_URL) and a pool of
// Config.RedisPoolSize. The service closes it after its workers stop.
func (s *Service) Redis() (redis.UniversalClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb != nil {
		return s.rdb, nil
	}
	if s.closed {
		return nil, errClosed
	}
	size := s.cfg.RedisPoolSize
	if size <= 0 {
		size = -1 // the service's default unless the URL sets pool_size
	}
	rdb, err := openRedis(s.cfg.RedisURL, size)
	if err != nil {
		return nil, err
	}
	s.rdb = rdb
	return rdb, nil
}

// errClosed: the service has shut down and closed its connections.
var errClosed = errors.New("service: shut down: its connections are closed")

// redisPoolSize is the pool of the service's Redis client; s.mu is held.
func (s *Service) redisPoolSize() int {
	if s.rdb != nil {
		return poolSizeOf(s.rdb)
	}
	if s.cfg.RedisPoolSize > 0 {
		return s.cfg.RedisPoolSize
	}
	return defaultRedisPool()
}

// defaultRedisPool is the pool of the service's Redis client when neither
// Config.RedisPoolSize nor the URL's pool_size sets it.
func defaultRedisPool() int { return max(10*runtime.GOMAXPROCS(0), 32) }

// Postgres returns the service's PostgreSQL pool, opening it on the first
// call with [OpenPostgres] (Config.DatabaseURL, else $DATABASE_URL). The
// service closes it after its workers stop. A PostgreSQL inbox holds one
// connection per handler in flight: size the pool above the consumers'
// Concurrency (pool_max_conns in the URL).
func (s *Service) Postgres(ctx context.Context) (*pgxpool.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	if s.closed {
		return nil, errClosed
	}
	db, err := OpenPostgres(ctx, s.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	s.db = db
	return db, nil
}

// reserveRedis counts n more connections of the service's Redis client,
// or fails when its pool cannot serve them. The worker that reserved gives
// them back with releaseRedis when it is not added after all.
func (s *Service) reserveRedis(name string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size := s.redisPoolSize(); s.redisUsed+n > size {
		return fmt.Errorf("%w: worker %s would need %d Redis connections at once, beside the %d of the workers added before; the pool has %d (set Config.RedisPoolSize)",
			ErrInvalidConfig, name, n, s.redisUsed, size)
	}
	s.redisUsed += n
	return nil
}

// poolSizeOf returns the connection pool of c (per node on a cluster).
func poolSizeOf(c redis.UniversalClient) int {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().PoolSize
	case *redis.ClusterClient:
		return c.Options().PoolSize
	}
	return defaultRedisPool()
}

// isServiceRedis reports whether c is the client of [Service.Redis]: a
// worker given it by hand is counted against its pool too.
func (s *Service) isServiceRedis(c redis.UniversalClient) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c != nil && s.rdb != nil && c == s.rdb
}

func (s *Service) releaseRedis(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redisUsed -= n
}
