package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/streamid"
)

var dlqRedriveCommand = &command{
	path:    "dlq redrive",
	summary: "append dead-lettered entries back to their source stream",
	help: `Redrive appends the selected dead letters back to the stream they were
dead-lettered from, with their original fields (the dlq_* fields removed), and
deletes them from the dead-letter stream. Choose the entries with --id, or
with --reason and --type, or take every one with --all; --limit bounds how
many are redriven. --dry-run prints what would be redriven and changes
nothing. --reason, --type and --all take the dead letters there when the run
starts: an entry dead-lettered while it runs (a consumer rejecting a
redriven event again) waits for the next run.

Each entry moves in one Lua script call: the append to the source stream and
the delete from the dead-letter stream happen together or not at all, so a
redrive killed at any point neither loses nor doubles an entry; run it again
to finish. An entry already gone from the dead-letter stream (another redrive
took it) is reported as gone and not appended; a call whose reply was lost
and that is sent again reports the move it made. The keys the script touches
carry the stream's hash tag, so this works on a Redis Cluster too.

The entry gets a new ID at the end of the stream, and every group of the
stream reads it again: a group that already applied the event relies on its
deduplication (event_id) to skip it. That holds only while the dedup store
still remembers the event: 7 days by default with the Redis store (its
DoneTTL), until pruned with the PostgreSQL inbox. Past that, a group that
applied the event applies it again. For each entry dead-lettered longer ago
than --dedup-window (dlq_at, else the time of its source entry ID), redrive
prints a warning to stderr; set the flag to the store's memory. The consumer
that dead-lettered it runs its handler again (a dead letter is not marked
done).

An entry the consumers would reject again is refused: a legacy
schema_version 1 entry (reason legacy_schema), or one that does not decode
(malformed, unsupported_schema, missing_brand, ...). --force redrives these
anyway. With --id, a refused or missing entry makes the exit status 1; with
--reason, --type or --all, refused entries are listed and left in place.

Examples:
  headway dlq redrive --stream wallet --reason handler_permanent --dry-run
  headway dlq redrive --id 1747300000000-0,1747300000001-0
  headway dlq redrive --stream wallet --all --rate 200`,
	run: (*app).dlqRedrive,
}

// DefaultDedupWindow is --dedup-window's default: the Redis dedup store's
// default DoneTTL (dedup.DefaultDoneTTL), how long it remembers an event.
const DefaultDedupWindow = 7 * 24 * time.Hour

// Outcomes of a redrive, in RedriveResult.Outcome.
const (
	OutcomeRedriven     = "redriven"      // appended to the source stream, deleted from the dead-letter stream
	OutcomeWouldRedrive = "would_redrive" // dry run
	OutcomeRefused      = "refused"       // left in place: see Why
	OutcomeGone         = "gone"          // no longer in the dead-letter stream when its turn came
	OutcomeNotFound     = "not_found"     // an --id that no dead-letter stream holds
)

// RedriveResult is what happened to one selected dead letter.
type RedriveResult struct {
	Stream    string `json:"stream"`
	ID        string `json:"id"`
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Outcome   string `json:"outcome"`
	NewID     string `json:"new_id,omitempty"` // the entry's ID in the source stream
	Why       string `json:"why,omitempty"`
}

// refusal says why dl must not be redriven, or "" when it may. The first
// two checks are those deadletter.Redrive makes; they are made here too so
// that a dry run reports them, in the command's words.
func refusal(ref streamRef, dl DeadLetter, force bool) string {
	if dl.SourceStream != "" && dl.SourceStream != ref.Key {
		return fmt.Sprintf("dead-lettered from %s, not from %s", dl.SourceStream, ref.Key)
	}
	if len(dl.letter.Fields) == 0 {
		return "no original fields"
	}
	if force {
		return ""
	}
	if dl.Legacy {
		return "legacy schema_version 1: consumers reject it again (--force redrives it anyway)"
	}
	fields := make(map[string]any, len(dl.letter.Fields))
	for k, v := range dl.letter.Fields {
		fields[k] = v
	}
	if _, err := event.Decode(fields); err != nil {
		return fmt.Sprintf("does not decode (%v): consumers reject it again (--force redrives it anyway)", err)
	}
	return ""
}

func (a *app) dlqRedrive(ctx context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		rf      redisFlags
		cf      catalogFlag
		ff      filterFlags
		names   listFlag
		ids     listFlag
		all     bool
		limit   int
		dryRun  bool
		force   bool
		rate    float64
		window  time.Duration
		jsonOut bool
	)
	rf.register(fs)
	cf.register(fs)
	fs.Var(&names, "stream", "catalog stream `name` (repeatable or comma-separated; default every stream)")
	fs.Var(&ids, "id", "dead letter `ID` to redrive, as 'dlq list' prints it (repeatable or comma-separated)")
	ff.register(fs)
	fs.BoolVar(&all, "all", false, "redrive every dead letter of the selected streams")
	fs.IntVar(&limit, "limit", 0, "redrive at most `n` entries; 0 means no limit")
	fs.BoolVar(&dryRun, "dry-run", false, "print what would be redriven; change nothing")
	fs.BoolVar(&force, "force", false, "redrive entries that consumers would reject again (legacy schema_version 1, undecodable)")
	fs.Float64Var(&rate, "rate", 0, "redrive at most `n` entries per second; 0 means as fast as Redis answers")
	fs.DurationVar(&window, "dedup-window", DefaultDedupWindow, "how long the consumers' dedup store remembers an event (Redis store: DoneTTL; PostgreSQL inbox: the prune age); an entry dead-lettered longer ago gets a warning, 0 turns it off")
	fs.BoolVar(&jsonOut, "json", false, "write JSON instead of a table")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	switch {
	case window < 0:
		return usagef("--dedup-window must not be negative")
	case len(ids) == 0 && !ff.any() && !all:
		return usagef("choose the entries: --id, --reason, --type or --all")
	case len(ids) > 0 && (ff.any() || all):
		return usagef("--id names the entries: it does not combine with --reason, --type or --all")
	case all && ff.any():
		return usagef("--all takes every entry: it does not combine with --reason or --type")
	case limit < 0:
		return usagef("--limit must not be negative")
	case rate < 0:
		return usagef("--rate must not be negative")
	}
	for _, id := range ids {
		if _, _, ok := streamid.Parse(id); !ok {
			return usagef("--id %q is not a stream entry ID (like 1747300000000-0)", id)
		}
	}
	ids = unique(ids) // a repeated ID is redriven once
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

	r := &redriver{a: a, rdb: rdb, limit: limit, dryRun: dryRun, force: force, explicit: len(ids) > 0, window: window,
		// Each try of a call waits at most --timeout to connect and as
		// long for the reply, and go-redis tries a call 4 times.
		markTTL: max(10*rf.timeout, time.Minute)}
	if rate > 0 {
		r.interval = time.Duration(float64(time.Second) / rate)
	}
	var runErr error
	if len(ids) > 0 {
		runErr = r.byID(ctx, refs, ids)
	} else {
		for _, ref := range refs {
			if runErr = scan(ctx, rdb, ref, f, func(dl DeadLetter) (bool, error) { return r.one(ctx, ref, dl) }); runErr != nil || r.full() {
				break
			}
		}
	}
	var ue *usageError
	if errors.As(runErr, &ue) {
		return runErr
	}
	if err := r.print(jsonOut); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("stopped after %d entries: %w", r.moved, runErr)
	}
	if r.explicit {
		if failed := len(r.results) - r.moved; failed > 0 {
			return fmt.Errorf("%d of %d entries named by --id not redriven", failed, len(r.results))
		}
	}
	return nil
}

// redriver runs one dlq redrive.
type redriver struct {
	a        *app
	rdb      redis.UniversalClient
	limit    int
	dryRun   bool
	force    bool
	explicit bool          // entries named by --id
	interval time.Duration // --rate
	next     time.Time
	window   time.Duration // --dedup-window; 0: no warning
	markTTL  time.Duration // how long a move's record outlives it: deadletter.RedriveOptions.MarkerTTL

	results []RedriveResult
	moved   int // redriven, or would be in a dry run
}

func (r *redriver) full() bool { return r.limit > 0 && r.moved >= r.limit }

// byID resolves every ID first, so that an ambiguous one stops the
// redrive before anything moved, then redrives them in the order given.
func (r *redriver) byID(ctx context.Context, refs []streamRef, ids []string) error {
	type target struct {
		ref streamRef
		dl  DeadLetter
		ok  bool
	}
	targets := make([]target, 0, len(ids))
	for _, id := range ids {
		var found []target
		for _, ref := range refs {
			dl, ok, err := find(ctx, r.rdb, ref, id)
			if err != nil {
				return err
			}
			if ok {
				found = append(found, target{ref, dl, true})
			}
		}
		switch len(found) {
		case 0:
			targets = append(targets, target{dl: DeadLetter{ID: id}})
		case 1:
			targets = append(targets, found[0])
		default:
			return usagef("dead letter %s is in several streams: name one with --stream", id)
		}
	}
	for _, t := range targets {
		if r.full() {
			break
		}
		if !t.ok {
			r.results = append(r.results, RedriveResult{Stream: "", ID: t.dl.ID, Outcome: OutcomeNotFound,
				Why: "no such dead letter in " + dlqKeys(refs)})
			continue
		}
		if _, err := r.one(ctx, t.ref, t.dl); err != nil {
			return err
		}
	}
	return nil
}

// one redrives (or, in a dry run, judges) one dead letter; it reports
// whether to go on.
func (r *redriver) one(ctx context.Context, ref streamRef, dl DeadLetter) (bool, error) {
	res := RedriveResult{Stream: ref.Name, ID: dl.ID, EventID: dl.EventID, EventType: dl.EventType, Reason: dl.Reason}
	if why := refusal(ref, dl, r.force); why != "" {
		res.Outcome, res.Why = OutcomeRefused, why
		r.results = append(r.results, res)
		return true, nil
	}
	if r.dryRun {
		res.Outcome = OutcomeWouldRedrive
		r.results = append(r.results, res)
		r.moved++
		r.warnPastWindow(ref, dl)
		return !r.full(), nil
	}
	if err := r.pace(ctx); err != nil {
		return false, err
	}
	newID, err := deadletter.Redrive(ctx, r.rdb, ref.DLQ, ref.Key, dl.ID, &deadletter.RedriveOptions{MarkerTTL: r.markTTL})
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		res.Outcome, res.Why = OutcomeGone, "no longer in the dead-letter stream (redriven or deleted meanwhile)"
		r.results = append(r.results, res)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("redriving %s of %s: %w", dl.ID, ref.DLQ, err)
	}
	res.Outcome, res.NewID = OutcomeRedriven, newID
	r.results = append(r.results, res)
	r.moved++
	r.warnPastWindow(ref, dl)
	if r.a.afterRedrive != nil {
		r.a.afterRedrive(r.moved)
	}
	return !r.full(), nil
}

// warnPastWindow warns on stderr when dl, redriven or about to be, was
// dead-lettered longer ago than --dedup-window: the groups that applied the
// event before may no longer remember it, and apply it again.
func (r *redriver) warnPastWindow(ref streamRef, dl DeadLetter) {
	if r.window <= 0 {
		return
	}
	at, ok := dl.letter.Time()
	if !ok {
		return
	}
	age := r.a.now().Sub(at)
	if age <= r.window {
		return
	}
	ev := ""
	if dl.EventID != "" {
		ev = " (event " + cleanCell(dl.EventID) + ")"
	}
	fmt.Fprintf(r.a.stderr, "warning: %s %s%s: dead-lettered %s ago, past the dedup window: groups that applied it before may apply it again\n",
		ref.Name, dl.ID, ev, fmtAge(age.Seconds()))
}

// pace waits for the next slot of --rate.
func (r *redriver) pace(ctx context.Context) error {
	if r.interval <= 0 {
		return ctx.Err()
	}
	now := time.Now()
	if wait := r.next.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now = r.next
	}
	r.next = now.Add(r.interval)
	return nil
}

func (r *redriver) counts() map[string]int {
	n := map[string]int{}
	for _, res := range r.results {
		n[res.Outcome]++
	}
	return n
}

func (r *redriver) print(jsonOut bool) error {
	w := r.a.stdout
	n := r.counts()
	if jsonOut {
		results := r.results
		if results == nil {
			results = []RedriveResult{}
		}
		return writeJSON(w, struct {
			DryRun  bool            `json:"dry_run"`
			Entries []RedriveResult `json:"entries"`
			Counts  map[string]int  `json:"counts"`
		}{r.dryRun, results, n})
	}
	if len(r.results) == 0 {
		fmt.Fprintln(w, "no dead letters selected")
		return nil
	}
	t := newTable(w)
	t.row("STREAM", "ID", "EVENT ID", "TYPE", "REASON", "RESULT")
	for _, res := range r.results {
		result := strings.ReplaceAll(res.Outcome, "_", " ")
		switch {
		case res.NewID != "":
			result += " as " + res.NewID
		case res.Why != "":
			result += ": " + res.Why
		}
		t.row(res.Stream, res.ID, res.EventID, res.EventType, res.Reason, result)
	}
	if err := t.flush(); err != nil {
		return err
	}
	var parts []string
	for _, o := range []string{OutcomeRedriven, OutcomeWouldRedrive, OutcomeRefused, OutcomeGone, OutcomeNotFound} {
		if n[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[o], strings.ReplaceAll(o, "_", " ")))
		}
	}
	summary := strings.Join(parts, ", ")
	if r.dryRun {
		summary = "dry run, nothing changed: " + summary
	}
	fmt.Fprintf(w, "\n%s\n", summary)
	return nil
}

// unique returns ss without repeats, in first-seen order.
func unique(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
