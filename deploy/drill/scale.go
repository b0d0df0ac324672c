package drill

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Scaling divides the durations that decide how long an alert takes to fire
// and to resolve by Factor; none falls below Floor.
type Scaling struct {
	Factor int
	Floor  time.Duration
}

// Apply returns d divided by the factor, at least the floor, rounded to the
// millisecond. Zero stays zero.
func (s Scaling) Apply(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	out := (d / time.Duration(s.Factor)).Round(time.Millisecond)
	return max(out, s.Floor)
}

// Change is one substitution ScaleRules made, for the log.
type Change struct {
	Line     int    // 1-based line of the rules file
	From, To string // the durations as written
}

var (
	// durationRE is a Prometheus duration: 1h30m, 15m, 500ms, 2d.
	durationRE = `(?:\d+(?:ms|[smhdwy]))+`
	forRE      = regexp.MustCompile(`^(\s*for:\s*)(` + durationRE + `)(\s*(?:#.*)?)$`)
	exprRE     = regexp.MustCompile(`^(\s*)expr:`)
	rangeRE    = regexp.MustCompile(`\[(` + durationRE + `)(?::(` + durationRE + `)?)?\]`)
	offsetRE   = regexp.MustCompile(`\boffset(\s+)(-?)(` + durationRE + `)`)
	unitRE     = regexp.MustCompile(`(\d+)(ms|[smhdwy])`)
	// secondsRE is a metric in seconds: a gauge of a duration or a time
	// (headway_consumer_lag_seconds), not a counter or histogram of them.
	secondsRE = regexp.MustCompile(`\b[a-z_:][a-z0-9_:]*_seconds\b([^_]|$)`)
	// thresholdRE is a comparison with a number: "> 300".
	thresholdRE = regexp.MustCompile(`(>=|<=|==|!=|>|<)(\s*)(\d+(?:\.\d+)?)\b`)
)

var units = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// parseDuration reads a Prometheus duration (units ms, s, m, h, d, w, y).
func parseDuration(s string) (time.Duration, error) {
	if !regexp.MustCompile(`^` + durationRE + `$`).MatchString(s) {
		return 0, fmt.Errorf("not a Prometheus duration: %q", s)
	}
	var d time.Duration
	for _, m := range unitRE.FindAllStringSubmatch(s, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, err
		}
		d += time.Duration(n) * units[m[2]]
	}
	return d, nil
}

// formatDuration writes d as a Prometheus duration in hours, minutes,
// seconds and milliseconds: 90s is "1m30s", 1.5s is "1s500ms".
func formatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	return b.String()
}

// ScaleRules returns rules, the text of a Prometheus rules file, with every
// `for:` value and, inside `expr:` values (inline or block scalars), every
// range `[d]`, subquery `[d:r]` and `offset d` scaled by s, and every
// threshold in seconds: a number compared with on a line of an expression
// that reads a metric in seconds (a name ending in `_seconds`), as
// `headway_consumer_lag_seconds > 300` or `time() - …_timestamp_seconds >
// 120`. Nothing else changes: other thresholds, labels, comments and
// layout are kept byte for byte. It lists the substitutions made.
func ScaleRules(rules string, s Scaling) (string, []Change, error) {
	if s.Factor < 1 {
		return "", nil, fmt.Errorf("scale factor %d: must be at least 1", s.Factor)
	}
	var changes []Change
	var firstErr error
	scale := func(line int, d string) string {
		v, err := parseDuration(d)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", line, err)
			}
			return d
		}
		to := formatDuration(s.Apply(v))
		changes = append(changes, Change{Line: line, From: d, To: to})
		return to
	}
	scaleExpr := func(line int, text string) string {
		text = rangeRE.ReplaceAllStringFunc(text, func(m string) string {
			sub := rangeRE.FindStringSubmatch(m)
			out := "[" + scale(line, sub[1])
			if strings.Contains(m, ":") {
				out += ":"
				if sub[2] != "" {
					out += scale(line, sub[2])
				}
			}
			return out + "]"
		})
		text = offsetRE.ReplaceAllStringFunc(text, func(m string) string {
			sub := offsetRE.FindStringSubmatch(m)
			return "offset" + sub[1] + sub[2] + scale(line, sub[3])
		})
		if !secondsRE.MatchString(text) {
			return text
		}
		return thresholdRE.ReplaceAllStringFunc(text, func(m string) string {
			sub := thresholdRE.FindStringSubmatch(m)
			v, err := strconv.ParseFloat(sub[3], 64)
			if err != nil || v <= 0 {
				return m
			}
			to := strconv.FormatFloat(s.Apply(time.Duration(v*float64(time.Second))).Seconds(), 'f', -1, 64)
			changes = append(changes, Change{Line: line, From: sub[3], To: to})
			return sub[1] + sub[2] + to
		})
	}

	lines := strings.Split(rules, "\n")
	exprIndent := -1 // column of the `expr:` key whose value continues, or -1
	for i, l := range lines {
		n := i + 1
		if exprIndent >= 0 {
			trimmed := strings.TrimLeft(l, " ")
			if trimmed == "" || len(l)-len(trimmed) > exprIndent {
				lines[i] = scaleExpr(n, l)
				continue
			}
			exprIndent = -1
		}
		if m := forRE.FindStringSubmatch(l); m != nil {
			lines[i] = m[1] + scale(n, m[2]) + m[3]
			continue
		}
		if m := exprRE.FindStringSubmatch(l); m != nil {
			exprIndent = len(m[1])
			lines[i] = m[0] + scaleExpr(n, l[len(m[0]):])
		}
	}
	if firstErr != nil {
		return "", nil, firstErr
	}
	return strings.Join(lines, "\n"), changes, nil
}
