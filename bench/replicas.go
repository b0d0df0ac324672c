package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// ReplicasResult is the replicas section: headway's batched relay against
// a private Redis primary with one replica, without confirmation and with
// RelayConfig.Replicas 1 (WAIT after each batch); Ratio is against the
// relay without it.
type ReplicasResult struct {
	Section
	Cases []Case `json:"cases"`
}

func (b *bench) replicasSection(ctx context.Context) error {
	res := &ReplicasResult{Section: Section{LoadStart: loadAvg()}}
	b.rep.Replicas = res
	if err := migrateOutbox(ctx, b.pool); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "headway-bench-replicas-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	primary, err := startRedis(ctx, filepath.Join(dir, "primary"))
	if err != nil {
		return err
	}
	defer primary.stop()
	host, port, _ := strings.Cut(primary.addr, ":")
	replica, err := startRedis(ctx, filepath.Join(dir, "replica"), "--replicaof", host, port)
	if err != nil {
		return err
	}
	defer replica.stop()
	if err := awaitReplicaLink(ctx, replica.addr); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: primary.addr, ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()

	// The two cases run in turns, -repeat times each, and count by their
	// median.
	runs := map[int][]Case{}
	for r := range b.o.Repeat {
		for _, replicas := range []int{0, 1} {
			tag := fmt.Sprintf("replicas%d-%d", replicas, r+1)
			w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: b.prefix + tag + ":", Logger: b.quiet})
			if err != nil {
				return err
			}
			b.logf("replicas %d: filling %d rows", replicas, b.o.RelayN)
			if err := b.fillOutbox(ctx, w, tag, b.o.RelayN); err != nil {
				return err
			}
			b.quiesce(ctx)
			elapsed, err := b.relayDrain(ctx, rdb, replicas, func() {})
			if err != nil {
				return fmt.Errorf("replicas %d: %w", replicas, err)
			}
			c := newCase(fmt.Sprintf("batched relay, Replicas %d", replicas), b.o.RelayN, elapsed, CPU{})
			b.logf("replicas %d: %s rows/s", replicas, thousands(c.PerSec))
			runs[replicas] = append(runs[replicas], c)
		}
	}
	without, with := median(runs[0]), median(runs[1])
	without.Note = "no confirmation (the default)"
	with.Note = "WAIT 1 after each batch's appends, on the pipeline's connection"
	without.Ratio, with.Ratio = 1, with.PerSec/without.PerSec
	res.Cases = []Case{without, with}
	res.LoadEnd = loadAvg()

	sectionHeader(b.o.Out, "Replicas", res.LoadStart, fmt.Sprintf("a private primary and replica on loopback (no persistence); BatchSize %d; CPU not measured",
		cmp.Or(b.o.RelayBatch, outbox.DefaultBatchSize)))
	t := newTable("relay", "runs", "rows", "rows/s (median)", "range", "× without")
	for _, c := range res.Cases {
		rng := "—"
		if len(c.Runs) > 1 {
			rng = thousands(slices.Min(c.Runs)) + "–" + thousands(slices.Max(c.Runs))
		}
		t.add(c.Name, fmt.Sprint(max(1, len(c.Runs))), thousands(float64(c.Events)), thousands(c.PerSec), rng, ratio(c.Ratio))
	}
	t.write(b.o.Out)
	return nil
}

// privateRedis is a redis-server the bench started.
type privateRedis struct {
	addr string
	cmd  *exec.Cmd
}

// startRedis starts redis-server (from PATH) on a free loopback port,
// without persistence, in dir, with extra arguments, and waits for it.
func startRedis(ctx context.Context, dir string, extra ...string) (*privateRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("the replicas section needs redis-server in PATH: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &privateRedis{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %w", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the server's start
	}
}

func (p *privateRedis) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// awaitReplicaLink waits until the replica at addr has synchronised with
// its primary.
func awaitReplicaLink(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = c.Close() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if info, err := c.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling the replication link
	}
	return errors.New("the replica did not synchronise with its primary within 10s")
}
