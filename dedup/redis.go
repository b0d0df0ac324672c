package dedup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a [RedisStore]. The zero value is valid.
type RedisConfig struct {
	// Client is the Redis connection (a cluster client works). Required.
	Client redis.UniversalClient
	// Prefix of every key; an event's key is Prefix + "{" + Scope + "}:" +
	// EventID, a batch's is Prefix + "{" + Scope + "}#b:" + its id. The
	// braces are a Redis Cluster hash tag: the keys of one scope share a
	// slot, so a batch is claimed and settled by one script call. Default
	// "headway:dedup:".
	Prefix string
	// LeaseTTL bounds how long a claim lives without a result: after it, a
	// crashed worker's event can be claimed again. Keep it above the
	// handler timeout (Process) or above the refresh period of a consumer
	// that renews its batch's leases with Extend (at most 10s). Default 1
	// minute.
	LeaseTTL time.Duration
	// DoneTTL is how long a processed event is remembered, counted from
	// its claim; redeliveries later than that run the handler again. Keep
	// it above the longest time an entry can stay pending. Default 7 days.
	DoneTTL time.Duration
}

// Defaults of [RedisConfig].
const (
	DefaultRedisPrefix = "headway:dedup:"
	DefaultLeaseTTL    = time.Minute
	DefaultDoneTTL     = 7 * 24 * time.Hour
)

// Validate reports a missing Client and negative durations.
func (c RedisConfig) Validate() error {
	if c.Client == nil {
		return errors.New("dedup: nil Redis client")
	}
	if c.LeaseTTL < 0 || c.DoneTTL < 0 {
		return errors.New("dedup: negative LeaseTTL or DoneTTL")
	}
	if c.LeaseTTL > 0 && c.LeaseTTL < time.Millisecond {
		return errors.New("dedup: LeaseTTL below 1ms")
	}
	return nil
}

// RedisStore is a [Store] and [Batcher] on Redis strings. It is safe for
// concurrent use and works with a Redis Cluster (the keys of one scope
// share a hash tag, so each call touches one slot).
//
// Claim leases a whole batch with one key of its own: the batch key
// Prefix + "{" + Scope + "}#b:" + <batch id> holds this store's lease
// token for LeaseTTL, and each event key is written once, with the value
// "B:" + <batch id> and DoneTTL. Settle then records the batch as done by
// writing "D" into its batch key (DoneTTL), one write for the whole batch,
// after deleting the keys of the events that failed. An event key is done
// when it holds "D" or points to a batch key that holds "D"; leased while
// it points to a batch key that holds a token; free when its batch key is
// gone (the lease expired, or the batch was released). So each event costs
// Redis one keyed write, not two (a lease, then a done mark), which halves
// what deduplication costs the server; a pointed-to batch key costs about
// 60 bytes per batch, and each event key about 20 bytes more than a bare
// "D" would.
//
// When a Settle covers only part of a batch, the store falls back to a
// write per event ("D" into the event key) for that part; the consumer
// always settles a whole batch at once.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string
	lease  time.Duration
	done   time.Duration
	token  string // the value of this store's leases: "L:" + random
	idBase string // batch ids are idBase + a sequence number

	claimScript   *redis.Script
	settleScript  *redis.Script
	markScript    *redis.Script
	extendScript  *redis.Script
	releaseScript *redis.Script

	mu      sync.Mutex
	seq     uint64
	batches map[uint64]*redisBatch // batches with keys claimed and not settled
	keys    map[Key]uint64         // claimed, not settled: key → batch
	orphans []orphan               // batch keys of failed claims whose release failed too
}

// redisBatch is a batch claimed by this store.
type redisBatch struct {
	key     string // its batch key
	value   string // what its event keys hold: "B:" + batch id
	pending int    // its keys claimed and not yet settled; under RedisStore.mu
	// settling serialises the settles of the batch, so that a partial
	// settle's writes are in Redis before the last settle decides for the
	// keys still pointing to the batch.
	settling sync.Mutex
}

var _ Batcher = (*RedisStore)(nil)

// claimScript leases a batch: KEYS[1] is the batch key, the others are
// event keys; ARGV: the event keys' value, the lease token, LeaseTTL and
// DoneTTL in milliseconds, and the batch keys' prefix for this scope. For
// each event key it reports 0 (leased now), 1 (done before) or 2 (leased
// by a live batch). A key that points to a batch key that is gone is free
// and is taken. A key that already holds this call's own value, and was
// not met earlier in this run (a key repeated in one call is leased by
// its first), was taken by an earlier run of this very call — go-redis
// runs a script again when the connection broke before its reply — and
// stays taken: reporting it
// leased by a live batch would let the batch's settle record it as done
// although its handler never ran. When nothing is leased the batch key is
// dropped again.
const claimScript = `
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local out, n, seen = {}, 0, {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local old = redis.call('SET', k, ARGV[1], 'NX', 'GET', 'PX', ARGV[4])
  local r = 0
  if old then
    if old == 'D' then
      r = 1
    elseif old == ARGV[1] and not seen[k] then
      r = 0
    elseif string.sub(old, 1, 2) == 'B:' then
      local st = redis.call('GET', ARGV[5] .. string.sub(old, 3))
      if st == 'D' then
        r = 1
      elseif st then
        r = 2
      else
        redis.call('SET', k, ARGV[1], 'PX', ARGV[4])
      end
    else
      r = 2
    end
  end
  if r == 0 then n = n + 1 end
  seen[k] = true
  out[i - 1] = r
end
if n == 0 then redis.call('DEL', KEYS[1]) end
return out`

// settleScript settles the last pending keys of a batch: KEYS[1] is the
// batch key; ARGV: the event keys' value, the lease token, DoneTTL in
// milliseconds, and the mode. Mode "B": KEYS[2..] are the failed keys,
// deleted while they still point to the batch, and the batch key becomes
// "D", which records every key still pointing to it as done. Mode "K":
// KEYS[2..] are done keys, each recorded as "D", and the batch key is
// dropped if it still holds the lease (the failed keys then point to no
// batch: they are free).
const settleScript = `
if ARGV[4] == 'B' then
  for i = 2, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
  end
  redis.call('SET', KEYS[1], 'D', 'PX', ARGV[3])
else
  for i = 2, #KEYS do redis.call('SET', KEYS[i], 'D', 'PX', ARGV[3]) end
  if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
end
return 1`

// markScript settles part of a batch one key at a time: ARGV[1] is the
// batch's value and ARGV[2] DoneTTL in milliseconds; ARGV[3] is how many of
// KEYS are done (recorded as "D"); the rest failed and are deleted while
// they still point to the batch.
const markScript = `
local nd = tonumber(ARGV[3])
for i, k in ipairs(KEYS) do
  if i <= nd then
    redis.call('SET', k, 'D', 'PX', ARGV[2])
  elseif redis.call('GET', k) == ARGV[1] then
    redis.call('DEL', k)
  end
end
return #KEYS`

// extendScript renews the batch keys that still hold this store's token.
const extendScript = `
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('PEXPIRE', k, ARGV[2]) end
end
return n`

// releaseScript drops a batch key if it still holds this store's token.
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

// NewRedis returns a RedisStore on cfg.Client, with the defaults of
// [RedisConfig].
func NewRedis(cfg RedisConfig) (*RedisStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &RedisStore{rdb: cfg.Client, prefix: cfg.Prefix, lease: cfg.LeaseTTL, done: cfg.DoneTTL,
		claimScript: redis.NewScript(claimScript), settleScript: redis.NewScript(settleScript),
		markScript: redis.NewScript(markScript), extendScript: redis.NewScript(extendScript),
		releaseScript: redis.NewScript(releaseScript),
		batches:       map[uint64]*redisBatch{}, keys: map[Key]uint64{}}
	if s.prefix == "" {
		s.prefix = DefaultRedisPrefix
	}
	if s.lease == 0 {
		s.lease = DefaultLeaseTTL
	}
	if s.done == 0 {
		s.done = DefaultDoneTTL
	}
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("dedup: lease token: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.token, s.idBase = "L:"+id, id+"."
	return s, nil
}

func (s *RedisStore) key(k Key) string { return s.prefix + "{" + k.Scope + "}:" + k.EventID }

// batchPrefix is the prefix of the batch keys of a scope.
func (s *RedisStore) batchPrefix(scope string) string { return s.prefix + "{" + scope + "}#b:" }

// Process implements [Store] as a batch of one: Claim, fn, Settle.
func (s *RedisStore) Process(ctx context.Context, key Key, fn Func) (o Outcome, err error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	keys, out := []Key{key}, []Outcome{Busy}
	if err := s.Claim(ctx, keys, out); err != nil {
		return 0, err
	}
	if out[0] != Processed {
		return out[0], nil
	}
	panicking := true
	defer func() {
		if panicking {
			// Give the lease back; the panic continues to the caller.
			_ = s.Settle(context.WithoutCancel(ctx), nil, keys)
		}
	}()
	ferr := fn(ctx)
	panicking = false
	if ferr != nil {
		if rerr := s.Settle(context.WithoutCancel(ctx), nil, keys); rerr != nil {
			return Failed, fmt.Errorf("%w (releasing the lease: %w)", ferr, rerr)
		}
		return Failed, ferr
	}
	if err := s.Settle(context.WithoutCancel(ctx), keys, nil); err != nil {
		return Failed, fmt.Errorf("%w: record done: %w", ErrStore, err)
	}
	return Processed, nil
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
	s.releaseOrphans(ctx)
	var errs []error
	for _, g := range groupByScope(keys) {
		scope := keys[g[0]].Scope
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.mu.Unlock()
		id := s.idBase + strconv.FormatUint(seq, 36)
		b := &redisBatch{key: s.batchPrefix(scope) + id, value: "B:" + id}
		names := make([]string, len(g)+1)
		names[0] = b.key
		for j, i := range g {
			names[j+1] = s.key(keys[i])
		}
		res, err := s.claimScript.Run(ctx, s.rdb, names, b.value, s.token, s.lease.Milliseconds(),
			s.done.Milliseconds(), s.batchPrefix(scope)).Int64Slice()
		if err != nil || len(res) != len(g) {
			errs = append(errs, fmt.Errorf("%w: claim: %v (%d replies for %d keys)", ErrStore, err, len(res), len(g)))
			// Nothing was reported leased: drop the batch's lease if it
			// was taken, so that its keys are free now, not after LeaseTTL.
			// The script may have run with only its reply lost (Redis
			// killed after persisting it): when the release fails too,
			// the next Claim retries it, so that a Redis restart does not
			// hold the batch's events for a whole LeaseTTL.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if rerr := s.releaseScript.Run(rctx, s.rdb, names[:1], s.token).Err(); rerr != nil {
				s.mu.Lock()
				// Bounded: the oldest expire by LeaseTTL anyway.
				s.orphans = append(s.orphans[max(len(s.orphans)-maxOrphans+1, 0):], orphan{key: b.key, at: time.Now()})
				s.mu.Unlock()
			}
			cancel()
			continue
		}
		s.mu.Lock()
		for j, i := range g {
			switch res[j] {
			case 0:
				out[i] = Processed
				s.track(keys[i], seq, b)
			case 1:
				out[i] = Duplicate
			}
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// maxOrphans bounds the failed claims whose release is retried.
const maxOrphans = 1024

// orphan is the batch key of a failed claim whose release failed.
type orphan struct {
	key string
	at  time.Time
}

// releaseOrphans drops the leases of failed claims whose release failed,
// and keeps those whose release fails again, until their lease has run
// out anyway. Each release gets a second at most and the first failure
// ends the round (Redis is still out of reach), so a Claim never waits
// long on them.
func (s *RedisStore) releaseOrphans(ctx context.Context) {
	s.mu.Lock()
	orphans := s.orphans
	s.orphans = nil
	s.mu.Unlock()
	var kept []orphan
	for i, o := range orphans {
		if time.Since(o.at) > s.lease {
			continue // expired: nothing left to release
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.releaseScript.Run(rctx, s.rdb, []string{o.key}, s.token).Err()
		cancel()
		if err != nil {
			kept = append(kept, orphans[i:]...)
			break
		}
	}
	if len(kept) > 0 {
		s.mu.Lock()
		s.orphans = append(kept, s.orphans...) // oldest first, as the cap expects
		if n := len(s.orphans) - maxOrphans; n > 0 {
			s.orphans = s.orphans[n:]
		}
		s.mu.Unlock()
	}
}

// track records that key was leased in batch seq (b); s.mu is held.
func (s *RedisStore) track(key Key, seq uint64, b *redisBatch) {
	if old, ok := s.keys[key]; ok {
		// Leased again after its earlier lease here expired: it belongs
		// to the new batch now.
		s.untrack(key, old)
	}
	s.keys[key] = seq
	if s.batches[seq] == nil {
		s.batches[seq] = b
	}
	b.pending++
}

// untrack forgets key, claimed in batch seq; s.mu is held.
func (s *RedisStore) untrack(key Key, seq uint64) {
	delete(s.keys, key)
	if b := s.batches[seq]; b != nil {
		if b.pending--; b.pending <= 0 {
			delete(s.batches, seq)
		}
	}
}

// Settle implements [Batcher]. A batch settled whole (the usual case) costs
// one script call: it deletes the failed keys and writes "D" into the
// batch key, or, when one key or none succeeded, records that key and
// drops the batch key. A settle of part of a batch records its keys one by
// one. Keys this store did not claim are recorded as done one by one when
// done, and left alone when failed (there is no lease of ours to release).
func (s *RedisStore) Settle(ctx context.Context, done, failed []Key) error {
	type settlement struct {
		seq          uint64
		b            *redisBatch
		done, failed []string // event keys
	}
	var (
		batches []*settlement
		index   = map[uint64]int{}
		foreign []Key // done keys this store did not claim
	)
	s.mu.Lock()
	add := func(k Key, ok bool) {
		seq, claimed := s.keys[k]
		if !claimed {
			if ok {
				foreign = append(foreign, k)
			}
			return
		}
		delete(s.keys, k)
		i, seen := index[seq]
		if !seen {
			i = len(batches)
			index[seq] = i
			batches = append(batches, &settlement{seq: seq, b: s.batches[seq]})
		}
		if ok {
			batches[i].done = append(batches[i].done, s.key(k))
		} else {
			batches[i].failed = append(batches[i].failed, s.key(k))
		}
	}
	for _, k := range done {
		add(k, true)
	}
	for _, k := range failed {
		add(k, false)
	}
	s.mu.Unlock()

	var errs []error
	doneMs := s.done.Milliseconds()
	for _, st := range batches {
		st.b.settling.Lock()
		s.mu.Lock()
		st.b.pending -= len(st.done) + len(st.failed)
		last := st.b.pending <= 0
		if last {
			delete(s.batches, st.seq)
		}
		s.mu.Unlock()
		var err error
		switch {
		case last && len(st.done) > 1:
			// The batch key decides for every key still pointing to it.
			names := append([]string{st.b.key}, st.failed...)
			err = s.settleScript.Run(ctx, s.rdb, names, st.b.value, s.token, doneMs, "B").Err()
		case last:
			// One key done or none: record it alone, so that no batch key
			// outlives the lease for one event.
			names := append([]string{st.b.key}, st.done...)
			err = s.settleScript.Run(ctx, s.rdb, names, st.b.value, s.token, doneMs, "K").Err()
		default:
			// Part of the batch: one write per key; the batch key keeps
			// the lease of the keys still running.
			names := append(st.done, st.failed...)
			err = s.markScript.Run(ctx, s.rdb, names, st.b.value, doneMs, len(st.done)).Err()
		}
		st.b.settling.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: settle: %w", ErrStore, err))
		}
	}
	for _, g := range groupByScope(foreign) {
		names := make([]string, len(g))
		for j, i := range g {
			names[j] = s.key(foreign[i])
		}
		if err := s.markScript.Run(ctx, s.rdb, names, "", doneMs, len(names)).Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w: record done: %w", ErrStore, err))
		}
	}
	return errors.Join(errs...)
}

// Extend implements [Batcher]: it renews the leases of the batches that
// keys were claimed in, one script call per scope (compare-and-expire, so
// a lease taken over by another store is left alone). Keys this store does
// not hold are left alone.
func (s *RedisStore) Extend(ctx context.Context, keys []Key) error {
	byScope := map[string][]string{}
	var scopes []string
	seen := map[uint64]bool{}
	s.mu.Lock()
	for _, k := range keys {
		seq, ok := s.keys[k]
		if !ok || seen[seq] {
			continue
		}
		seen[seq] = true
		if _, ok := byScope[k.Scope]; !ok {
			scopes = append(scopes, k.Scope)
		}
		byScope[k.Scope] = append(byScope[k.Scope], s.batches[seq].key)
	}
	s.mu.Unlock()
	var errs []error
	for _, scope := range scopes {
		if err := s.extendScript.Run(ctx, s.rdb, byScope[scope], s.token, s.lease.Milliseconds()).Err(); err != nil {
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
