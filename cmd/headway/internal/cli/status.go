package cli

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

var statusCommand = &command{
	path:    "status",
	summary: "length, groups, lag, pending, consumers and dead letters of catalog streams",
	help: `Status reads every catalog stream (or those named by --stream) and prints
three tables: streams (length, oldest entry's age, last ID, groups, the group
retention keeps the stream for with what it holds, dead letters and the
oldest one's age), groups (lag in entries and seconds, pending entries and
the age of the oldest, consumers, last delivered ID) and consumers (pending, idle, inactive).

Lag is what XINFO GROUPS reports, or 0 when no entry follows the group's
last delivered ID; Redis cannot tell it after trims or for a group created
at an arbitrary ID, and status then says "unknown". Lag seconds and the
oldest pending age are read from the millisecond part of the entry IDs: the
age of the first undelivered entry and of the oldest pending one. Inactive
(time since the consumer's last successful read) needs Redis 7.2; older
servers show "-". A stream that does not exist is listed with length 0.

Examples:
  headway status
  headway status --stream wallet --json`,
	run: (*app).status,
}

// StreamStatus is one stream in the output of status --json.
type StreamStatus struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	Exists  bool   `json:"exists"`
	Length  int64  `json:"length"`
	FirstID string `json:"first_id,omitempty"`
	LastID  string `json:"last_id,omitempty"`
	// OldestAgeSeconds is the age of the first entry, from its ID.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// HeldBy is the group retention keeps the stream for (ADR-020): the
	// one whose oldest needed entry — its oldest pending, or the first
	// not yet delivered to it — is the oldest; empty when every group
	// has acknowledged every entry. HeldEntries is that group's pending
	// plus undelivered entries, null when Redis cannot tell its lag.
	HeldBy        string `json:"held_by,omitempty"`
	HeldEntries   *int64 `json:"held_entries,omitempty"`
	DeadLetterKey string `json:"dead_letter_key"`
	DeadLetters   int64  `json:"dead_letters"`
	// OldestDeadLetterAgeSeconds is the age of the oldest dead letter,
	// from its ID; 0 without dead letters.
	OldestDeadLetterAgeSeconds float64       `json:"oldest_dead_letter_age_seconds"`
	Groups                     []GroupStatus `json:"groups"`
}

// GroupStatus is one consumer group of a stream.
type GroupStatus struct {
	Name                    string  `json:"name"`
	Lag                     *int64  `json:"lag"` // null: Redis cannot tell
	LagSeconds              float64 `json:"lag_seconds"`
	Pending                 int64   `json:"pending"`
	OldestPendingID         string  `json:"oldest_pending_id,omitempty"`
	OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
	LastDeliveredID         string  `json:"last_delivered_id"`
	// Consumers lists the group's consumers by name.
	Consumers []ConsumerStatus `json:"consumers"`
}

// ConsumerStatus is one consumer of a group.
type ConsumerStatus struct {
	Name        string  `json:"name"`
	Pending     int64   `json:"pending"`
	IdleSeconds float64 `json:"idle_seconds"`
	// InactiveSeconds is the time since the last successful read; null
	// before Redis 7.2 or when it never read.
	InactiveSeconds *float64 `json:"inactive_seconds"`
}

func (a *app) status(ctx context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		rf      redisFlags
		cf      catalogFlag
		names   listFlag
		jsonOut bool
	)
	rf.register(fs)
	cf.register(fs)
	fs.Var(&names, "stream", "catalog stream `name` (repeatable or comma-separated; default every stream)")
	fs.BoolVar(&jsonOut, "json", false, "write JSON instead of tables")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
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

	hasInactive := serverHasInactive(ctx, rdb)
	now := a.now()
	out := make([]StreamStatus, 0, len(refs))
	for _, ref := range refs {
		st, err := readStatus(ctx, rdb, ref, now, hasInactive)
		if err != nil {
			return fmt.Errorf("stream %s: %w", ref.Name, err)
		}
		out = append(out, st)
	}
	if jsonOut {
		return writeJSON(a.stdout, struct {
			Streams []StreamStatus `json:"streams"`
		}{out})
	}
	return printStatus(a, out)
}

// readStatus reads one stream with XINFO STREAM, XINFO GROUPS, XRANGE
// (lag age), XPENDING, XINFO CONSUMERS and XLEN of the dead-letter stream.
func readStatus(ctx context.Context, rdb redis.UniversalClient, ref streamRef, now time.Time, hasInactive bool) (StreamStatus, error) {
	st := StreamStatus{Name: ref.Name, Key: ref.Key, DeadLetterKey: ref.DLQ, Groups: []GroupStatus{}}
	n, err := rdb.XLen(ctx, ref.DLQ).Result()
	if err != nil {
		return st, fmt.Errorf("XLEN %s: %w", ref.DLQ, err)
	}
	st.DeadLetters = n
	if n > 0 {
		first, err := rdb.XRangeN(ctx, ref.DLQ, "-", "+", 1).Result()
		if err != nil {
			return st, fmt.Errorf("XRANGE %s: %w", ref.DLQ, err)
		}
		if len(first) > 0 {
			st.OldestDeadLetterAgeSeconds = seconds(idAge(first[0].ID, now))
		}
	}
	info, err := rdb.XInfoStream(ctx, ref.Key).Result()
	if isNoSuchKey(err) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("XINFO STREAM: %w", err)
	}
	st.Exists, st.Length, st.LastID, st.FirstID = true, info.Length, info.LastGeneratedID, info.FirstEntry.ID
	if st.FirstID == "" && st.Length > 0 { // a server whose XINFO STREAM omits first-entry
		first, err := rdb.XRangeN(ctx, ref.Key, "-", "+", 1).Result()
		if err != nil {
			return st, fmt.Errorf("XRANGE %s: %w", ref.Key, err)
		}
		if len(first) > 0 {
			st.FirstID = first[0].ID
		}
	}
	// XINFO STREAM's group count is not trusted: a server may omit the
	// field (miniredis, the demo's embedded Redis, does), which reads as 0.
	groups, err := rdb.XInfoGroups(ctx, ref.Key).Result()
	switch {
	case isNoSuchKey(err) || isNoGroup(err): // deleted meanwhile: no groups
		groups = nil
	case err != nil:
		return st, fmt.Errorf("XINFO GROUPS: %w", err)
	}
	for _, g := range groups {
		gs := GroupStatus{Name: g.Name, LastDeliveredID: g.LastDeliveredID, Consumers: []ConsumerStatus{}}
		next, err := rdb.XRangeN(ctx, ref.Key, "("+g.LastDeliveredID, "+", 1).Result()
		if err != nil {
			return st, fmt.Errorf("XRANGE after group %s: %w", g.Name, err)
		}
		switch {
		case len(next) == 0:
			zero := int64(0)
			gs.Lag = &zero
		case g.Lag >= 0:
			lag := g.Lag
			gs.Lag = &lag
		}
		if len(next) > 0 {
			gs.LagSeconds = seconds(idAge(next[0].ID, now))
		}
		p, err := rdb.XPending(ctx, ref.Key, g.Name).Result()
		if err != nil {
			return st, fmt.Errorf("XPENDING %s: %w", g.Name, err)
		}
		gs.Pending = p.Count
		if p.Count > 0 {
			gs.OldestPendingID = p.Lower
			gs.OldestPendingAgeSeconds = seconds(idAge(p.Lower, now))
		}
		cons, err := rdb.XInfoConsumers(ctx, ref.Key, g.Name).Result()
		if err != nil {
			return st, fmt.Errorf("XINFO CONSUMERS %s: %w", g.Name, err)
		}
		for _, co := range cons {
			cs := ConsumerStatus{Name: co.Name, Pending: co.Pending, IdleSeconds: seconds(co.Idle.Seconds())}
			if hasInactive && co.Inactive >= 0 {
				v := seconds(co.Inactive.Seconds())
				cs.InactiveSeconds = &v
			}
			gs.Consumers = append(gs.Consumers, cs)
		}
		sort.Slice(gs.Consumers, func(i, j int) bool { return gs.Consumers[i].Name < gs.Consumers[j].Name })
		st.Groups = append(st.Groups, gs)
	}
	sort.Slice(st.Groups, func(i, j int) bool { return st.Groups[i].Name < st.Groups[j].Name })
	if st.FirstID != "" {
		st.OldestAgeSeconds = seconds(idAge(st.FirstID, now))
	}
	st.HeldBy, st.HeldEntries = heldBy(st.Groups, st.LastID)
	return st, nil
}

// heldBy returns the group whose oldest needed entry is the oldest, as
// retention.Trim chooses it, and its pending plus undelivered entries
// (nil when its lag is unknown); "" when no group needs an entry up to
// last, the stream's last ID.
func heldBy(groups []GroupStatus, last string) (string, *int64) {
	var (
		by   *GroupStatus
		need string
	)
	for i := range groups {
		g := &groups[i]
		n := g.OldestPendingID
		if g.Pending == 0 {
			n = idAfter(g.LastDeliveredID)
		}
		if n == "" || !streamid.Less(n, idAfter(last)) {
			continue // needs nothing the stream has
		}
		if by == nil || streamid.Less(n, need) {
			by, need = g, n
		}
	}
	if by == nil {
		return "", nil
	}
	if by.Lag == nil {
		return by.Name, nil
	}
	held := by.Pending + *by.Lag
	return by.Name, &held
}

// idAfter returns the stream ID right after id, or "" for an invalid one.
func idAfter(id string) string {
	ms, seq, ok := streamid.Parse(id)
	if !ok || seq == math.MaxUint64 {
		return ""
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}

// serverHasInactive reports whether XINFO CONSUMERS has the inactive
// field: Redis 7.2 and later. When the version cannot be read, it says no.
func serverHasInactive(ctx context.Context, rdb redis.UniversalClient) bool {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return false
		}
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		return err1 == nil && err2 == nil && (major > 7 || major == 7 && minor >= 2)
	}
	return false
}

func printStatus(a *app, out []StreamStatus) error {
	t := newTable(a.stdout)
	t.row("STREAM", "LENGTH", "OLDEST", "LAST ID", "GROUPS", "HELD BY", "DEAD LETTERS", "OLDEST DEAD LETTER")
	for _, s := range out {
		last, oldest, held, oldestDead := s.LastID, "-", "-", "-"
		if !s.Exists {
			last = "(no stream)"
		}
		if s.Length > 0 {
			oldest = fmtAge(s.OldestAgeSeconds)
		}
		if s.HeldBy != "" {
			n := "unknown"
			if s.HeldEntries != nil {
				n = strconv.FormatInt(*s.HeldEntries, 10)
			}
			held = s.HeldBy + " (" + n + ")"
		}
		if s.DeadLetters > 0 {
			oldestDead = fmtAge(s.OldestDeadLetterAgeSeconds)
		}
		t.row(s.Name, strconv.FormatInt(s.Length, 10), oldest, last, strconv.Itoa(len(s.Groups)), held,
			strconv.FormatInt(s.DeadLetters, 10), oldestDead)
	}
	if err := t.flush(); err != nil {
		return err
	}

	var anyGroup, anyConsumer bool
	for _, s := range out {
		for _, g := range s.Groups {
			anyGroup = true
			anyConsumer = anyConsumer || len(g.Consumers) > 0
		}
	}
	if anyGroup {
		fmt.Fprintln(a.stdout)
		t = newTable(a.stdout)
		t.row("STREAM", "GROUP", "LAG", "LAG AGE", "PENDING", "OLDEST PENDING", "CONSUMERS", "LAST DELIVERED")
		for _, s := range out {
			for _, g := range s.Groups {
				lag, lagAge := "unknown", "-"
				if g.Lag != nil {
					lag = strconv.FormatInt(*g.Lag, 10)
				}
				if g.Lag == nil || *g.Lag > 0 {
					lagAge = fmtAge(g.LagSeconds)
				}
				oldest := "-"
				if g.Pending > 0 {
					oldest = fmtAge(g.OldestPendingAgeSeconds)
				}
				t.row(s.Name, g.Name, lag, lagAge, strconv.FormatInt(g.Pending, 10), oldest,
					strconv.Itoa(len(g.Consumers)), g.LastDeliveredID)
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if anyConsumer {
		fmt.Fprintln(a.stdout)
		t = newTable(a.stdout)
		t.row("STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE")
		for _, s := range out {
			for _, g := range s.Groups {
				for _, co := range g.Consumers {
					inactive := "-"
					if co.InactiveSeconds != nil {
						inactive = fmtAge(*co.InactiveSeconds)
					}
					t.row(s.Name, g.Name, co.Name, strconv.FormatInt(co.Pending, 10), fmtAge(co.IdleSeconds), inactive)
				}
			}
		}
		return t.flush()
	}
	return nil
}
