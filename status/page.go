package status

import (
	_ "embed"
	"fmt"
	"html/template"
	"time"
)

//go:embed page.html
var pageText string

// page is the status page. html/template escapes every value by the
// context it lands in, so names, reasons, positions and errors are shown
// as text, never as markup.
var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"when":         when,
	"ago":          ago,
	"secs":         secs,
	"rateChart":    rateChart,
	"backlogChart": backlogChart,
	"span":         span,
}).Parse(pageText))

// view is what the page template gets: the snapshot and how to show it.
type view struct {
	Snapshot
	RefreshSeconds                int
	HasTree, HasProbes, HasTrends bool
	TrendWindow                   time.Duration
}

// when shows a point in time, in UTC to the second.
func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// ago shows how long before now t was.
func ago(now, t time.Time) string { return human(now.Sub(t)) }

// secs shows a number of seconds as a duration.
func secs(s float64) string { return human(time.Duration(s * float64(time.Second))) }

// human shows d for people: milliseconds below a second, seconds (with
// tenths unless whole) below a minute, whole seconds below a day, then
// days. A negative
// d (clocks that disagree) shows as 0s.
func human(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute && d%time.Second == 0:
		return d.String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < day:
		return d.Round(time.Second).String()
	}
	days, rest := d/day, (d % day).Round(time.Second)
	if rest == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%s", days, rest)
}
