package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// DefaultTimeout bounds one Redis call unless --timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// redisFlags are the connection flags of the commands that talk to Redis.
type redisFlags struct {
	url     string
	cluster bool
	prefix  string
	timeout time.Duration
}

func (rf *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&rf.url, "redis-url", "", "Redis `URL`: redis://, rediss:// or unix:// (default $"+EnvRedisURL+", else "+DefaultRedisURL+")")
	fs.BoolVar(&rf.cluster, "cluster", false, "the URL names a Redis Cluster node (more nodes with ?addr=host:port)")
	fs.StringVar(&rf.prefix, "prefix", "", "key `prefix` before every stream key, as in <prefix>events:{wallet}")
	fs.DurationVar(&rf.timeout, "timeout", DefaultTimeout, "bound on connecting and on each Redis call")
}

// connect parses the URL and returns a client that has answered a PING.
// A bad URL is a usage error; an unreachable server an operational one.
// Messages never repeat the URL, nor any part of it that may hold a
// credential: see urlProblem and redactURL.
func (a *app) connect(ctx context.Context, rf *redisFlags) (redis.UniversalClient, error) {
	raw := rf.url
	if raw == "" {
		raw = a.env(EnvRedisURL)
	}
	if raw == "" {
		raw = DefaultRedisURL
	}
	if rf.timeout <= 0 {
		return nil, usagef("--timeout must be positive")
	}
	badURL := func(problem string) error {
		return usagef("bad --redis-url: %s (the URL is not repeated: it may hold a password)", redactURL(problem, raw))
	}
	// A password with an unescaped '/', '?' or '#' ends the authority early:
	// the rest of the password and the '@' land in the path, query or
	// fragment, and a piece of the password becomes the host or port.
	if u, err := url.Parse(raw); err == nil && u.User == nil && strings.Contains(raw, "@") {
		return nil, badURL("an '@' after the host: percent-encode '/', '?', '#' and '@' in the user name, password and query values")
	}
	var (
		rdb   redis.UniversalClient
		where string
	)
	if rf.cluster {
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, badURL(urlProblem(err))
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = rf.timeout, rf.timeout, rf.timeout
		o.ContextTimeoutEnabled = true // else go-redis ignores context deadlines
		where = "Redis Cluster at " + strings.Join(o.Addrs, ",")
		rdb = redis.NewClusterClient(o)
	} else {
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, badURL(urlProblem(err))
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = rf.timeout, rf.timeout, rf.timeout
		o.ContextTimeoutEnabled = true // else go-redis ignores context deadlines
		where = "Redis at " + o.Addr
		rdb = redis.NewClient(o)
	}
	// No deadline of its own: DialTimeout and ReadTimeout bound each try,
	// and the dial error says more than "context deadline exceeded".
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, &redactedError{err: fmt.Errorf("%s does not answer: %w", where, err), raw: raw}
	}
	return rdb, nil
}

// urlProblem says what is wrong with a Redis URL without repeating any of
// it. url.Parse's errors (*url.Error) quote the whole URL, password
// included; several inner errors, and go-redis's own, quote a part of it (a
// port, a path, a query value, an escape), which can be a piece of a
// password whose special characters were not escaped. So only the text
// before the first quote or colon of the inner error is kept ("invalid
// port", "invalid URL scheme", "invalid database number"), except for an
// invalid host character, which names one character and helps most.
func urlProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var host url.InvalidHostError
	if errors.As(err, &host) {
		return err.Error() // invalid character " " in host name
	}
	var esc url.EscapeError
	if errors.As(err, &esc) {
		return "invalid %-escape"
	}
	msg := err.Error()
	for _, p := range []string{"redis: ", "net/url: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if i := strings.IndexAny(msg, `":`); i >= 0 {
		msg = msg[:i]
	}
	if msg = strings.TrimSpace(msg); msg == "" {
		return "malformed URL"
	}
	return msg
}

// urlSecrets returns the parts of the Redis URL raw that a message must
// not contain: its user info and password, as written and decoded, read
// both by url.Parse and, for a URL it rejects, as the text between "://"
// and the last '@'.
func urlSecrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s == "" || slices.Contains(out, s) {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			add(u.User.String())
		}
	}
	rest := raw
	if _, after, ok := strings.Cut(raw, "://"); ok {
		rest = after
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		if _, pass, ok := strings.Cut(rest[:i], ":"); ok {
			add(rest[:i])
			add(pass)
		}
	}
	// Longest first, so that a password inside the user info is not
	// replaced piecemeal.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// redactURL replaces in msg the URL raw and every secret of it.
func redactURL(msg, raw string) string {
	msg = strings.ReplaceAll(msg, raw, "<redis-url>")
	for _, s := range urlSecrets(raw) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

// redactedError is err with the URL raw and its secrets removed from its
// message; errors.Is and errors.As still see err.
type redactedError struct {
	err error
	raw string
}

func (e *redactedError) Error() string { return redactURL(e.err.Error(), e.raw) }
func (e *redactedError) Unwrap() error { return e.err }

// catalogFlag is the --catalog flag of the commands that read the catalog.
type catalogFlag struct{ path string }

func (cf *catalogFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.path, "catalog", "", "event catalog as JSON `file`, as 'catalog export --format json' writes it (default: the built-in platform catalog)")
}

// load returns the catalog: the platform's, or the file's after Validate.
func (cf *catalogFlag) load() (*event.Catalog, error) {
	if cf.path == "" {
		return platform.Catalog(), nil
	}
	b, err := os.ReadFile(cf.path)
	if err != nil {
		return nil, usagef("--catalog: %v", err)
	}
	var c event.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, usagef("--catalog %s: not a catalog: %v", cf.path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, usagef("--catalog %s: %v", cf.path, err)
	}
	return &c, nil
}

// streamRef is one catalog stream and its keys under the prefix.
type streamRef struct {
	Name string
	Key  string // prefix + events:{name}
	DLQ  string // prefix + events:{name}:dlq
}

// selectStreams returns the named catalog streams, or all of them when
// names is empty. An unknown name is a usage error that lists the known.
func selectStreams(cat *event.Catalog, prefix string, names []string) ([]streamRef, error) {
	if len(names) == 0 {
		for _, s := range cat.Streams {
			names = append(names, s.Name)
		}
	}
	var out []streamRef
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := cat.Stream(n)
		if !ok {
			return nil, usagef("unknown stream %q (catalog streams: %s)", n, strings.Join(streamNames(cat), ", "))
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, streamRef{Name: s.Name, Key: prefix + s.Key(), DLQ: prefix + s.DeadLetterKey()})
	}
	return out, nil
}

func streamNames(cat *event.Catalog) []string {
	out := make([]string, len(cat.Streams))
	for i, s := range cat.Streams {
		out[i] = s.Name
	}
	return out
}

// isNoSuchKey reports whether err is Redis's answer for a missing stream.
func isNoSuchKey(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && strings.Contains(err.Error(), "no such key")
}

// isNoGroup reports whether err is Redis's NOGROUP answer.
func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}
