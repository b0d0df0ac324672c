package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/headwaylabs/headway/event"
)

var catalogExportCommand = &command{
	path:    "catalog export",
	summary: "print the event catalog as Markdown or JSON",
	help: `Export prints the event catalog: the Markdown page of docs/event-catalog.md
(--format md) or the JSON of docs/event-catalog.json (--format json), as
generated from platform.Catalog() or read from --catalog. It needs no Redis.

Examples:
  headway catalog export > event-catalog.md
  headway catalog export --format json | jq '.streams[].name'`,
	run: (*app).catalogExport,
}

var catalogCheckCommand = &command{
	path:    "catalog check",
	summary: "check that a consumer's handler types are emitted on its stream",
	help: `Check runs the consumers' start-up check (Catalog.CheckDispatch) as a command:
it succeeds when every type of --types is emitted on --stream, and otherwise
names each type that is reserved, retired or unknown there and exits with
status 1. It needs no Redis.

Examples:
  headway catalog check --stream wallet --types BET_SETTLED_CONFIRMED,BET_ROLLED_BACK_CONFIRMED
  headway catalog check --stream wallet --types PROMOTION_CREDITED --json`,
	run: (*app).catalogCheck,
}

func (a *app) catalogExport(_ context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		cf     catalogFlag
		format string
	)
	cf.register(fs)
	fs.StringVar(&format, "format", "md", "output `format`: md or json")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if format != "md" && format != "json" {
		return usagef("--format %q: want md or json", format)
	}
	cat, err := cf.load()
	if err != nil {
		return err
	}
	out := cat.Markdown()
	if format == "json" {
		if out, err = cat.JSON(); err != nil {
			return err
		}
	}
	_, err = a.stdout.Write(out)
	return err
}

// CheckResult is the output of catalog check --json.
type CheckResult struct {
	Stream   string         `json:"stream"`
	Types    []string       `json:"types"`
	OK       bool           `json:"ok"`
	Problems []CheckProblem `json:"problems"`
}

// CheckProblem is one refused type.
type CheckProblem struct {
	Type string `json:"type"`
	Why  string `json:"why"`
}

func (a *app) catalogCheck(_ context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		cf      catalogFlag
		stream  string
		types   listFlag
		jsonOut bool
	)
	cf.register(fs)
	fs.StringVar(&stream, "stream", "", "catalog stream `name` the consumer reads (required)")
	fs.Var(&types, "types", "event `types` the consumer has handlers for (required; comma-separated or repeated)")
	fs.BoolVar(&jsonOut, "json", false, "write JSON")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	switch {
	case stream == "":
		return usagef("--stream is required")
	case len(types) == 0:
		return usagef("--types is required")
	}
	for _, t := range types {
		if !event.ValidTypeName(t) {
			return usagef("--types: %q is not an event type name (UPPER_SNAKE_CASE, e.g. BET_SETTLED_CONFIRMED)", t)
		}
	}
	cat, err := cf.load()
	if err != nil {
		return err
	}
	if _, ok := cat.Stream(stream); !ok {
		return usagef("unknown stream %q (catalog streams: %s)", stream, strings.Join(streamNames(cat), ", "))
	}
	ts := make([]event.Type, len(types))
	for i, t := range types {
		ts[i] = event.Type(t)
	}
	res := CheckResult{Stream: stream, Types: types, OK: true, Problems: []CheckProblem{}}
	err = cat.CheckDispatch(stream, ts)
	var de *event.DispatchError
	switch {
	case err == nil:
	case errors.As(err, &de):
		res.OK = false
		for _, p := range de.Problems {
			res.Problems = append(res.Problems, CheckProblem{Type: string(p.Type), Why: p.Why})
		}
	default:
		return err
	}
	if jsonOut {
		if err := writeJSON(a.stdout, res); err != nil {
			return err
		}
	} else if res.OK {
		fmt.Fprintf(a.stdout, "ok: every type is emitted on stream %s\n", stream)
	} else {
		t := newTable(a.stdout)
		t.row("TYPE", "PROBLEM")
		for _, p := range res.Problems {
			t.row(p.Type, p.Why)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if !res.OK {
		return fmt.Errorf("%d of %d types not dispatchable on stream %s", len(res.Problems), len(types), stream)
	}
	return nil
}
