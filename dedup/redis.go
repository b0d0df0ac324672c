package dedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a [RedisStore]. The zero value is valid.
type RedisConfig struct {
	// Prefix of every key; a key is Prefix + Scope + ":" + EventID.
	// Default "headway:dedup:".
	Prefix string
	// LeaseTTL bounds how long a claim lives without a result: after it, a
	// crashed worker's event can be claimed again. Keep it above the
	// handler timeout. Default 1 minute.
	LeaseTTL time.Duration
	// DoneTTL is how long a processed event is remembered; redeliveries
	// later than that run the handler again. Keep it above the longest
	// time an entry can stay pending. Default 7 days.
	DoneTTL time.Duration
}

// Defaults of [RedisConfig].
const (
	DefaultRedisPrefix = "headway:dedup:"
	DefaultLeaseTTL    = time.Minute
	DefaultDoneTTL     = 7 * 24 * time.Hour
)

// Validate reports negative durations.
func (c *RedisConfig) Validate() error {
	if c.LeaseTTL < 0 || c.DoneTTL < 0 {
		return errors.New("dedup: negative LeaseTTL or DoneTTL")
	}
	if c.LeaseTTL > 0 && c.LeaseTTL < time.Millisecond {
		return errors.New("dedup: LeaseTTL below 1ms")
	}
	return nil
}

// RedisStore is a [Store] and [Batcher] on Redis strings. A key holds
// "L:<token>" while leased (SET NX with LeaseTTL) and "D" once done (with
// DoneTTL). It is safe for concurrent use and works with a Redis Cluster
// (keys are independent; pipelines are split by slot).
type RedisStore struct {
	rdb     redis.UniversalClient
	prefix  string
	lease   time.Duration
	done    time.Duration
	token   string
	release *redis.Script
}

var _ Batcher = (*RedisStore)(nil)

const doneValue = "D"

// releaseScript deletes a lease only if this store still holds it.
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

// NewRedis returns a RedisStore over rdb. Defaults: Prefix
// "headway:dedup:", LeaseTTL 1 minute, DoneTTL 7 days.
func NewRedis(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	if rdb == nil {
		return nil, errors.New("dedup: nil Redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &RedisStore{rdb: rdb, prefix: cfg.Prefix, lease: cfg.LeaseTTL, done: cfg.DoneTTL,
		release: redis.NewScript(releaseScript)}
	if s.prefix == "" {
		s.prefix = DefaultRedisPrefix
	}
	if s.lease == 0 {
		s.lease = DefaultLeaseTTL
	}
	if s.done == 0 {
		s.done = DefaultDoneTTL
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("dedup: lease token: %w", err)
	}
	s.token = "L:" + hex.EncodeToString(b[:])
	return s, nil
}

func (s *RedisStore) key(k Key) string { return s.prefix + k.Scope + ":" + k.EventID }

func (s *RedisStore) claimArgs() redis.SetArgs {
	return redis.SetArgs{Mode: "NX", Get: true, TTL: s.lease}
}

// outcomeOf reads the reply of SET NX GET: no old value means the lease was
// taken.
func outcomeOf(old string, err error) (Outcome, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return Processed, nil
	case err != nil:
		return 0, fmt.Errorf("%w: claim: %w", ErrStore, err)
	case old == doneValue:
		return Duplicate, nil
	}
	return Busy, nil
}

// Process implements [Store].
func (s *RedisStore) Process(ctx context.Context, key Key, fn Func) (o Outcome, err error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	k := s.key(key)
	o, err = outcomeOf(s.rdb.SetArgs(ctx, k, s.token, s.claimArgs()).Result())
	if err != nil || o != Processed {
		return o, err
	}
	panicking := true
	defer func() {
		if panicking {
			// Give the lease back; the panic continues to the caller.
			_ = s.releaseOne(context.WithoutCancel(ctx), k)
		}
	}()
	ferr := fn(ctx)
	panicking = false
	if ferr != nil {
		if rerr := s.releaseOne(context.WithoutCancel(ctx), k); rerr != nil {
			return Failed, fmt.Errorf("%w (releasing the lease: %w)", ferr, rerr)
		}
		return Failed, ferr
	}
	if err := s.rdb.Set(context.WithoutCancel(ctx), k, doneValue, s.done).Err(); err != nil {
		return Failed, fmt.Errorf("%w: record done: %w", ErrStore, err)
	}
	return Processed, nil
}

func (s *RedisStore) releaseOne(ctx context.Context, k string) error {
	if err := s.release.Run(ctx, s.rdb, []string{k}, s.token).Err(); err != nil {
		return fmt.Errorf("%w: release: %w", ErrStore, err)
	}
	return nil
}

// Claim implements [Batcher] with one pipelined SET NX GET per key.
func (s *RedisStore) Claim(ctx context.Context, keys []Key, out []Outcome) error {
	if len(out) != len(keys) {
		return fmt.Errorf("dedup: Claim: %d keys, %d outcomes", len(keys), len(out))
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(keys))
	args := s.claimArgs()
	for i, k := range keys {
		cmds[i] = pipe.SetArgs(ctx, s.key(k), s.token, args)
	}
	_, perr := pipe.Exec(ctx)
	for i, c := range cmds {
		o, err := outcomeOf(c.Result())
		if err != nil {
			o = Busy
		}
		out[i] = o
	}
	if perr != nil && !errors.Is(perr, redis.Nil) {
		return fmt.Errorf("%w: claim: %w", ErrStore, perr)
	}
	return nil
}

// Settle implements [Batcher]: one pipelined SET per done key; failed keys'
// leases are released one by one (the failure path is rare).
func (s *RedisStore) Settle(ctx context.Context, done, failed []Key) error {
	var errs []error
	if len(done) > 0 {
		pipe := s.rdb.Pipeline()
		for _, k := range done {
			pipe.Set(ctx, s.key(k), doneValue, s.done)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%w: record done: %w", ErrStore, err))
		}
	}
	for _, k := range failed {
		if err := s.releaseOne(ctx, s.key(k)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
