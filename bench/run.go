package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/outbox"
)

// bench is one run: its connections, key prefix and schema.
type bench struct {
	o       options
	id      string // random, names the run's keys, schema and Redis clients
	prefix  string // of every Redis key of the run: "bench:<id>:"
	schema  string // the run's PostgreSQL schema, "" without PostgreSQL
	rdb     *redis.Client
	redisUp bool          // rdb answered: the run's keys may exist
	pool    *pgxpool.Pool // search_path is schema
	quiet   *slog.Logger  // for headway's components: the tables are the output
	fills   int           // streams pre-filled so far
	rep     *Report
}

// run runs the sections o selects, prints a table per section to o.Out
// and returns the report. The run's Redis keys and PostgreSQL schema are
// deleted before it returns, also after an error.
func run(ctx context.Context, o options) (rep *Report, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	bn := &bench{o: o, id: hex.EncodeToString(b[:]), quiet: slog.New(slog.DiscardHandler)}
	bn.prefix = "bench:" + bn.id + ":"
	defer func() {
		if cerr := bn.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := bn.connect(ctx); err != nil {
		return nil, err
	}
	commit := o.Commit
	if commit == "" {
		commit = gitCommit()
	}
	bn.rep = &Report{Started: time.Now().UTC(), Commit: commit, Machine: bn.machine(ctx), Options: o,
		LoadStart: loadAvg(), Prefix: bn.prefix, Schema: bn.schema}
	bn.rep.Machine.write(o.Out, bn.rep.Commit, bn.rep.LoadStart)
	batch := fmt.Sprintf("%d (headway's default)", consumer.DefaultBatchSize)
	if o.BatchSize > 0 {
		batch = fmt.Sprint(o.BatchSize)
	}
	fmt.Fprintf(o.Out, "headway consumers: BatchSize %s, Concurrency 8, otherwise defaults; relays: BatchSize %d\n",
		batch, cmp.Or(o.RelayBatch, outbox.DefaultBatchSize))
	for _, s := range sections {
		if !o.runs(s) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return bn.rep, err
		}
		bn.logf("== %s", s)
		var err error
		switch s {
		case "drain":
			err = bn.drainSection(ctx)
		case "relay":
			err = bn.relaySection(ctx)
		case "replicas":
			err = bn.replicasSection(ctx)
		case "e2e":
			err = bn.e2eSection(ctx)
		case "scale":
			err = bn.scaleSection(ctx)
		case "memory":
			err = bn.memorySection(ctx)
		}
		if err != nil {
			return bn.rep, fmt.Errorf("%s: %w", s, err)
		}
	}
	bn.rep.LoadEnd = loadAvg()
	bn.rep.writeTargets(o.Out)
	fmt.Fprintf(o.Out, "load average at the end: %s\n", bn.rep.LoadEnd)
	if o.JSON != "" {
		data, err := json.MarshalIndent(bn.rep, "", "  ")
		if err != nil {
			return bn.rep, err
		}
		if err := os.WriteFile(o.JSON, append(data, '\n'), 0o644); err != nil {
			return bn.rep, err
		}
	}
	return bn.rep, nil
}

func (b *bench) needsPostgres() bool {
	return b.o.runs("drain") || b.o.runs("relay") || b.o.runs("replicas") || b.o.runs("e2e")
}

// connect opens the Redis client and, when a section needs it, the run's
// PostgreSQL schema and a pool whose search_path is that schema.
func (b *bench) connect(ctx context.Context) error {
	b.rdb = b.redisClient("", 0)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("no answer from Redis at %s (%v). Start it with:\n"+
			"  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"+
			"or point -redis at a running server", b.o.RedisAddr, err)
	}
	b.redisUp = true
	if !b.needsPostgres() {
		return nil
	}
	admin, err := pgx.Connect(pctx, b.o.DatabaseURL)
	if err != nil {
		return fmt.Errorf("no answer from PostgreSQL at %s (%v). Start it with:\n"+
			"  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"or point -database-url at a running server", b.o.DatabaseURL, err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	schema := "bench_" + b.id
	if _, err := admin.Exec(pctx, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	b.schema = schema
	cfg, err := pgxpool.ParseConfig(b.o.DatabaseURL)
	if err != nil {
		return err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["application_name"] = "headway-bench-" + b.id
	// Above the consumer's Concurrency (8): every inbox transaction in
	// flight holds a connection.
	cfg.MaxConns = 16
	b.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	return err
}

// redisClient returns a client of the run's Redis named
// headway-bench-<id>[-suffix] in CLIENT LIST; poolSize 0 is go-redis's
// default (10 per GOMAXPROCS).
func (b *bench) redisClient(suffix string, poolSize int) *redis.Client {
	name := "headway-bench-" + b.id
	if suffix != "" {
		name += "-" + suffix
	}
	// ContextTimeoutEnabled as headway's README recommends for its
	// consumers.
	return redis.NewClient(&redis.Options{Addr: b.o.RedisAddr, ClientName: name, PoolSize: poolSize,
		ContextTimeoutEnabled: true})
}

// close deletes the run's keys, drops its schema and closes the
// connections.
func (b *bench) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if b.redisUp {
		if err := b.deleteKeys(ctx, b.prefix+"*"); err != nil {
			errs = append(errs, fmt.Errorf("delete keys %s*: %w", b.prefix, err))
		}
	}
	if b.rdb != nil {
		errs = append(errs, b.rdb.Close())
	}
	if b.pool != nil {
		b.pool.Close()
	}
	if b.schema != "" {
		c, err := pgx.Connect(ctx, b.o.DatabaseURL)
		if err == nil {
			_, err = c.Exec(ctx, "DROP SCHEMA "+b.schema+" CASCADE")
			_ = c.Close(context.Background())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("drop schema %s: %w", b.schema, err))
		}
	}
	return errors.Join(errs...)
}

// deleteKeys unlinks every key matching pattern.
func (b *bench) deleteKeys(ctx context.Context, pattern string) error {
	var cursor uint64
	for {
		keys, next, err := b.rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := b.rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// measure runs fn, which does one case's work, under the optional CPU
// profile, and returns the CPU that the process, Redis and PostgreSQL
// used until fn called end (or returned), in cores. fn calls end when the
// measured work is done and before it stops what it started, so that
// the shutdown is not measured. The optional heap profile is written
// after fn returned.
func (b *bench) measure(ctx context.Context, name string, fn func(end func()) error) (CPU, error) {
	stopProfile, err := b.startCPUProfile(name)
	if err != nil {
		return CPU{}, err
	}
	before := b.usage(ctx, true)
	var after usage
	ended := false
	end := func() {
		if !ended {
			ended = true
			after = b.usage(ctx, false)
			stopProfile()
		}
	}
	err = fn(end)
	end()
	if err != nil {
		return CPU{}, err
	}
	if b.o.MemProfile != "" {
		if err := writeHeapProfile(profilePath(b.o.MemProfile, name)); err != nil {
			return CPU{}, err
		}
	}
	return after.sub(before), nil
}

func (b *bench) startCPUProfile(name string) (stop func(), err error) {
	if b.o.CPUProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(profilePath(b.o.CPUProfile, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile shows the heap as of the last GC
	err = pprof.WriteHeapProfile(f)
	return errors.Join(err, f.Close())
}

// profilePath inserts "-<name>" before template's extension.
func profilePath(template, name string) string {
	ext := filepath.Ext(template)
	return strings.TrimSuffix(template, ext) + "-" + name + ext
}

// disturbedAt is how many cores other processes and the hypervisor may
// take during a measured run before it counts as disturbed, and
// maxAttempts how often a disturbed run is made in all.
const (
	disturbedAt = 0.25
	maxAttempts = 3
	// minJudged: shorter runs are not judged; /proc counts CPU time in
	// ticks of 10 ms.
	minJudged = 0.5
)

// undisturbed makes a measured run until other processes and the
// hypervisor took at most disturbedAt cores during it, at most maxAttempts times, and returns the
// least disturbed run with Attempts set. On a machine shared with other
// work a run of a second or two can otherwise measure the other work.
func (b *bench) undisturbed(name string, run func(attempt int) (Case, error)) (Case, error) {
	var best Case
	for a := 1; a <= maxAttempts; a++ {
		c, err := run(a)
		if err != nil {
			return Case{}, err
		}
		if a == 1 || c.CPU.disturbance() < best.CPU.disturbance() {
			best = c
		}
		best.Attempts = a
		if c.CPU.disturbance() <= disturbedAt || c.Seconds < minJudged {
			break
		}
		b.logf("%s: other processes and the hypervisor took %.2f cores meanwhile", name, c.CPU.disturbance())
	}
	return best, nil
}

// quiesce starts a measurement from a settled state: the garbage of the
// previous case is collected, and PostgreSQL's dirty buffers are written
// (CHECKPOINT, when the role may; otherwise the checkpointer writes them
// when it will).
func (b *bench) quiesce(ctx context.Context) {
	runtime.GC()
	if b.pool != nil {
		_, _ = b.pool.Exec(ctx, "CHECKPOINT")
	}
}
