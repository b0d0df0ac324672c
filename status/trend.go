package status

import (
	"context"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/headwaylabs/headway/readiness"
)

// Defaults of the trends kept for the page ([Config]).
const (
	DefaultTrendInterval = 10 * time.Second
	DefaultTrendWindow   = 15 * time.Minute
)

// maxTrendSamples bounds a loop's ring (and a chart's points).
const maxTrendSamples = 1000

// sample is one loop's counters at one moment, with the rate of work
// done since the sample before.
type sample struct {
	at       time.Time
	workDone uint64
	rate     float64
	hasRate  bool // a sample before it, earlier
	backlog  int64
	known    bool // backlog measured
}

// ring keeps the last samples of one loop, oldest first from next.
type ring struct {
	buf  []sample
	next int
	n    int
}

// add appends s, with its rate from the newest sample before it.
func (r *ring) add(s sample) {
	if r.n > 0 {
		prev := r.buf[(r.next-1+len(r.buf))%len(r.buf)]
		if dt := s.at.Sub(prev.at).Seconds(); dt > 0 {
			s.hasRate = true
			if s.workDone > prev.workDone {
				s.rate = float64(s.workDone-prev.workDone) / dt
			}
		}
	}
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

// each calls f with the samples, oldest first.
func (r *ring) each(f func(sample)) {
	for i := range r.n {
		f(r.buf[(r.next-r.n+i+len(r.buf))%len(r.buf)])
	}
}

// trends samples every loop of the probes at a fixed interval and keeps a
// window of samples per loop, in fixed-size rings: memory does not grow
// with time, only with the number of loops.
type trends struct {
	interval time.Duration
	size     int // samples per ring: window / interval + 1
	mu       sync.Mutex
	loops    map[string]*ring
}

func newTrends(interval, window time.Duration) *trends {
	return &trends{interval: interval, size: int(window/interval) + 1, loops: map[string]*ring{}}
}

// record takes one sample of each loop at now.
func (t *trends) record(loops []*readiness.Watermark, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, wm := range loops {
		snap := wm.Snapshot()
		r := t.loops[snap.Name]
		if r == nil {
			r = &ring{buf: make([]sample, t.size)}
			t.loops[snap.Name] = r
		}
		r.add(sample{at: now, workDone: snap.WorkDone, backlog: snap.Backlog, known: snap.BacklogKnown})
	}
}

// Trend is a loop's recent past, one point per sampling interval, oldest
// first.
type Trend struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	Points          []Point `json:"points"`
}

// Point is one sample of a loop. Rate is the work done per second since
// the sample before (entries a consumer settled, rows a relay published),
// null for the loop's first sample; Backlog is null when it was unknown.
type Point struct {
	At      time.Time `json:"at"`
	Rate    *float64  `json:"rate"`
	Backlog *int64    `json:"backlog"`
}

// trend returns the points of loop name; nil when it has no sample yet.
func (t *trends) trend(name string) *Trend {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.loops[name]
	if r == nil || r.n == 0 {
		return nil
	}
	tr := &Trend{IntervalSeconds: t.interval.Seconds(), Points: make([]Point, 0, r.n)}
	r.each(func(s sample) {
		p := Point{At: s.at.UTC()}
		if s.hasRate {
			p.Rate = &s.rate
		}
		if s.known {
			p.Backlog = &s.backlog
		}
		tr.Points = append(tr.Points, p)
	})
	return tr
}

// Record samples every loop of Config.Probes now, for the trend charts.
// [Handler.Run] calls it every Config.TrendInterval; call it yourself
// only to sample at moments of your own (tests do).
func (h *Handler) Record() {
	if h.trends == nil || h.cfg.Probes == nil {
		return
	}
	h.trends.record(h.cfg.Probes.Loops(), h.cfg.Now())
}

// Run samples the loops every Config.TrendInterval until ctx ends, and
// returns nil then: the page's charts show what it recorded. A service
// runs it beside its HTTP server (package service does); a page whose
// Run never runs shows no charts. It returns at once when trends are off
// (a negative TrendInterval).
func (h *Handler) Run(ctx context.Context) error {
	if h.trends == nil {
		return nil
	}
	h.Record()
	tick := time.NewTicker(h.trends.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			h.Record()
		}
	}
}

// Chart sizes, in CSS pixels.
const (
	chartWidth  = 132
	chartHeight = 26
)

// spark draws values (nil: unknown) as an inline SVG line chart scaled to
// their maximum, with gaps where a value is unknown; class styles it,
// label names what is drawn, unit follows the maximum in the caption. The
// SVG holds numbers the code computed, a fixed class and an escaped
// caption, so it is safe as HTML. The chart has slots points across, one
// per sample of the window, and the values fill its right end: the time
// scale is the same for every loop, however long it has been sampled.
func spark(class, label, unit string, values []*float64, window time.Duration, slots int) template.HTML {
	hi, seen := 0.0, false
	for _, v := range values {
		if v != nil {
			hi, seen = max(hi, *v), true
		}
	}
	caption := label + ": no data yet"
	if seen {
		caption = fmt.Sprintf("%s, last %s: max %s%s", label, span(window), short(hi), unit)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark %s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		class, chartWidth, chartHeight, chartWidth, chartHeight, template.HTMLEscapeString(caption))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(caption))
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" class="base"/>`, chartHeight-1, chartWidth, chartHeight-1)
	slots = max(slots, len(values), 2)
	step := float64(chartWidth-2) / float64(slots-1)
	first := slots - len(values)
	var pts []string
	flush := func() {
		switch len(pts) {
		case 0:
		case 1: // a lone point between gaps: a dot
			xy := strings.Split(pts[0], ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="1.5"/>`, xy[0], xy[1])
		default:
			fmt.Fprintf(&b, `<polyline points="%s"/>`, strings.Join(pts, " "))
		}
		pts = pts[:0]
	}
	for i, v := range values {
		if v == nil {
			flush()
			continue
		}
		y := float64(chartHeight - 2)
		if hi > 0 {
			y -= *v / hi * float64(chartHeight-4)
		}
		pts = append(pts, strconv.FormatFloat(1+float64(first+i)*step, 'f', 1, 64)+","+strconv.FormatFloat(y, 'f', 1, 64))
	}
	flush()
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and escaped text only
}

// span shows a chart's window: in minutes or hours when whole, else as
// human does.
func span(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + " h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min"
	}
	return human(d)
}

// short shows a chart's maximum: whole numbers as they are, others
// rounded to a whole number from 10 on, to one decimal from 1 on, to two
// significant digits below.
func short(v float64) string {
	switch {
	case v == float64(int64(v)):
		return strconv.FormatInt(int64(v), 10)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// slots is the number of samples a full window of t holds.
func slots(t *Trend, window time.Duration) int {
	if t.IntervalSeconds <= 0 {
		return len(t.Points)
	}
	return int(window.Seconds()/t.IntervalSeconds) + 1
}

// rateChart and backlogChart draw a trend's rate and backlog.
func rateChart(t *Trend, window time.Duration) template.HTML {
	vals := make([]*float64, 0, len(t.Points))
	for _, p := range t.Points {
		vals = append(vals, p.Rate)
	}
	return spark("rate", "done per second", "/s", vals, window, slots(t, window))
}

func backlogChart(t *Trend, window time.Duration) template.HTML {
	vals := make([]*float64, 0, len(t.Points))
	for _, p := range t.Points {
		if p.Backlog == nil {
			vals = append(vals, nil)
			continue
		}
		v := float64(*p.Backlog)
		vals = append(vals, &v)
	}
	return spark("backlog", "backlog", "", vals, window, slots(t, window))
}
