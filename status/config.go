package status

import (
	"fmt"
	"time"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

// Defaults of [Config], used when a field is zero.
const (
	DefaultTitle   = "headway"
	DefaultRefresh = 5 * time.Second
)

// processStart approximates the start of the process: package variables
// are initialised before main runs.
var processStart = time.Now()

// Config configures a [Handler]. The zero value works: it serves a page
// with nothing on it but the process's start time.
type Config struct {
	// Title heads the page and its JSON: the service's name, such as
	// "wallet-consumer". Default [DefaultTitle].
	Title string
	// Tree supplies the supervised workers ([supervisor.Tree.Statuses]).
	// Nil: the page has no workers.
	Tree *supervisor.Tree
	// Probes supply the loops, the jobs and the overall verdict
	// ([readiness.Probes.Check]). Nil: the page has no loops and no jobs,
	// and the verdict is taken from the workers alone.
	Probes *readiness.Probes
	// Refresh is how often the browser reloads the page (a meta refresh),
	// in whole seconds. Default [DefaultRefresh] (5s); negative: never.
	// A positive value must be at least one second.
	Refresh time.Duration
	// Started is when the process started, shown with the uptime.
	// Default: when package status was initialised, at program start.
	Started time.Time
	// Now is the clock of the page: the time rendered, the uptime and the
	// ages of the times shown. Give it the clock of the watermarks and
	// jobs. Default time.Now.
	Now func() time.Time
	// WorkerLoops names, by worker name, the loop each worker reports
	// into (its watermark's name, such as "rolling_service@events:{wallet}"
	// for a consumer). The worker's row then shows that loop's state
	// beside its own and links to the loop's row, so that a running worker
	// whose loop is stalled does not look healthy. A worker that reports a
	// watermark to its supervisor (a consumer, a relay) is linked without
	// it (supervisor.ServiceStatus.Loop); an entry here adds a link or
	// overrides that one. Default: none beyond the supervisor's.
	WorkerLoops map[string]string
	// TrendInterval is how often [Handler.Run] samples each loop's work
	// done and backlog for the page's charts, and TrendWindow how far back
	// the charts reach. Defaults [DefaultTrendInterval] (10s) and
	// [DefaultTrendWindow] (15m); a negative TrendInterval turns the
	// charts off. The samples are kept in a fixed-size ring per loop.
	TrendInterval time.Duration
	TrendWindow   time.Duration
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig].
// It never panics.
func (c Config) Validate() error {
	if c.Refresh > 0 && c.Refresh < time.Second {
		return fmt.Errorf("%w: Refresh %v is below one second (negative: no refresh)", ErrInvalidConfig, c.Refresh)
	}
	if c.TrendInterval > 0 && c.TrendInterval < time.Second {
		return fmt.Errorf("%w: TrendInterval %v is below one second (negative: no charts)", ErrInvalidConfig, c.TrendInterval)
	}
	if d := c.withDefaults(); c.TrendWindow < 0 || d.TrendInterval > 0 && d.TrendWindow < d.TrendInterval ||
		d.TrendInterval > 0 && d.TrendWindow/d.TrendInterval >= maxTrendSamples {
		return fmt.Errorf("%w: TrendWindow %v must be at least TrendInterval %v and at most %d of them", ErrInvalidConfig,
			c.TrendWindow, d.TrendInterval, maxTrendSamples-1)
	}
	for w, l := range c.WorkerLoops {
		if w == "" || l == "" {
			return fmt.Errorf("%w: WorkerLoops maps worker %q to loop %q: both must be named", ErrInvalidConfig, w, l)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Title == "" {
		c.Title = DefaultTitle
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Started.IsZero() {
		c.Started = processStart
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TrendInterval == 0 {
		c.TrendInterval = DefaultTrendInterval
	}
	if c.TrendWindow == 0 {
		c.TrendWindow = max(DefaultTrendWindow, c.TrendInterval)
	}
	return c
}
