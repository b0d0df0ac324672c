package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// DefaultListLimit is how many dead letters dlq list prints by default.
const DefaultListLimit = 100

var dlqListCommand = &command{
	path:    "dlq list",
	summary: "list dead-lettered entries with reason, source, deliveries and error",
	help: `List prints the dead-lettered entries of every catalog stream (or those named
by --stream), oldest first: the dead letter's ID, the event's ID and type, why
it was dead-lettered, the delivery count, the entry's ID in its source stream,
when, and the error. Payloads are not printed; 'dlq show' prints one entry in
full.

At most --limit entries are printed (default 100). When more match, stderr
says how many ("showing 100 of 2345 dead letters"), the JSON has
"truncated": true and "total", and the exit status is still 0: a partial
list is a successful read, not a failure.

Examples:
  headway dlq list
  headway dlq list --stream wallet --reason handler_permanent,max_deliveries
  headway dlq list --type BET_SETTLED_CONFIRMED --limit 0 --json`,
	run: (*app).dlqList,
}

var dlqShowCommand = &command{
	path:    "dlq show",
	args:    "ID",
	summary: "show one dead-lettered entry with all its fields",
	help: `Show prints the dead letter whose entry ID in the dead-letter stream is ID
(as 'dlq list' prints it): why and where it was dead-lettered, then every
original field, the payload included. Without --stream every catalog stream's
dead-letter stream is searched.

Examples:
  headway dlq show 1747300000000-0
  headway dlq show --stream wallet 1747300000000-0 --json`,
	run: (*app).dlqShow,
}

func (a *app) dlqList(ctx context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		rf      redisFlags
		cf      catalogFlag
		ff      filterFlags
		names   listFlag
		limit   int
		jsonOut bool
	)
	rf.register(fs)
	cf.register(fs)
	fs.Var(&names, "stream", "catalog stream `name` (repeatable or comma-separated; default every stream)")
	ff.register(fs)
	fs.IntVar(&limit, "limit", DefaultListLimit, "print at most `n` entries; 0 prints all")
	fs.BoolVar(&jsonOut, "json", false, "write JSON instead of a table")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if limit < 0 {
		return usagef("--limit must not be negative")
	}
	f, err := ff.filter()
	if err != nil {
		return err
	}
	cat, err := cf.load()
	if err != nil {
		return err
	}
	refs, err := selectStreams(cat, rf.prefix, names)
	if err != nil {
		return err
	}
	rdb, err := a.connect(ctx, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()

	// Past the limit the scan goes on, counting only, so that a
	// truncated list says how much it left out.
	out := []DeadLetter{}
	total := 0
	for _, ref := range refs {
		err := scan(ctx, rdb, ref, f, func(dl DeadLetter) (bool, error) {
			total++
			if limit == 0 || len(out) < limit {
				out = append(out, dl)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	truncated := total > len(out)
	if err := a.printDeadLetters(out, truncated, total, jsonOut); err != nil {
		return err
	}
	if truncated {
		fmt.Fprintf(a.stderr, "showing %d of %d dead letters (--limit %d); --limit 0 lists all\n", len(out), total, limit)
	}
	return nil
}

// printDeadLetters writes dlq list's result to stdout.
func (a *app) printDeadLetters(out []DeadLetter, truncated bool, total int, jsonOut bool) error {
	if jsonOut {
		return writeJSON(a.stdout, struct {
			DeadLetters []DeadLetter `json:"dead_letters"`
			Truncated   bool         `json:"truncated"`
			Total       int          `json:"total"`
		}{out, truncated, total})
	}
	if len(out) == 0 {
		fmt.Fprintln(a.stdout, "no dead letters")
		return nil
	}
	t := newTable(a.stdout)
	t.row("STREAM", "ID", "EVENT ID", "TYPE", "REASON", "DELIVERIES", "SOURCE ID", "DEAD-LETTERED", "ERROR")
	for _, dl := range out {
		t.row(dl.Stream, dl.ID, dl.EventID, dl.EventType, dl.Reason, strconv.FormatInt(dl.Deliveries, 10),
			dl.SourceID, dl.DeadLetteredAt, truncate(dl.Error, 60))
	}
	return t.flush()
}

func (a *app) dlqShow(ctx context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		rf      redisFlags
		cf      catalogFlag
		names   listFlag
		jsonOut bool
	)
	rf.register(fs)
	cf.register(fs)
	fs.Var(&names, "stream", "catalog stream `name` whose dead letters to search (default every stream)")
	fs.BoolVar(&jsonOut, "json", false, "write JSON")
	pos, err := a.parse(c, fs, args, 1, 1)
	if err != nil {
		return err
	}
	id := pos[0]
	if _, _, ok := streamid.Parse(id); !ok {
		return usagef("%q is not a stream entry ID (like 1747300000000-0)", id)
	}
	cat, err := cf.load()
	if err != nil {
		return err
	}
	refs, err := selectStreams(cat, rf.prefix, names)
	if err != nil {
		return err
	}
	rdb, err := a.connect(ctx, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()

	found, err := findAll(ctx, rdb, refs, id)
	if err != nil {
		return err
	}
	switch len(found) {
	case 0:
		return fmt.Errorf("no dead letter %s in %s", id, dlqKeys(refs))
	case 1:
	default:
		var in []string
		for _, dl := range found {
			in = append(in, dl.Stream)
		}
		return usagef("dead letter %s is in several streams (%s): name one with --stream", id, strings.Join(in, ", "))
	}
	dl := found[0]
	dl.Fields = dl.letter.Fields
	if jsonOut {
		return writeJSON(a.stdout, dl)
	}
	fmt.Fprintf(a.stdout, "Dead letter %s of stream %s (%s)\n\n", dl.ID, dl.Stream, dl.DeadLetterKey)
	legacy := "no"
	if dl.Legacy {
		legacy = "yes: consumers reject it again; redrive needs --force"
	}
	t := newTable(a.stdout)
	t.row("reason", dl.Reason)
	t.row("error", dl.Error)
	t.row("source", strings.TrimSpace(dl.SourceStream+" "+dl.SourceID))
	t.row("group", dl.Group)
	t.row("consumer", dl.Consumer)
	t.row("deliveries", strconv.FormatInt(dl.Deliveries, 10))
	t.row("dead-lettered", dl.DeadLetteredAt)
	t.row("legacy", legacy)
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\nFields:\n")
	t = newTable(a.stdout)
	for _, k := range orderedFields(dl.Fields) {
		t.row("  "+k, dl.Fields[k])
	}
	return t.flush()
}

// findAll looks id up in the dead-letter stream of every ref.
func findAll(ctx context.Context, rdb redis.UniversalClient, refs []streamRef, id string) ([]DeadLetter, error) {
	var out []DeadLetter
	for _, ref := range refs {
		dl, ok, err := find(ctx, rdb, ref, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, dl)
		}
	}
	return out, nil
}

func dlqKeys(refs []streamRef) string {
	if len(refs) == 1 {
		return refs[0].DLQ
	}
	return strconv.Itoa(len(refs)) + " dead-letter streams"
}
