package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is everything one run measured; -json writes it.
type Report struct {
	Started   time.Time       `json:"started"`
	Commit    string          `json:"commit"`
	Machine   Machine         `json:"machine"`
	Options   options         `json:"options"`
	LoadStart LoadAvg         `json:"load_start"`
	LoadEnd   LoadAvg         `json:"load_end"`
	Prefix    string          `json:"redis_prefix"`
	Schema    string          `json:"postgresql_schema,omitempty"`
	Drain     *DrainResult    `json:"drain,omitempty"`
	Relay     *RelayResult    `json:"relay,omitempty"`
	Replicas  *ReplicasResult `json:"replicas,omitempty"`
	E2E       *E2EResult      `json:"e2e,omitempty"`
	Scale     *ScaleResult    `json:"scale,omitempty"`
	Memory    *MemoryResult   `json:"memory,omitempty"`
	Targets   []TargetResult  `json:"targets"`
}

// Case is one measured way of doing a section's work.
type Case struct {
	Name    string  `json:"name"`
	Events  int     `json:"events"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_second"`
	// Ratio is PerSec over the section's reference (the raw ceiling for
	// drain, the one-row baseline for relay).
	Ratio float64 `json:"ratio"`
	CPU   CPU     `json:"cpu"`
	Note  string  `json:"note,omitempty"`
	// Attempts counts the runs made to get this one: more than one when
	// other processes disturbed the first (see undisturbed).
	Attempts int `json:"attempts,omitempty"`
	// Runs holds the events/s of every run of a case that ran more than
	// once; the other fields are those of the median run.
	Runs []float64 `json:"runs_per_second,omitempty"`
}

func newCase(name string, events int, elapsed time.Duration, cpu CPU) Case {
	return Case{Name: name, Events: events, Seconds: elapsed.Seconds(),
		PerSec: float64(events) / elapsed.Seconds(), CPU: cpu}
}

// Section is the part of a result every section has.
type Section struct {
	LoadStart LoadAvg `json:"load_start"`
	LoadEnd   LoadAvg `json:"load_end"`
}

// TargetResult is one target of issue #8 and whether this run met it.
type TargetResult struct {
	Target string `json:"target"`
	Got    string `json:"got"`
	Met    bool   `json:"met"`
}

func (r *Report) target(target string, met bool, got string, args ...any) {
	r.Targets = append(r.Targets, TargetResult{Target: target, Got: fmt.Sprintf(got, args...), Met: met})
}

func (r *Report) writeTargets(w io.Writer) {
	if len(r.Targets) == 0 {
		return
	}
	t := newTable("target", "", "this run")
	for _, tr := range r.Targets {
		verdict := "met"
		if !tr.Met {
			verdict = "**not met**"
		}
		t.add(tr.Target, verdict, tr.Got)
	}
	fmt.Fprintln(w, "\n### Targets")
	t.write(w)
}

// table is a Markdown table whose columns are padded for a terminal.
type table struct {
	head []string
	rows [][]string
}

func newTable(head ...string) *table { return &table{head: head} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	numeric := make([]bool, len(t.head))
	for i, h := range t.head {
		width[i] = max(3, len([]rune(h)))
		numeric[i] = i > 0
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
			if c != "" && c != "—" && !isNumber(c) {
				numeric[i] = false
			}
		}
	}
	line := func(cells []string) {
		var sb strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if numeric[i] {
				fmt.Fprintf(&sb, "| %s%s ", pad, c)
			} else {
				fmt.Fprintf(&sb, "| %s%s ", c, pad)
			}
		}
		fmt.Fprintln(w, sb.String()+"|")
	}
	line(t.head)
	var sep strings.Builder
	for i := range t.head {
		d := strings.Repeat("-", width[i]+2)
		if numeric[i] {
			d = d[:len(d)-1] + ":"
		}
		sep.WriteString("|" + d)
	}
	fmt.Fprintln(w, sep.String()+"|")
	for _, r := range t.rows {
		line(r)
	}
}

// isNumber reports whether s reads as a figure: digits with separators,
// a decimal point, a unit or a ratio sign.
func isNumber(s string) bool {
	s = strings.TrimRight(s, " ×%MiBkms/")
	s = strings.ReplaceAll(s, ",", "")
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func ratio(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sectionHeader(w io.Writer, title string, load LoadAvg, note string) {
	fmt.Fprintf(w, "\n### %s\n\nload average at the start: %s", title, load)
	if note != "" {
		fmt.Fprintf(w, "; %s", note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
}
