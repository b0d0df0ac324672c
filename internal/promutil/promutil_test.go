package promutil_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/internal/promutil"
)

func newCounter(help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: help}, []string{"l"})
}

func TestRegister(t *testing.T) {
	if c, err := promutil.Register(nil, newCounter("h")); c == nil || err != nil {
		t.Fatalf("nil registerer: %v, %v", c, err)
	}

	reg := prometheus.NewRegistry()
	first, err := promutil.Register(reg, newCounter("h"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := promutil.Register(reg, newCounter("h"))
	if err != nil {
		t.Fatalf("second identical registration: %v", err)
	}
	if first != second {
		t.Fatal("second registration must return the collector already registered")
	}
	second.WithLabelValues("a").Inc()
	if v := testutil.ToFloat64(first.WithLabelValues("a")); v != 1 {
		t.Fatalf("shared series = %v, want 1", v)
	}

	if _, err := promutil.Register(reg, newCounter("other help")); err == nil {
		t.Fatal("a clashing collector must be an error")
	}
}
