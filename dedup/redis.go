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
	// Prefix of every key; a key is Prefix + "{" + Scope + "}:" + EventID.
	// The braces are a Redis Cluster hash tag: the keys of one scope share a
	// slot, so a batch is claimed and settled by one script call. Default
	// "headway:dedup:".
	Prefix string
	// LeaseTTL bounds how long a claim lives without a result: after it, a
	// crashed worker's event can be claimed again. Keep it above the
	// handler timeout (Process) or above the refresh period of a consumer
	// that renews its batch's leases with Extend (at most 10s). Default 1
	// minute.
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
	rdb         redis.UniversalClient
	prefix      string
	lease       time.Duration
	done        time.Duration
	token       string
	release     *redis.Script
	claimMany   *redis.Script
	settleMany  *redis.Script
	releaseMany *redis.Script
	extendMany  *redis.Script
}

var _ Batcher = (*RedisStore)(nil)

const doneValue = "D"

// releaseScript deletes a lease only if this store still holds it.
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

// claimManyScript leases every key that is free and reports for each: 0
// leased, 1 done before, 2 leased by someone else. One call per batch
// costs Redis far less than a command per key.
const claimManyScript = `
local out = {}
for i, k in ipairs(KEYS) do
  local old = redis.call('SET', k, ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
  if not old then out[i] = 0 elseif old == 'D' then out[i] = 1 else out[i] = 2 end
end
return out`

// settleManyScript records every key as done.
const settleManyScript = `
for _, k in ipairs(KEYS) do redis.call('SET', k, 'D', 'PX', ARGV[1]) end
return #KEYS`

// extendManyScript renews the leases this store still holds.
const extendManyScript = `
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('PEXPIRE', k, ARGV[2]) end
end
return n`

// releaseManyScript drops the leases this store still holds.
const releaseManyScript = `
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n`

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
		release: redis.NewScript(releaseScript), claimMany: redis.NewScript(claimManyScript),
		settleMany: redis.NewScript(settleManyScript), releaseMany: redis.NewScript(releaseManyScript),
		extendMany: redis.NewScript(extendManyScript)}
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

func (s *RedisStore) key(k Key) string { return s.prefix + "{" + k.Scope + "}:" + k.EventID }

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

// Claim implements [Batcher]: one script call per scope leases the whole
// batch.
func (s *RedisStore) Claim(ctx context.Context, keys []Key, out []Outcome) error {
	if len(out) != len(keys) {
		return fmt.Errorf("dedup: Claim: %d keys, %d outcomes", len(keys), len(out))
	}
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
		out[i] = Busy
	}
	var errs []error
	for _, g := range groupByScope(keys) {
		names := make([]string, len(g))
		for j, i := range g {
			names[j] = s.key(keys[i])
		}
		res, err := s.claimMany.Run(ctx, s.rdb, names, s.token, s.lease.Milliseconds()).Int64Slice()
		if err != nil || len(res) != len(g) {
			errs = append(errs, fmt.Errorf("%w: claim: %v (%d replies for %d keys)", ErrStore, err, len(res), len(g)))
			continue
		}
		for j, i := range g {
			switch res[j] {
			case 0:
				out[i] = Processed
			case 1:
				out[i] = Duplicate
			}
		}
	}
	return errors.Join(errs...)
}

// Settle implements [Batcher]: one script call per scope records the done
// keys, one more releases the failed ones' leases.
func (s *RedisStore) Settle(ctx context.Context, done, failed []Key) error {
	var errs []error
	run := func(script *redis.Script, keys []Key, arg any, what string) {
		for _, g := range groupByScope(keys) {
			names := make([]string, len(g))
			for j, i := range g {
				names[j] = s.key(keys[i])
			}
			if err := script.Run(ctx, s.rdb, names, arg).Err(); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: %w", ErrStore, what, err))
			}
		}
	}
	run(s.settleMany, done, s.done.Milliseconds(), "record done")
	run(s.releaseMany, failed, s.token, "release")
	return errors.Join(errs...)
}

// Extend implements [Batcher]: one script call per scope renews the leases
// this store holds (compare-and-expire, so a lease taken over by another
// store is left alone).
func (s *RedisStore) Extend(ctx context.Context, keys []Key) error {
	var errs []error
	for _, g := range groupByScope(keys) {
		names := make([]string, len(g))
		for j, i := range g {
			names[j] = s.key(keys[i])
		}
		if err := s.extendMany.Run(ctx, s.rdb, names, s.token, s.lease.Milliseconds()).Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w: extend: %w", ErrStore, err))
		}
	}
	return errors.Join(errs...)
}

// groupByScope returns the indexes of keys grouped by scope, in order;
// usually there is one group.
func groupByScope(keys []Key) [][]int {
	if len(keys) == 0 {
		return nil
	}
	same := true
	for _, k := range keys[1:] {
		same = same && k.Scope == keys[0].Scope
	}
	if same {
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	byScope := map[string]int{}
	var groups [][]int
	for i, k := range keys {
		g, ok := byScope[k.Scope]
		if !ok {
			g = len(groups)
			byScope[k.Scope] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}
