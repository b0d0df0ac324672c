package status

import (
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

// Tone is the colour of a state's badge, also given in the JSON so that a
// client can colour the same way.
type Tone string

// Tones.
const (
	// ToneGood (green): moving, running, on schedule.
	ToneGood Tone = "good"
	// ToneWarn (amber): ready but worth a look (behind, idle, starting,
	// waiting), or on its way (pending, stopping).
	ToneWarn Tone = "warn"
	// ToneBad (red): not ready: stalled, failing, alert, wedged, overdue,
	// in backoff or stopped for good.
	ToneBad Tone = "bad"
	// ToneOff (grey): parked, held by its supervisor; the worker's own row
	// says why.
	ToneOff Tone = "off"
)

// stateTone is the tone of a loop's or a job's state.
func stateTone(s readiness.State) Tone {
	switch s {
	case readiness.StateProgressing, readiness.StateOK:
		return ToneGood
	case readiness.StateBehind, readiness.StateIdle, readiness.StateStarting, readiness.StateWaiting:
		return ToneWarn
	case readiness.StateParked:
		return ToneOff
	case readiness.StateStalled, readiness.StateFailing, readiness.StateAlert,
		readiness.StateWedged, readiness.StateOverdue:
		return ToneBad
	}
	if s.Ready() {
		return ToneWarn
	}
	return ToneBad
}

// serviceTone is the tone of a worker's state.
func serviceTone(s supervisor.ServiceState, ready bool) Tone {
	switch s {
	case supervisor.ServiceRunning:
		return ToneGood
	case supervisor.ServicePending, supervisor.ServiceStopping:
		return ToneWarn
	case supervisor.ServiceBackoff, supervisor.ServiceStopped:
		return ToneBad
	}
	if ready {
		return ToneWarn
	}
	return ToneBad
}
