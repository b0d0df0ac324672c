package readiness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heptiolabs/healthcheck"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/internal/promutil"
)

// ProbesConfig configures [Probes]. The zero value works.
type ProbesConfig struct {
	// Registerer receives the metrics of every loop and job added (see
	// docs/metrics.md); nil registers nothing. Probes built against the
	// same registerer share one collector, so their loop and job names must
	// differ.
	Registerer prometheus.Registerer
}

// Validate reports nothing: every ProbesConfig is valid. It is here so
// that every config of headway is checked the same way.
func (c ProbesConfig) Validate() error { return nil }

// Probes is the set of health checks of one process, served over HTTP with
// github.com/heptiolabs/healthcheck:
//
//   - GET /live runs the liveness checks: only the process's own loops
//     (wedged, see [StateWedged]), in one check named "loops/live". It
//     never depends on Redis or PostgreSQL being reachable, so a dependency
//     outage does not restart every pod. A loop its supervisor parked
//     ([Watermark.Park]: in restart backoff, or stopped for good) is left
//     out: it is not ready, but restarting the pod would not help.
//   - GET /ready runs every readiness check (each loop, job, supervised
//     service and custom check) and the liveness checks.
//   - ?full=1 on either answers a JSON object mapping each check's name to
//     "OK" or the reason it fails. On /ready it also maps
//     "notice/loop/<name>" to the notice of each loop that shows one
//     ([Watermark.Notice]): a notice never fails the probe.
//
// Both answer 200 when every check passes and 503 otherwise. Checks run on
// every request (and a scrape reads the same state), so every check here
// reads in-memory state only; a custom check must do the same.
//
// Check names are "loop/<name>", "loops/live", "job/<name>", and
// whatever [Probes.AddReadinessCheck] is given (the supervisor adds
// "service/<name>"). Adding a name twice is an error ([ErrDuplicateCheck]),
// never a panic or a silent overwrite.
//
// Probes is safe for concurrent use; checks may be added while serving.
type Probes struct {
	h healthcheck.Handler

	mu     sync.Mutex
	names  map[string]bool // name -> liveness check
	checks map[string]healthcheck.Check
	order  []string

	// Copy-on-write snapshots, read without p.mu: the healthcheck handler
	// runs checks while holding its own lock, which p.mu must never wait
	// behind (AddLoop holds p.mu while it adds a check to the handler).
	loops atomic.Pointer[[]*Watermark]
	jobs  atomic.Pointer[[]*JobHealth]
}

// liveLoopsCheck is the name of the one liveness check covering every loop.
const liveLoopsCheck = "loops/live"

// NewProbes returns an empty set of checks. It returns an error if the
// metrics cannot be registered with cfg.Registerer.
func NewProbes(cfg ProbesConfig) (*Probes, error) {
	p := &Probes{
		h:      healthcheck.NewHandler(),
		names:  make(map[string]bool),
		checks: make(map[string]healthcheck.Check),
	}
	if cfg.Registerer != nil {
		c, err := promutil.Register(cfg.Registerer, newCollector())
		if err != nil {
			return nil, fmt.Errorf("readiness: %w", err)
		}
		c.attach(p)
	}
	return p, nil
}

// reserve records names (under p.mu) or fails without recording any.
func (p *Probes) reserve(names map[string]bool) error {
	for n := range names {
		if n == "" {
			return fmt.Errorf("%w: empty check name", ErrInvalidConfig)
		}
		if _, dup := p.names[n]; dup {
			return fmt.Errorf("%w: %q", ErrDuplicateCheck, n)
		}
	}
	for n, live := range names {
		p.names[n] = live
	}
	return nil
}

func (p *Probes) register(name string, live bool, check healthcheck.Check) {
	p.checks[name] = check
	p.order = append(p.order, name)
	if live {
		p.h.AddLivenessCheck(name, check)
	} else {
		p.h.AddReadinessCheck(name, check)
	}
}

// AddLoop adds the readiness check "loop/<name>" of the loop w (ready
// unless stalled, failing, alert, wedged or parked), includes w in the
// liveness check "loops/live" (live unless some loop is wedged; a parked
// loop is never wedged), and exports its
// metrics. It returns an error wrapping [ErrDuplicateCheck] if a loop with
// that name was already added.
//
// Liveness is one check for all loops rather than one per loop, so /ready
// (which runs liveness checks too) evaluates each loop once.
func (p *Probes) AddLoop(w *Watermark) error {
	return p.addLoop(w, "", nil, false)
}

// AddLoopWithCheck adds the loop w as [Probes.AddLoop] does and, in the
// same step, the custom readiness check name (as
// [Probes.AddReadinessCheck] does): either both are added or, on error,
// neither. A loop already added — the same *Watermark — is kept as it is
// and only the check is added, so a caller that registered the loop itself
// before handing it to the supervisor loses nothing. The supervisor adds
// "loop/<name>" and "service/<name>" this way for a service that reports a
// watermark. It returns an error wrapping [ErrDuplicateCheck] if a name is
// taken (by another watermark, for the loop's), or [ErrInvalidConfig] for a
// nil watermark, an empty name or a nil check.
func (p *Probes) AddLoopWithCheck(w *Watermark, name string, check func() error) error {
	if check == nil || name == "" {
		return fmt.Errorf("%w: check %q without a name or a function", ErrInvalidConfig, name)
	}
	return p.addLoop(w, name, check, true)
}

func (p *Probes) addLoop(w *Watermark, name string, check func() error, keep bool) error {
	if w == nil {
		return fmt.Errorf("%w: nil watermark", ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	names := map[string]bool{}
	added := keep && slices.Contains(loadSnapshot(&p.loops), w)
	if !added {
		names[w.String()] = false
	}
	if name != "" {
		if name == w.String() {
			return fmt.Errorf("%w: %q", ErrDuplicateCheck, name)
		}
		names[name] = false
	}
	first := p.loops.Load() == nil
	if first {
		names[liveLoopsCheck] = true
	}
	if err := p.reserve(names); err != nil {
		return err
	}
	if name != "" {
		p.register(name, false, check)
	}
	if !added {
		p.loops.Store(appendSnapshot(p.loops.Load(), w))
		p.register(w.String(), false, w.readyCheck)
	}
	if first {
		p.register(liveLoopsCheck, true, p.liveLoops)
	}
	return nil
}

// liveLoops is the liveness check of every loop: it fails when any loop is
// wedged, with the reasons of all wedged loops.
func (p *Probes) liveLoops() error {
	var b strings.Builder
	for _, w := range loadSnapshot(&p.loops) {
		v := w.evaluate(w.now())
		if v.state.Live() {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(w.String())
		b.WriteString(": ")
		b.WriteString(w.reason(&v))
	}
	if b.Len() == 0 {
		return nil
	}
	return &notReadyError{reason: b.String()}
}

// appendSnapshot returns a new snapshot: old's elements then v.
func appendSnapshot[T any](old *[]T, v T) *[]T {
	var s []T
	if old != nil {
		s = make([]T, 0, len(*old)+1)
		s = append(s, *old...)
	}
	s = append(s, v)
	return &s
}

func loadSnapshot[T any](p *atomic.Pointer[[]T]) []T {
	if s := p.Load(); s != nil {
		return *s
	}
	return nil
}

// AddJob adds the readiness check "job/<name>" of the scheduled job j and
// exports its metrics. It returns an error wrapping [ErrDuplicateCheck] if
// a job with that name was already added.
func (p *Probes) AddJob(j *JobHealth) error {
	return p.AddJobWithCheck(j, "", nil)
}

// AddJobWithCheck adds the job j as [Probes.AddJob] does and, in the same
// step, the custom readiness check name (as [Probes.AddReadinessCheck]
// does): either both are added or, on error, neither, so a refused name
// leaves no check behind. The supervisor adds "job/<name>" and
// "service/<name>" this way. An empty name with a nil check adds the job
// alone. It returns an error wrapping [ErrDuplicateCheck] if either name is
// taken (or name equals the job's check name), or [ErrInvalidConfig] for a
// nil job, or a name without a check.
func (p *Probes) AddJobWithCheck(j *JobHealth, name string, check func() error) error {
	if j == nil {
		return fmt.Errorf("%w: nil job", ErrInvalidConfig)
	}
	custom := name != "" || check != nil
	if custom && check == nil {
		return fmt.Errorf("%w: nil check %q", ErrInvalidConfig, name)
	}
	if custom && name == j.String() {
		return fmt.Errorf("%w: %q", ErrDuplicateCheck, name)
	}
	names := map[string]bool{j.String(): false}
	if custom {
		names[name] = false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.reserve(names); err != nil {
		return err
	}
	if custom {
		p.register(name, false, check)
	}
	p.jobs.Store(appendSnapshot(p.jobs.Load(), j))
	p.register(j.String(), false, j.readyCheck)
	return nil
}

// AddReadinessCheck adds a custom readiness check. check must read
// in-memory state only and return nil when ready, or an error whose text is
// the reason (see [NotReady]). It returns an error wrapping
// [ErrDuplicateCheck] if name is taken.
func (p *Probes) AddReadinessCheck(name string, check func() error) error {
	return p.addCustom(name, false, check)
}

// AddLivenessCheck adds a custom liveness check, run by /live and /ready.
// It must depend only on the process itself (never on a remote dependency)
// and read in-memory state only. It returns an error wrapping
// [ErrDuplicateCheck] if name is taken.
func (p *Probes) AddLivenessCheck(name string, check func() error) error {
	return p.addCustom(name, true, check)
}

func (p *Probes) addCustom(name string, live bool, check func() error) error {
	if check == nil {
		return fmt.Errorf("%w: nil check %q", ErrInvalidConfig, name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.reserve(map[string]bool{name: live}); err != nil {
		return err
	}
	p.register(name, live, check)
	return nil
}

// ServeHTTP serves GET /live and GET /ready (other paths: 404, other
// methods: 405). Mount it at the root of the probe listener, or use
// [Probes.LiveHandler] and [Probes.ReadyHandler] to mount elsewhere.
func (p *Probes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ready" {
		p.ready(w, r)
		return
	}
	p.h.ServeHTTP(w, r)
}

// LiveHandler returns the handler of /live alone, for mounting at any path.
func (p *Probes) LiveHandler() http.Handler { return http.HandlerFunc(p.h.LiveEndpoint) }

// ReadyHandler returns the handler of /ready alone, for mounting at any
// path.
func (p *Probes) ReadyHandler() http.Handler { return http.HandlerFunc(p.ready) }

// ready serves /ready: healthcheck's answer, with the loops' notices added
// to the ?full=1 body.
func (p *Probes) ready(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery == "" || r.URL.Query().Get("full") != "1" {
		p.h.ReadyEndpoint(w, r) // what Kubernetes asks: no body to add to
		return
	}
	notices := p.notices()
	if len(notices) == 0 {
		p.h.ReadyEndpoint(w, r)
		return
	}
	rec := &recorder{header: w.Header()}
	p.h.ReadyEndpoint(rec, r)
	results := map[string]string{}
	if err := json.Unmarshal(rec.body.Bytes(), &results); err != nil {
		w.WriteHeader(rec.status) // not healthcheck's JSON: pass it on
		w.Write(rec.body.Bytes())
		return
	}
	maps.Copy(results, notices)
	w.WriteHeader(rec.status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ") // as healthcheck writes it
	enc.Encode(results)
}

// notices returns the notice shown by each loop, by "notice/loop/<name>".
func (p *Probes) notices() map[string]string {
	var out map[string]string
	for _, w := range loadSnapshot(&p.loops) {
		if reason, ok := w.activeNotice(w.offset(w.now())); ok {
			if out == nil {
				out = map[string]string{}
			}
			out["notice/"+w.String()] = reason
		}
	}
	return out
}

// recorder keeps the status and body healthcheck writes, with the real
// response's header.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// Check runs every check (liveness checks only when liveOnly) in the order
// they were added and returns nil when all pass, otherwise the failures
// joined with [errors.Join], each as "<check>: <reason>" and each matching
// the check's own error (so [ErrNotReady] for the built-in checks).
func (p *Probes) Check(liveOnly bool) error {
	p.mu.Lock()
	names := slices.Clone(p.order)
	checks := make([]healthcheck.Check, len(names))
	live := make([]bool, len(names))
	for i, n := range names {
		checks[i], live[i] = p.checks[n], p.names[n]
	}
	p.mu.Unlock()
	var errs []error
	for i, n := range names {
		if liveOnly && !live[i] {
			continue
		}
		if err := checks[i](); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// Loops returns the watermarks added, in order.
func (p *Probes) Loops() []*Watermark { return slices.Clone(loadSnapshot(&p.loops)) }

// Jobs returns the jobs added, in order.
func (p *Probes) Jobs() []*JobHealth { return slices.Clone(loadSnapshot(&p.jobs)) }
