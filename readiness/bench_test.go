package readiness

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Baseline for the watermark updates: a plain atomic store.
func BenchmarkBaselineAtomicStore(b *testing.B) {
	var v atomic.Int64
	var i int64
	b.ReportAllocs()
	for b.Loop() {
		i++
		v.Store(i)
	}
}

// Baseline for the watermark updates: reading the clock, which every
// update but SetBacklog does once.
func BenchmarkBaselineTimeNow(b *testing.B) {
	var v atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		v.Store(time.Now().UnixNano())
	}
}

func benchWatermark(b *testing.B) *Watermark {
	w, err := NewWatermark(WatermarkConfig{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func BenchmarkWatermarkHeartbeat(b *testing.B) {
	w := benchWatermark(b)
	b.ReportAllocs()
	for b.Loop() {
		w.Heartbeat()
	}
}

// BenchmarkWatermarkProgress reports progress with a stream ID as text, the
// consumer's hot-path call.
func BenchmarkWatermarkProgress(b *testing.B) {
	w := benchWatermark(b)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("1778846400%03d-%d", i, i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.Progress(ids[i&1023])
		i++
	}
}

func BenchmarkWatermarkSetBacklog(b *testing.B) {
	w := benchWatermark(b)
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		n++
		w.SetBacklog(n & 1023) // grows, then falls to zero every 1024
	}
}

func BenchmarkWatermarkSucceed(b *testing.B) {
	w := benchWatermark(b)
	b.ReportAllocs()
	for b.Loop() {
		w.Succeed()
	}
}

func BenchmarkWatermarkFail(b *testing.B) {
	w := benchWatermark(b)
	err := errors.New("boom")
	b.ReportAllocs()
	for b.Loop() {
		w.Fail(err)
	}
}

// BenchmarkWatermarkProgressParallel: every goroutine reports into one
// watermark (a consumer with parallel handlers), the contended case.
func BenchmarkWatermarkProgressParallel(b *testing.B) {
	w := benchWatermark(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Progress("1778846400000-0")
		}
	})
}

// BenchmarkReady serves GET /ready with n loops (and no other check), all
// ready (the common case) or all stalled (every check formats a reason).
func BenchmarkReady(b *testing.B) {
	for _, n := range []int{1, 1000} {
		for _, stalled := range []bool{false, true} {
			name := fmt.Sprintf("loops=%d/ready", n)
			if stalled {
				name = fmt.Sprintf("loops=%d/stalled", n)
			}
			b.Run(name, func(b *testing.B) {
				p, err := NewProbes(ProbesConfig{})
				if err != nil {
					b.Fatal(err)
				}
				base := time.Now()
				for i := range n {
					w, err := NewWatermark(WatermarkConfig{Name: fmt.Sprintf("loop-%04d", i)})
					if err != nil {
						b.Fatal(err)
					}
					if stalled {
						w.start = base.Add(-time.Hour) // started an hour ago, never progressed
					}
					w.Heartbeat()
					w.SetBacklog(int64(i) + 1)
					if !stalled {
						w.Progress("1778846400000-0")
					}
					if err := p.AddLoop(w); err != nil {
						b.Fatal(err)
					}
				}
				want := http.StatusOK
				if stalled {
					want = http.StatusServiceUnavailable
				}
				req := httptest.NewRequest(http.MethodGet, "/ready", nil)
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					p.ServeHTTP(rec, req)
					if rec.Code != want {
						b.Fatalf("GET /ready = %d, want %d", rec.Code, want)
					}
				}
			})
		}
	}
}
