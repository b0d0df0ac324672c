package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// ScaleResult is the scale section: one headway consumer per stream, all
// in this process on one go-redis client whose pool is sized for them.
type ScaleResult struct {
	Section
	Streams   int     `json:"streams"`
	PerStream int     `json:"entries_per_stream"`
	Events    int     `json:"events"`
	Seconds   float64 `json:"seconds"`
	PerSec    float64 `json:"per_second"`
	// RatioToRaw is PerSec over the drain section's raw ceiling, when the
	// drain section ran.
	RatioToRaw float64 `json:"ratio_to_raw,omitempty"`
	PoolSize   int     `json:"pool_size"`
	// PeakConns is the most connections the pool held while draining.
	PeakConns uint32 `json:"peak_conns"`
	// IdleInUse is the most connections checked out of the pool once every
	// stream was drained: the consumers' blocked reads.
	IdleInUse uint32 `json:"idle_in_use_conns"`
	// ClientList counts the client's connections in Redis's CLIENT LIST
	// once every stream was drained.
	ClientList   int    `json:"client_list_conns"`
	PoolWaits    uint32 `json:"pool_waits"`
	PoolTimeouts uint32 `json:"pool_timeouts"`
	RSSBefore    int64  `json:"rss_before_bytes"`
	RSSPeak      int64  `json:"rss_peak_bytes"`
	RSSAfter     int64  `json:"rss_after_bytes"`
	Goroutines   int    `json:"peak_goroutines"`
	CPU          CPU    `json:"cpu"`
}

func (b *bench) scaleSection(ctx context.Context) error {
	res := &ScaleResult{Section: Section{LoadStart: loadAvg()}, Streams: b.o.ScaleStreams, PerStream: b.o.ScaleN,
		PoolSize: b.o.ScalePool}
	b.rep.Scale = res
	name := "headway-bench-" + b.id + "-scale"
	rdb := b.redisClient("scale", b.o.ScalePool)
	defer func() { _ = rdb.Close() }()

	b.logf("pre-filling %d streams with %d entries each", res.Streams, res.PerStream)
	streams, lasts := make([]string, res.Streams), make([]string, res.Streams)
	for i := range streams {
		streams[i] = fmt.Sprintf("%sscale:%03d:%s", b.prefix, i, event.StreamKey(platform.StreamWallet))
		var err error
		if lasts[i], err = b.prefill(ctx, streams[i], res.PerStream); err != nil {
			return err
		}
	}
	res.Events = res.Streams * res.PerStream
	cnt := newCounter(int64(res.Events))
	h := cnt.handler(nil)
	consumers := make([]*consumer.Consumer, res.Streams)
	wms := make([]*readiness.Watermark, res.Streams)
	for i, s := range streams {
		c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: s, CatalogStream: platform.StreamWallet, Group: group,
			Consumer: "bench", Handlers: handlers(h), BatchSize: b.o.BatchSize, Concurrency: 8, Logger: b.quiet})
		if err != nil {
			return err
		}
		consumers[i], wms[i] = c, c.Watermark()
	}
	b.quiesce(ctx)
	res.RSSBefore = rss()

	var (
		mu      sync.Mutex
		idle    bool
		stopped = make(chan struct{})
		sampled = make(chan struct{})
	)
	go func() { // samples every 50 ms until stopped
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			st := rdb.PoolStats()
			mu.Lock()
			res.PeakConns = max(res.PeakConns, st.TotalConns)
			if idle {
				res.IdleInUse = max(res.IdleInUse, st.TotalConns-st.IdleConns)
			}
			res.RSSPeak = max(res.RSSPeak, rss())
			res.Goroutines = max(res.Goroutines, runtime.NumGoroutine())
			mu.Unlock()
			select {
			case <-stopped:
				return
			case <-tick.C:
			}
		}
	}()
	b.logf("draining with %d consumers on one client (PoolSize %d)", res.Streams, res.PoolSize)
	var svcs []*service
	var elapsed time.Duration
	cpu, err := b.measure(ctx, "scale", func(end func()) error {
		start := time.Now()
		for _, c := range consumers {
			svcs = append(svcs, goServe(ctx, cnt.failure, c.Serve))
		}
		err := awaitDrained(ctx, cnt, wms, lasts)
		elapsed = time.Since(start)
		end()
		return err
	})
	res.RSSAfter = rss()
	if err == nil {
		// Every stream is drained: each consumer now waits in a blocked
		// read of up to Block (1s). Watch the pool for longer than that.
		mu.Lock()
		idle = true
		mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		var list string
		if list, err = b.rdb.ClientList(ctx).Result(); err == nil {
			res.ClientList = strings.Count(list, " name="+name+" ")
		}
	}
	close(stopped)
	<-sampled
	if serr := stopAll(svcs); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	st := rdb.PoolStats()
	res.PoolWaits, res.PoolTimeouts = st.WaitCount, st.Timeouts
	res.Seconds, res.PerSec, res.CPU = elapsed.Seconds(), float64(res.Events)/elapsed.Seconds(), cpu
	if b.rep.Drain != nil {
		res.RatioToRaw = res.PerSec / b.rep.Drain.Ceiling
	}
	res.LoadEnd = loadAvg()
	for _, s := range streams {
		if err := b.rdb.Unlink(ctx, s, s+":dlq").Err(); err != nil {
			return err
		}
	}

	sectionHeader(b.o.Out, "Scale", res.LoadStart, "CPU in cores: this process / Redis / PostgreSQL / the rest of the machine / stolen by the hypervisor")
	t := newTable("consumers × entries", "events/s", "× raw", "pool size", "peak conns", "in use when idle",
		"CLIENT LIST", "pool waits", "pool timeouts", "RSS before", "RSS peak", "RSS after", "goroutines", "CPU cores")
	t.add(fmt.Sprintf("%d × %s", res.Streams, thousands(float64(res.PerStream))), thousands(res.PerSec), ratio(res.RatioToRaw),
		fmt.Sprint(res.PoolSize), fmt.Sprint(res.PeakConns), fmt.Sprint(res.IdleInUse), fmt.Sprint(res.ClientList),
		fmt.Sprint(res.PoolWaits), fmt.Sprint(res.PoolTimeouts), mib(res.RSSBefore), mib(res.RSSPeak),
		mib(res.RSSAfter), fmt.Sprint(res.Goroutines), res.CPU.String())
	t.write(b.o.Out)
	b.rep.target(fmt.Sprintf("%d consumers in one process within the pool (PoolSize %d)", res.Streams, res.PoolSize),
		int(res.PeakConns) <= res.PoolSize && res.PoolTimeouts == 0,
		"peak %d connections, %d in use when idle, %d pool timeouts", res.PeakConns, res.IdleInUse, res.PoolTimeouts)
	return nil
}

// stopAll cancels every service, then waits for all of them: each may
// take up to a blocked read to notice.
func stopAll(svcs []*service) error {
	for _, s := range svcs {
		s.cancel()
	}
	var errs []error
	for _, s := range svcs {
		errs = append(errs, s.stop())
	}
	return errors.Join(errs...)
}
