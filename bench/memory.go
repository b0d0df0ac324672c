package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// MemoryResult is the memory section: the process's RSS while one
// headway consumer drains a large backlog.
type MemoryResult struct {
	Section
	Entries        int     `json:"entries"`
	PrefillSeconds float64 `json:"prefill_seconds"`
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"per_second"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	// Samples counts the RSS samples (every 250 ms) taken after the first
	// 10% of the entries; RSSMin, RSSMedian and RSSMax are over them.
	Samples   int   `json:"samples"`
	RSSMin    int64 `json:"rss_min_bytes"`
	RSSMedian int64 `json:"rss_median_bytes"`
	RSSMax    int64 `json:"rss_max_bytes"`
	HeapMax   int64 `json:"heap_max_bytes"`
	// Flat: RSSMax is within 1.5 × RSSMedian.
	Flat bool `json:"flat"`
	CPU  CPU  `json:"cpu"`
}

func (b *bench) memorySection(ctx context.Context) error {
	res := &MemoryResult{Section: Section{LoadStart: loadAvg()}, Entries: b.o.MemoryN}
	b.rep.Memory = res
	stream := b.prefix + "memory:" + event.StreamKey(platform.StreamWallet)
	b.logf("pre-filling %d entries", res.Entries)
	start := time.Now()
	last, err := b.prefill(ctx, stream, res.Entries)
	if err != nil {
		return err
	}
	res.PrefillSeconds = time.Since(start).Seconds()
	b.quiesce(ctx)
	res.RSSBefore = rss()

	type sample struct {
		applied   int64
		rss, heap int64
	}
	var (
		samples []sample
		cnt     = newCounter(int64(res.Entries))
		stopped = make(chan struct{})
		sampled = make(chan struct{})
	)
	go func() { // every 250 ms, and once more when stopped
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopped:
				samples = append(samples, sample{cnt.n.Load(), rss(), heapObjects()})
				return
			case <-tick.C:
				samples = append(samples, sample{cnt.n.Load(), rss(), heapObjects()})
			}
		}
	}()
	b.logf("draining %d entries, sampling RSS every 250 ms", res.Entries)
	var elapsed time.Duration
	res.CPU, err = b.measure(ctx, "memory", func(end func()) (err error) {
		elapsed, err = b.drainOne(ctx, stream, last, cnt, nil, nil, end)
		return err
	})
	close(stopped)
	<-sampled
	if err != nil {
		return err
	}
	res.Seconds, res.PerSec = elapsed.Seconds(), float64(res.Entries)/elapsed.Seconds()
	var after []int64
	for _, s := range samples {
		res.HeapMax = max(res.HeapMax, s.heap)
		if s.applied >= int64(res.Entries/10) {
			after = append(after, s.rss)
		}
	}
	slices.Sort(after)
	res.Samples = len(after)
	if len(after) > 0 {
		res.RSSMin, res.RSSMedian, res.RSSMax = after[0], after[len(after)/2], after[len(after)-1]
		res.Flat = float64(res.RSSMax) <= 1.5*float64(res.RSSMedian)
	}
	res.LoadEnd = loadAvg()
	if err := b.rdb.Unlink(ctx, stream, stream+":dlq").Err(); err != nil {
		return err
	}

	sectionHeader(b.o.Out, "Memory", res.LoadStart, "RSS sampled every 250 ms after the first 10% of the entries; CPU in cores: this process / Redis / PostgreSQL / the rest of the machine / stolen by the hypervisor")
	t := newTable("backlog", "events/s", "RSS before", "samples", "RSS min", "RSS median", "RSS max", "max / median", "Go heap max", "CPU cores")
	t.add(thousands(float64(res.Entries)), thousands(res.PerSec), mib(res.RSSBefore), fmt.Sprint(res.Samples),
		mib(res.RSSMin), mib(res.RSSMedian), mib(res.RSSMax), ratio(float64(res.RSSMax)/float64(max(res.RSSMedian, 1))),
		mib(res.HeapMax), res.CPU.String())
	t.write(b.o.Out)
	b.rep.target(fmt.Sprintf("flat RSS draining a %s-entry backlog (max ≤ 1.5 × median)", thousands(float64(res.Entries))),
		res.Flat, "max %s, median %s over %d samples", mib(res.RSSMax), mib(res.RSSMedian), res.Samples)
	return nil
}
