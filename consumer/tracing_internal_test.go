package consumer

import (
	"context"
	"testing"
	"time"
)

// TestTracingOffAllocatesNothing: without a TracerProvider the tracing of
// a batch — starting and ending its entries' spans, the attempt context's
// span lookup — allocates nothing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	c := &Consumer{tr: newTracing(Config{})}
	if c.tr != nil {
		t.Fatal("tracing without a TracerProvider")
	}
	items := make([]item, 100)
	a := newAttemptContext(context.Background(), time.Now().Add(time.Minute))
	type key struct{}
	if n := testing.AllocsPerRun(100, func() {
		c.startSpans(items)
		_ = a.Value(key{})
		c.endSpans(items)
	}); n != 0 {
		t.Errorf("%v allocations per batch with tracing off, want 0", n)
	}
}
