package readiness

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWatermarkRules(t *testing.T) {
	t.Parallel()
	boom := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	tests := []struct {
		name   string
		run    func(w *Watermark, c *fakeClock)
		want   State
		reason string // exact when it does not end in "…", else a prefix
	}{
		{
			name:   "new loop is starting",
			run:    func(w *Watermark, c *fakeClock) {},
			want:   StateStarting,
			reason: "starting: no progress yet, started 0s ago (window 30s), backlog unknown",
		},
		{
			name: "unknown backlog counts as backlog",
			run: func(w *Watermark, c *fakeClock) {
				c.Advance(31 * time.Second)
				w.Heartbeat()
			},
			want:   StateStalled,
			reason: "stalled: backlog unknown, no progress since start 31s ago (window 30s)",
		},
		{
			name: "negative backlog is unknown",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(0)
				w.SetBacklog(-1)
				c.Advance(31 * time.Second)
				w.Heartbeat()
			},
			want:   StateStalled,
			reason: "stalled: backlog unknown, no progress for 31s (window 30s)",
		},
		{
			name: "idle for one hour stays ready",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1700000000000-0")
				for range 60 {
					c.Advance(time.Minute)
					w.Succeed()
					w.SetBacklog(0)
				}
			},
			want:   StateIdle,
			reason: "idle: no backlog, last progress 1h0m0s ago",
		},
		{
			name: "idle without any progress",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				c.Advance(50 * time.Second)
				w.Heartbeat()
			},
			want:   StateIdle,
			reason: "idle: no backlog, no progress since start",
		},
		{
			name: "backlog without progress stalls after the window",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(1200)
				c.Advance(45 * time.Second)
				w.Heartbeat()
			},
			want:   StateStalled,
			reason: "stalled: backlog 1200, no progress for 45s (window 30s)",
		},
		{
			name: "progress exactly one window ago still counts",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(1200)
				c.Advance(30 * time.Second)
			},
			want:   StateProgressing,
			reason: "progressing: last progress 30s ago at 1-0, backlog 1200",
		},
		{
			name: "stalled loop recovers on progress",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(1200)
				c.Advance(45 * time.Second)
				w.Progress("2-0")
				w.SetBacklog(1100)
				c.Advance(time.Second)
			},
			want:   StateProgressing,
			reason: "progressing: last progress 1s ago at 2-0, backlog 1100",
		},
		{
			name: "backlog that just appeared after idle is not a stall yet",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				c.Advance(time.Hour)
				w.Heartbeat()
				w.SetBacklog(0)
				c.Advance(10 * time.Second)
				w.SetBacklog(5)
				w.Heartbeat()
				c.Advance(10 * time.Second)
			},
			want:   StateIdle,
			reason: "idle: caught up 20s ago, backlog 5 since (window 30s), last progress 1h0m20s ago",
		},
		{
			name: "backlog that appeared after idle stalls one window after catching up",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				c.Advance(time.Hour)
				w.Heartbeat()
				w.SetBacklog(0)
				c.Advance(10 * time.Second)
				w.SetBacklog(5)
				c.Advance(21 * time.Second)
				w.Heartbeat()
			},
			want:   StateStalled,
			reason: "stalled: backlog 5, no progress since caught up 31s ago (window 30s)",
		},
		{
			name: "failures below the bound stay ready",
			run: func(w *Watermark, c *fakeClock) {
				w.Fail(boom)
				w.Fail(boom)
			},
			want: StateStarting,
		},
		{
			name: "failures at the bound are failing",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.Fail(errors.New("old"))
				w.Fail(boom)
				w.Fail(nil)
			},
			want:   StateFailing,
			reason: "failing: 3 consecutive failures (bound 3), last error: dial tcp 127.0.0.1:6379: connection refused",
		},
		{
			name: "a success resets the failures",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				for range 5 {
					w.Fail(boom)
				}
				w.Succeed()
			},
			want: StateIdle,
		},
		{
			name: "progress resets the failures",
			run: func(w *Watermark, c *fakeClock) {
				for range 5 {
					w.Fail(boom)
				}
				w.Progress("")
			},
			want: StateProgressing,
		},
		{
			name: "no heartbeat within the liveness window is wedged",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(0)
				c.Advance(61 * time.Second)
			},
			want:   StateWedged,
			reason: "wedged: no heartbeat for 1m1s (liveness window 1m0s)",
		},
		{
			name: "no heartbeat at all is wedged after the liveness window",
			run: func(w *Watermark, c *fakeClock) {
				c.Advance(2 * time.Minute)
			},
			want:   StateWedged,
			reason: "wedged: no heartbeat since start 2m0s ago (liveness window 1m0s)",
		},
		{
			name: "wedged wins over alert and failures",
			run: func(w *Watermark, c *fakeClock) {
				for range 5 {
					w.Fail(boom)
				}
				w.Alert("legacy", c.Now().Add(time.Hour))
				c.Advance(61 * time.Second)
			},
			want: StateWedged,
		},
		{
			name: "a heartbeat revives a wedged loop",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				c.Advance(2 * time.Minute)
				w.Heartbeat()
			},
			want: StateIdle,
		},
		{
			name: "alert holds the loop not ready",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				w.Alert("legacy schema_version 1 on events:{wallet}", c.Now().Add(time.Minute))
				c.Advance(15 * time.Second)
				w.Heartbeat()
			},
			want:   StateAlert,
			reason: "alert: legacy schema_version 1 on events:{wallet} (held for 45s more)",
		},
		{
			name: "a stall during an alert hold is a stall",
			run: func(w *Watermark, c *fakeClock) {
				w.Progress("1-0")
				w.SetBacklog(1000)
				// a trickle of legacy events keeps the hold up
				for range 4 {
					w.Alert("legacy schema_version 1 on events:{wallet}", c.Now().Add(5*time.Minute))
					c.Advance(15 * time.Second)
					w.Heartbeat()
				}
			},
			want:   StateStalled,
			reason: "stalled: backlog 1000, no progress for 1m0s (window 30s)",
		},
		{
			name: "failures during an alert hold are failing",
			run: func(w *Watermark, c *fakeClock) {
				w.Alert("legacy", c.Now().Add(time.Hour))
				for range 5 {
					w.Fail(boom)
				}
			},
			want:   StateFailing,
			reason: "failing: 5 consecutive failures (bound 3), last error: dial tcp 127.0.0.1:6379: connection refused",
		},
		{
			name: "an alert hold wins over behind",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(100)
				w.Alert("legacy", c.Now().Add(time.Hour))
				for i := range 31 {
					c.Advance(time.Second)
					w.Progress("x")
					w.SetBacklog(int64(100 + 10*(i+1)))
				}
			},
			want: StateAlert,
		},
		{
			name: "alerts extend, never shorten, and keep the latest reason",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				w.Alert("first", c.Now().Add(time.Minute))
				w.Alert("second", c.Now().Add(10*time.Second))
				c.Advance(30 * time.Second)
				w.Heartbeat()
			},
			want:   StateAlert,
			reason: "alert: second (held for 30s more)",
		},
		{
			name: "alert expires",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				w.Alert("legacy", c.Now().Add(10*time.Second))
				c.Advance(11 * time.Second)
				w.Heartbeat()
			},
			want: StateIdle,
		},
		{
			name: "ClearAlert ends the hold",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(0)
				w.Alert("legacy", c.Now().Add(time.Hour))
				w.ClearAlert()
			},
			want: StateIdle,
		},
		{
			name: "backlog growing across the window while progressing is behind",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(100)
				for i := range 31 {
					c.Advance(time.Second)
					w.Progress("x")
					w.SetBacklog(int64(100 + 10*(i+1)))
				}
			},
			want:   StateBehind,
			reason: "behind: backlog grew from 100 to 410 over 31s while progressing (window 30s)",
		},
		{
			name: "backlog that fell once within the window is not behind",
			run: func(w *Watermark, c *fakeClock) {
				w.SetBacklog(100)
				for i := range 31 {
					c.Advance(time.Second)
					w.Progress("x")
					n := int64(100 + 10*(i+1))
					if i == 20 {
						n = 50
					}
					w.SetBacklog(n)
				}
			},
			want: StateProgressing,
		},
		{
			name: "a flat backlog is not behind",
			run: func(w *Watermark, c *fakeClock) {
				for range 40 {
					c.Advance(time.Second)
					w.Progress("x")
					w.SetBacklog(100)
				}
			},
			want: StateProgressing,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, clk := newTestWatermark(t, "wallet")
			tt.run(w, clk)
			st := w.Status()
			if st.State != tt.want {
				t.Fatalf("state = %v (%s), want %v", st.State, st.Reason, tt.want)
			}
			if tt.reason != "" && st.Reason != tt.reason {
				t.Errorf("reason = %q\nwant     %q", st.Reason, tt.reason)
			}
			if st.Ready() != tt.want.Ready() || st.Live() != tt.want.Live() {
				t.Errorf("Ready/Live = %v/%v, want %v/%v", st.Ready(), st.Live(), tt.want.Ready(), tt.want.Live())
			}
			err := w.readyCheck()
			if (err == nil) != tt.want.Ready() {
				t.Errorf("readyCheck() = %v, want ready %v", err, tt.want.Ready())
			}
			if err != nil && (err.Error() != st.Reason || !errors.Is(err, ErrNotReady)) {
				t.Errorf("readyCheck() = %q, want the reason %q matching ErrNotReady", err, st.Reason)
			}
		})
	}
}

func TestStateReadyLive(t *testing.T) {
	t.Parallel()
	ready := map[State]bool{
		StateStarting: true, StateProgressing: true, StateIdle: true, StateBehind: true,
		StateStalled: false, StateFailing: false, StateAlert: false, StateWedged: false, StateParked: false,
		StateWaiting: true, StateOK: true, StateOverdue: false,
	}
	for s, want := range ready {
		if s.Ready() != want {
			t.Errorf("%v.Ready() = %v, want %v", s, s.Ready(), want)
		}
		if s.Live() != (s != StateWedged) {
			t.Errorf("%v.Live() = %v", s, s.Live())
		}
		if strings.HasPrefix(s.String(), "state(") {
			t.Errorf("%d has no name", s)
		}
	}
	if got := State(99).String(); got != "state(99)" {
		t.Errorf("State(99) = %q", got)
	}
	if (Status{State: StateIdle}).Err() != nil {
		t.Error("ready status has an error")
	}
	if err := (Status{State: StateStalled, Reason: "stalled: x"}).Err(); err == nil || err.Error() != "stalled: x" || !errors.Is(err, ErrNotReady) {
		t.Errorf("Err() = %v", err)
	}
}

func TestFailureBoundDisabled(t *testing.T) {
	t.Parallel()
	clk := newClock()
	w, err := NewWatermark(WatermarkConfig{Name: "x", FailureBound: -1, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	w.SetBacklog(0)
	for range 100 {
		w.Fail(errors.New("boom"))
	}
	if st := w.Status(); st.State != StateIdle {
		t.Fatalf("state = %v (%s), want idle", st.State, st.Reason)
	}
}

func TestWatermarkDefaults(t *testing.T) {
	t.Parallel()
	clk := newClock()
	w, err := NewWatermark(WatermarkConfig{Name: "x", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	w.Progress("1")
	w.SetBacklog(7)
	clk.Advance(DefaultStallWindow)
	w.Heartbeat()
	if st := w.Status(); st.State != StateProgressing {
		t.Fatalf("at the default stall window: %v", st.Reason)
	}
	clk.Advance(time.Millisecond)
	if st := w.Status(); st.State != StateStalled {
		t.Fatalf("past the default stall window: %v", st.Reason)
	}
	clk.Advance(DefaultLivenessWindow)
	if st := w.Status(); st.State != StateWedged {
		t.Fatalf("past the default liveness window: %v", st.Reason)
	}
	w.Heartbeat()
	for range DefaultFailureBound - 1 {
		w.Fail(nil)
	}
	w.SetBacklog(0)
	if st := w.Status(); st.State != StateIdle {
		t.Fatalf("below the default failure bound: %v", st.Reason)
	}
	w.Fail(nil)
	if st := w.Status(); st.State != StateFailing || st.Reason != "failing: 5 consecutive failures (bound 5)" {
		t.Fatalf("at the default failure bound: %v %q", st.State, st.Reason)
	}
}
