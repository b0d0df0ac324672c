package status

import (
	"time"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

// Snapshot is everything the page shows, read from in-memory state in one
// pass (each worker, loop and job and the verdict are read one after the
// other, without a lock across them, so a change in between can make the
// banner and a row briefly disagree); ?format=json serves it as it is. Times are in UTC; ages count back from RenderedAt.
// Lists keep the order in which their items were added, and are empty
// (never null) when there is nothing to list.
type Snapshot struct {
	Title string `json:"title"`
	// Ready is the overall verdict: every check of Config.Probes passes
	// ([readiness.Probes.Check]), or, without Probes, every worker is
	// ready. NotReady lists each failing check as "<check>: <reason>".
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready"`
	// Tree is the name of the supervision tree; "" without one.
	Tree          string    `json:"tree,omitempty"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	RenderedAt    time.Time `json:"rendered_at"`
	Workers       []Worker  `json:"workers"`
	Loops         []Loop    `json:"loops"`
	Jobs          []Job     `json:"jobs"`
}

// Worker is one supervised worker, from [supervisor.ServiceStatus].
type Worker struct {
	Name string `json:"name"`
	// State is the [supervisor.ServiceState] in words: pending, running,
	// backoff, stopped or stopping.
	State  string `json:"state"`
	Ready  bool   `json:"ready"`
	Tone   Tone   `json:"tone"`
	Reason string `json:"reason"`
	// Starts counts the times its Serve was entered; Failures the times
	// it ended unexpectedly (each one a restart, unless it stopped for
	// good).
	Starts    uint64 `json:"starts"`
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error,omitempty"`
	// Loop is the state of the loop the worker reports into
	// (Config.WorkerLoops); absent for a worker without one.
	Loop *WorkerLoop `json:"loop,omitempty"`
}

// WorkerLoop is the state of a worker's loop, as its row in Loops shows
// it. A loop that Config.WorkerLoops names but the probes do not have is
// shown with the state "unknown".
type WorkerLoop struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Ready  bool   `json:"ready"`
	Tone   Tone   `json:"tone"`
	Reason string `json:"reason"`
}

// Loop is one loop's watermark ([readiness.Watermark]), judged by
// [readiness.Watermark.Status].
type Loop struct {
	Name string `json:"name"`
	// State is the [readiness.State] in words: starting, progressing,
	// idle, behind, stalled, failing, alert, wedged or parked.
	State  string `json:"state"`
	Ready  bool   `json:"ready"`
	Tone   Tone   `json:"tone"`
	Reason string `json:"reason"`
	// LastProgress and its age are null before the first progress.
	LastProgress           *time.Time `json:"last_progress"`
	LastProgressAgeSeconds *float64   `json:"last_progress_age_seconds"`
	// Position is the text of the last position reported ("" if none).
	Position string `json:"position"`
	// Backlog is the work known to be waiting; null when unknown.
	Backlog *int64 `json:"backlog"`
	// LagSeconds is how far behind the loop is in time
	// ([readiness.WatermarkSnapshot.Lag]); null when unknown.
	LagSeconds *float64 `json:"lag_seconds"`
	// Trend is the loop's recent work rate and backlog, sampled by
	// [Handler.Run]; absent before the first sample or with the charts
	// off (Config.TrendInterval).
	Trend *Trend `json:"trend,omitempty"`
}

// Job is one scheduled job's health ([readiness.JobHealth]).
type Job struct {
	Name string `json:"name"`
	// State is the [readiness.State] in words: waiting, ok, overdue or
	// failing.
	State  string `json:"state"`
	Ready  bool   `json:"ready"`
	Tone   Tone   `json:"tone"`
	Reason string `json:"reason"`
	// LastSuccess and LastRun are null before the first (successful) run.
	LastSuccess     *time.Time `json:"last_success"`
	LastRun         *time.Time `json:"last_run"`
	IntervalSeconds float64    `json:"interval_seconds"`
	RunsOK          uint64     `json:"runs_ok"`
	RunsFailed      uint64     `json:"runs_failed"`
}

// Snapshot reads the tree and the probes now. It reads in-memory state
// only (it runs every check of Config.Probes) and is safe for concurrent
// use.
func (h *Handler) Snapshot() Snapshot {
	now := h.cfg.Now()
	s := Snapshot{
		Title:         h.cfg.Title,
		Ready:         true,
		NotReady:      []string{},
		StartedAt:     h.cfg.Started.UTC(),
		UptimeSeconds: max(now.Sub(h.cfg.Started), 0).Seconds(),
		RenderedAt:    now.UTC(),
		Workers:       []Worker{},
		Loops:         []Loop{},
		Jobs:          []Job{},
	}
	var links map[string]string // worker → its loop
	if t := h.cfg.Tree; t != nil {
		s.Tree = t.String()
		for _, st := range t.Statuses() {
			s.Workers = append(s.Workers, workerOf(st))
			if st.Loop != "" {
				if links == nil {
					links = map[string]string{}
				}
				links[st.Name] = st.Loop
			}
		}
	}
	// The supervisor names each worker's loop; Config.WorkerLoops adds or
	// overrides links.
	for w, l := range h.cfg.WorkerLoops {
		if links == nil {
			links = map[string]string{}
		}
		links[w] = l
	}
	if p := h.cfg.Probes; p != nil {
		for _, wm := range p.Loops() {
			s.Loops = append(s.Loops, loopOf(wm, now, h.trends))
		}
		linkLoops(s.Workers, s.Loops, links)
		for _, j := range p.Jobs() {
			s.Jobs = append(s.Jobs, jobOf(j))
		}
		if err := p.Check(false); err != nil {
			s.Ready = false
			s.NotReady = failures(err)
		}
	} else {
		// Without probes, the verdict the tree's checks would give.
		for _, w := range s.Workers {
			if !w.Ready {
				s.Ready = false
				s.NotReady = append(s.NotReady, "service/"+w.Name+": "+w.Reason)
			}
		}
	}
	return s
}

// failures splits the error of Probes.Check, joined with errors.Join, into
// its checks.
func failures(err error) []string {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func workerOf(st supervisor.ServiceStatus) Worker {
	return Worker{
		Name:      st.Name,
		State:     st.State.String(),
		Ready:     st.Ready,
		Tone:      serviceTone(st.State, st.Ready),
		Reason:    st.Reason,
		Starts:    st.Starts,
		Failures:  st.Failures,
		LastError: st.LastError,
	}
}

// linkLoops sets each worker's Loop from the loop rows, as links names
// them.
func linkLoops(workers []Worker, loops []Loop, links map[string]string) {
	for i := range workers {
		name, ok := links[workers[i].Name]
		if !ok {
			continue
		}
		wl := &WorkerLoop{Name: name, State: "unknown", Tone: ToneOff, Reason: "no loop of this name among the probes"}
		for _, l := range loops {
			if l.Name == name {
				wl = &WorkerLoop{Name: name, State: l.State, Ready: l.Ready, Tone: l.Tone, Reason: l.Reason}
				break
			}
		}
		workers[i].Loop = wl
	}
}

func loopOf(wm *readiness.Watermark, now time.Time, t *trends) Loop {
	st, snap := wm.Status(), wm.Snapshot()
	l := Loop{
		Name:     snap.Name,
		State:    st.State.String(),
		Ready:    st.Ready(),
		Tone:     stateTone(st.State),
		Reason:   st.Reason,
		Position: snap.Position,
	}
	if t := snap.LastProgress; !t.IsZero() {
		u := t.UTC()
		age := max(now.Sub(t), 0).Seconds()
		l.LastProgress, l.LastProgressAgeSeconds = &u, &age
	}
	if snap.BacklogKnown {
		l.Backlog = &snap.Backlog
	}
	if snap.LagKnown {
		sec := snap.Lag.Seconds()
		l.LagSeconds = &sec
	}
	if t != nil {
		l.Trend = t.trend(snap.Name)
	}
	return l
}

func jobOf(j *readiness.JobHealth) Job {
	st, snap := j.Status(), j.Snapshot()
	out := Job{
		Name:            snap.Name,
		State:           st.State.String(),
		Ready:           st.Ready(),
		Tone:            stateTone(st.State),
		Reason:          st.Reason,
		IntervalSeconds: j.Interval().Seconds(),
		RunsOK:          snap.Succeeded,
		RunsFailed:      snap.Failed,
	}
	if t := snap.LastSuccess; !t.IsZero() {
		u := t.UTC()
		out.LastSuccess = &u
	}
	if t := snap.LastRun; !t.IsZero() {
		u := t.UTC()
		out.LastRun = &u
	}
	return out
}
