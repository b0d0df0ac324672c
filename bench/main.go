// Command bench measures headway side by side with what it is compared
// with, against one Redis (and one PostgreSQL for the inbox and the relay),
// in one process and one run, so that every figure can be read as a ratio
// against a ceiling or baseline measured next to it:
//
//	cd bench && go run . [-n 200000] [-only drain,relay,replicas,e2e,scale,memory] [-json out.json]
//
// The sections:
//
//   - drain: N pre-filled entries drained by raw go-redis (XREADGROUP
//     COUNT 500 and one XACK per batch, nothing decoded: the ceiling),
//     headway without dedup, headway with the Redis dedup store (these
//     three run -repeat times, interleaved, and count by their median),
//     headway with the PostgreSQL inbox and a handler that inserts one row
//     in the inbox transaction, and Watermill's redisstream subscriber;
//   - relay: outbox rows/s of a one-row-per-transaction relay (the
//     baseline) and of headway's batched relay;
//   - replicas: headway's batched relay against a private primary with
//     one replica (redis-server from PATH), without confirmation (the
//     baseline) and confirming each batch on the replica (WAIT);
//   - e2e: commit → handler latency through the outbox, the relay (woken
//     by NOTIFY) and a consumer, at a steady write rate;
//   - scale: 100 streams, one headway consumer each, in one process on one
//     go-redis client with a sized pool: events/s, Redis connections, RSS;
//   - memory: the process's RSS while one headway consumer drains a
//     1M-entry backlog.
//
// Each table gives the CPU every measured run used: this process, Redis,
// the local PostgreSQL, other processes and the hypervisor's steal. A run
// that other processes or the hypervisor disturbed is made again, up to
// three times in all.
//
// Every run uses a key prefix and a PostgreSQL schema of its own, and
// deletes both at the end. The module is separate from headway's, so
// headway's go.mod never depends on the libraries it is compared with.
// The figures and what bounds them are in docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// sections in the order they run.
var sections = []string{"drain", "relay", "replicas", "e2e", "scale", "memory"}

// options are the command's flags.
type options struct {
	RedisAddr    string   `json:"redis"`
	DatabaseURL  string   `json:"-"`
	N            int      `json:"n"`           // drain: entries per case
	WatermillN   int      `json:"watermill_n"` // drain: entries for Watermill (0: N)
	BatchSize    int      `json:"batch_size"`  // headway consumers' BatchSize (0: headway's default)
	Repeat       int      `json:"repeat"`      // drain: runs of the raw and headway-only cases
	RelayN       int      `json:"relay_n"`     // relay: rows per relay
	RelayBatch   int      `json:"relay_batch"` // the relays' BatchSize (0: headway's default)
	Rate         int      `json:"rate"`        // e2e: events/s
	Seconds      int      `json:"seconds"`     // e2e: seconds of writing
	ScaleStreams int      `json:"scale_streams"`
	ScaleN       int      `json:"scale_n"`    // scale: entries per stream
	ScalePool    int      `json:"scale_pool"` // scale: the shared client's PoolSize
	MemoryN      int      `json:"memory_n"`
	Only         []string `json:"only"`
	Commit       string   `json:"-"`                    // headway's commit for the report ("": git log -1 here)
	JSON         string   `json:"-"`                    // output file, "" for none
	CPUProfile   string   `json:"cpuprofile,omitempty"` // path template: "cpu.pprof" gives cpu-<case>.pprof
	MemProfile   string   `json:"memprofile,omitempty"` // path template, as CPUProfile

	Out io.Writer `json:"-"` // tables
	Log io.Writer `json:"-"` // progress
}

func defaultOptions() options {
	return options{
		RedisAddr:    "127.0.0.1:6379",
		DatabaseURL:  "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		N:            200_000,
		Repeat:       3,
		RelayN:       20_000,
		Rate:         1000,
		Seconds:      10,
		ScaleStreams: 100,
		ScaleN:       2000,
		ScalePool:    128,
		MemoryN:      1_000_000,
		Only:         sections,
		Out:          os.Stdout,
		Log:          os.Stderr,
	}
}

func (o *options) validate() error {
	for _, s := range o.Only {
		if !slices.Contains(sections, s) {
			return fmt.Errorf("-only: unknown section %q (want some of %s)", s, strings.Join(sections, ","))
		}
	}
	for name, v := range map[string]int{"-n": o.N, "-repeat": o.Repeat, "-relay-n": o.RelayN, "-rate": o.Rate, "-seconds": o.Seconds,
		"-scale-streams": o.ScaleStreams, "-scale-n": o.ScaleN, "-scale-pool": o.ScalePool, "-memory-n": o.MemoryN} {
		if v <= 0 {
			return fmt.Errorf("%s must be positive, not %d", name, v)
		}
	}
	if o.WatermillN < 0 || o.BatchSize < 0 || o.RelayBatch < 0 {
		return fmt.Errorf("-watermill-n, -batch-size and -relay-batch must not be negative")
	}
	return nil
}

func (o *options) runs(section string) bool { return slices.Contains(o.Only, section) }

func main() { os.Exit(cli(os.Args[1:])) }

func cli(args []string) int {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.RedisAddr, "redis", o.RedisAddr, "Redis address (host:port)")
	fs.StringVar(&o.DatabaseURL, "database-url", o.DatabaseURL, "PostgreSQL URL (drain's inbox case, relay, e2e)")
	fs.IntVar(&o.N, "n", o.N, "drain: entries per case")
	fs.IntVar(&o.WatermillN, "watermill-n", o.WatermillN, "drain: entries for Watermill (0: -n)")
	fs.IntVar(&o.Repeat, "repeat", o.Repeat, "drain: runs of the raw, headway and Redis dedup cases (the median counts)")
	fs.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "BatchSize of every headway consumer (0: headway's default)")
	fs.IntVar(&o.RelayN, "relay-n", o.RelayN, "relay: rows drained by each relay")
	fs.IntVar(&o.RelayBatch, "relay-batch", o.RelayBatch, "BatchSize of headway's relays (0: headway's default)")
	fs.IntVar(&o.Rate, "rate", o.Rate, "e2e: events written per second")
	fs.IntVar(&o.Seconds, "seconds", o.Seconds, "e2e: seconds of writing")
	fs.IntVar(&o.ScaleStreams, "scale-streams", o.ScaleStreams, "scale: streams, one consumer each")
	fs.IntVar(&o.ScaleN, "scale-n", o.ScaleN, "scale: entries per stream")
	fs.IntVar(&o.ScalePool, "scale-pool", o.ScalePool, "scale: PoolSize of the one shared go-redis client")
	fs.IntVar(&o.MemoryN, "memory-n", o.MemoryN, "memory: backlog drained while RSS is sampled")
	only := fs.String("only", strings.Join(sections, ","), "comma-separated sections to run")
	fs.StringVar(&o.JSON, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.Commit, "commit", "", "headway's commit, for the report (default: git log -1 of the working directory)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile per measured case: cpu.pprof gives cpu-<case>.pprof")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile after each measured case: mem.pprof gives mem-<case>.pprof")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Only = strings.Split(*only, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}
