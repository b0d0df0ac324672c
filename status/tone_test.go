package status

import (
	"testing"
	"time"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

func TestStateTone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		state readiness.State
		want  Tone
	}{
		{readiness.StateProgressing, ToneGood},
		{readiness.StateOK, ToneGood},
		{readiness.StateBehind, ToneWarn},
		{readiness.StateIdle, ToneWarn},
		{readiness.StateStarting, ToneWarn},
		{readiness.StateWaiting, ToneWarn},
		{readiness.StateStalled, ToneBad},
		{readiness.StateFailing, ToneBad},
		{readiness.StateAlert, ToneBad},
		{readiness.StateWedged, ToneBad},
		{readiness.StateOverdue, ToneBad},
		{readiness.StateParked, ToneOff},
		{readiness.State(99), ToneBad}, // unknown, not ready
	} {
		if got := stateTone(tt.state); got != tt.want {
			t.Errorf("stateTone(%v) = %q, want %q", tt.state, got, tt.want)
		}
	}
}

func TestServiceTone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		state supervisor.ServiceState
		ready bool
		want  Tone
	}{
		{supervisor.ServiceRunning, true, ToneGood},
		{supervisor.ServicePending, false, ToneWarn},
		{supervisor.ServiceStopping, false, ToneWarn},
		{supervisor.ServiceBackoff, false, ToneBad},
		{supervisor.ServiceStopped, false, ToneBad},
		{supervisor.ServiceState(99), false, ToneBad},
		{supervisor.ServiceState(99), true, ToneWarn},
	} {
		if got := serviceTone(tt.state, tt.ready); got != tt.want {
			t.Errorf("serviceTone(%v, %v) = %q, want %q", tt.state, tt.ready, got, tt.want)
		}
	}
}

func TestHuman(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{1234567 * time.Nanosecond, "1ms"},
		{350 * time.Millisecond, "350ms"},
		{time.Second, "1s"},
		{10 * time.Second, "10s"},
		{12500 * time.Millisecond, "12.5s"},
		{90 * time.Second, "1m30s"},
		{time.Hour + 2*time.Minute + 3400*time.Millisecond, "1h2m3s"},
		{50*time.Hour + 30*time.Second, "2d2h0m30s"},
		{24 * time.Hour, "1d"},
	} {
		if got := human(tt.d); got != tt.want {
			t.Errorf("human(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
