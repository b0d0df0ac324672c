package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		for _, args := range [][]string{
			append(strings.Fields(c.path), "--help"),
			append(strings.Fields(c.path), "-h"),
			append([]string{"help"}, strings.Fields(c.path)...),
		} {
			r := run(t, args...)
			if r.code != ExitOK {
				t.Errorf("%q: exit %d, want 0; stderr %s", args, r.code, r.stderr)
			}
			for _, want := range []string{"Usage: headway " + c.path, "Exit status:", "2  usage error"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("%q: help lacks %q:\n%s", args, want, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("%q: help wrote to stderr: %s", args, r.stderr)
			}
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := run(t, args...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "dlq redrive") || !strings.Contains(r.stdout, "Exit status:") {
			t.Errorf("%q: exit %d, stdout:\n%s", args, r.code, r.stdout)
		}
	}
	for _, g := range []string{"dlq", "catalog"} {
		r := run(t, g, "--help")
		if r.code != ExitOK || !strings.Contains(r.stdout, "headway "+g+" ") {
			t.Errorf("%s --help: exit %d, stdout:\n%s", g, r.code, r.stdout)
		}
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(bad, []byte(`{"streams":[{"name":"Wallet"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string // in stderr
	}{
		{nil, "Usage:"},
		{[]string{"stats"}, `unknown command "stats"`},
		{[]string{"dlq"}, "missing subcommand"},
		{[]string{"dlq", "purge"}, `unknown command "dlq purge"`},
		{[]string{"status", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"status", "--stream", "promotion"}, `unknown stream "promotion" (catalog streams: wallet, rolling, player, agent)`},
		{[]string{"status", "--redis-url", "ftp://localhost"}, "bad --redis-url"},
		{[]string{"status", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"status", "--catalog", bad}, "--catalog"},
		{[]string{"status", "--catalog", filepath.Join(t.TempDir(), "missing.json")}, "--catalog"},
		{[]string{"dlq", "list", "--reason", "boom"}, `unknown --reason "boom"`},
		{[]string{"dlq", "list", "--type", "bet_settled"}, "not an event type name"},
		{[]string{"dlq", "list", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"dlq", "list", "--limit", "many"}, `invalid value "many" for flag -limit`},
		{[]string{"dlq", "show"}, "missing argument ID"},
		{[]string{"dlq", "show", "1-0", "2-0"}, `unexpected argument "2-0" after ID`},
		{[]string{"dlq", "show", "last"}, `"last" is not a stream entry ID`},
		{[]string{"dlq", "redrive"}, "choose the entries: --id, --reason, --type or --all"},
		{[]string{"dlq", "redrive", "--id", "1-0", "--all"}, "does not combine"},
		{[]string{"dlq", "redrive", "--all", "--reason", "malformed"}, "does not combine"},
		{[]string{"dlq", "redrive", "--id", "1-0,x"}, `--id "x" is not a stream entry ID`},
		{[]string{"dlq", "redrive", "--all", "--rate", "-1"}, "--rate must not be negative"},
		{[]string{"catalog", "export", "--format", "yaml"}, `--format "yaml": want md or json`},
		{[]string{"catalog", "check", "--types", "BET_SETTLED_CONFIRMED"}, "--stream is required"},
		{[]string{"catalog", "check", "--stream", "wallet"}, "--types is required"},
		{[]string{"catalog", "check", "--stream", "wallet", "--types", "bet_settled_confirmed"}, "not an event type name"},
		{[]string{"catalog", "check", "--stream", "promotion", "--types", "BET_SETTLED_CONFIRMED"}, `unknown stream "promotion"`},
	}
	for _, tc := range cases {
		r := run(t, tc.args...)
		if r.code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, r.code, ExitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: stderr %q does not say %q", tc.args, r.stderr, tc.want)
		}
		if r.stdout != "" {
			t.Errorf("%q: a usage error wrote to stdout: %q", tc.args, r.stdout)
		}
	}
}

func TestUnreachableRedisIsAFailure(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections.
	r := run(t, "status", "--redis-url", "redis://127.0.0.1:1/0", "--timeout", "200ms")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "Redis at 127.0.0.1:1 does not answer") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	// The password of the URL never appears in a message.
	r = run(t, "status", "--redis-url", "redis://user:s3cret@127.0.0.1:1/0", "--timeout", "200ms")
	if strings.Contains(r.stderr+r.stdout, "s3cret") {
		t.Fatalf("the password leaked: %q", r.stderr)
	}
}

func TestRunTakesREDIS_URL(t *testing.T) {
	t.Parallel()
	var out, errb strings.Builder
	env := func(k string) string {
		if k == EnvRedisURL {
			return "redis://127.0.0.1:1/0"
		}
		return ""
	}
	code := Run(context.Background(), []string{"status", "--timeout", "200ms"}, &out, &errb, env)
	if code != ExitFailure || !strings.Contains(errb.String(), "127.0.0.1:1") {
		t.Fatalf("exit %d, stderr %q: REDIS_URL not used", code, errb.String())
	}
}

func TestCatalogExport(t *testing.T) {
	t.Parallel()
	md := mustRun(t, "catalog", "export")
	if want := string(platform.Catalog().Markdown()); md.stdout != want {
		t.Errorf("catalog export differs from platform.Catalog().Markdown()")
	}
	if md2 := mustRun(t, "catalog", "export", "--format", "md"); md2.stdout != md.stdout {
		t.Errorf("--format md differs from the default")
	}
	js := mustRun(t, "catalog", "export", "--format", "json")
	want, err := platform.Catalog().JSON()
	if err != nil {
		t.Fatal(err)
	}
	if js.stdout != string(want) {
		t.Errorf("catalog export --format json differs from platform.Catalog().JSON()")
	}

	// The JSON export is a catalog --catalog reads back.
	path := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(path, []byte(js.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	again := mustRun(t, "catalog", "export", "--catalog", path)
	if again.stdout != md.stdout {
		t.Errorf("the catalog read back from its JSON export renders differently")
	}
}

func TestCatalogCheck(t *testing.T) {
	t.Parallel()
	ok := mustRun(t, "catalog", "check", "--stream", "wallet", "--types", "BET_SETTLED_CONFIRMED,BET_ROLLED_BACK_CONFIRMED")
	if !strings.Contains(ok.stdout, "ok") {
		t.Errorf("stdout %q", ok.stdout)
	}

	r := run(t, "catalog", "check", "--stream", "wallet", "--types", "BET_SETTLED_CONFIRMED",
		"--types", "PROMOTION_CREDITED,BRAND_AWARE_PUBLISHING_BEGINS,PLAYER_REGISTERED")
	if r.code != ExitFailure {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"PROMOTION_CREDITED", "BRAND_AWARE_PUBLISHING_BEGINS", "PLAYER_REGISTERED", "reserved"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "BET_SETTLED_CONFIRMED") {
		t.Errorf("an emitted type is listed as a problem:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "3 of 4 types not dispatchable on stream wallet") {
		t.Errorf("stderr %q", r.stderr)
	}

	r = run(t, "catalog", "check", "--stream", "wallet", "--types", "COUPON_EXPIRED", "--json")
	var res CheckResult
	decodeJSON(t, r.stdout, &res)
	if r.code != ExitFailure || res.OK || len(res.Problems) != 1 || res.Problems[0].Type != "COUPON_EXPIRED" {
		t.Errorf("exit %d, %+v", r.code, res)
	}
	// The same check as the consumers' start-up.
	wantErr := platform.Catalog().CheckDispatch("wallet", []event.Type{platform.CouponExpired})
	if wantErr == nil || !strings.Contains(wantErr.Error(), res.Problems[0].Why) {
		t.Errorf("problem %q is not CheckDispatch's (%v)", res.Problems[0].Why, wantErr)
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	a := &app{stdout: io.Discard, stderr: io.Discard, env: testEnv}
	fs := flagSet(dlqShowCommand)
	var j bool
	var s string
	fs.BoolVar(&j, "json", false, "")
	fs.StringVar(&s, "stream", "", "")
	pos, err := a.parse(dlqShowCommand, fs, []string{"--stream", "wallet", "1-0", "--json"}, 1, 1)
	if err != nil || len(pos) != 1 || pos[0] != "1-0" || !j || s != "wallet" {
		t.Fatalf("pos %q, json %v, stream %q, err %v", pos, j, s, err)
	}
	fs = flagSet(dlqShowCommand)
	fs.BoolVar(&j, "json", false, "")
	pos, err = a.parse(dlqShowCommand, fs, []string{"--", "--json"}, 1, 1)
	if err != nil || len(pos) != 1 || pos[0] != "--json" {
		t.Fatalf("after --: pos %q, err %v", pos, err)
	}
}

func TestFmtAge(t *testing.T) {
	t.Parallel()
	for sec, want := range map[float64]string{0: "0ms", 0.85: "850ms", 4.25: "4.2s", 184: "3m04s", 7380: "2h03m", 3*86400 + 4*3600: "3d04h", -1: "-"} {
		if got := fmtAge(sec); got != want {
			t.Errorf("fmtAge(%v) = %q, want %q", sec, got, want)
		}
	}
}

// TestBadRedisURLKeepsThePassword gives malformed URLs with a password:
// url.Parse's error quotes the whole URL, and some errors quote a part of
// it, so a careless message repeats the password or a piece of it.
func TestBadRedisURLKeepsThePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url    string
		secret []string // none may appear in the output
		want   string   // in stderr
	}{
		// A space in the host: url.Parse fails, quoting the URL.
		{"redis://user:s3cret@ho st:6379/0", []string{"s3cret", "user:"}, `invalid character " " in host name`},
		// A bad %-escape: the error quotes the escape, inside the password.
		{"redis://user:pa%zzs3cret@127.0.0.1:1/0", []string{"s3cret", "%zz", "zzs3"}, "invalid %-escape"},
		// An unescaped '/' in the password: part of it becomes the port.
		{"redis://user:s3/cret@127.0.0.1:1/0", []string{"s3/cret", ":s3", "cret@"}, "invalid port"},
		// ... or, when numeric, a valid port, and the rest the path.
		{"redis://user:12/34s3cret@127.0.0.1:1/0", []string{"s3cret", "user:12", "34s3"}, "bad --redis-url"},
		// An unescaped '#': the rest of the password and the host are a
		// fragment, which go-redis ignores; it would dial user:12.
		{"redis://user:12#s3cret@127.0.0.1:1/0", []string{"s3cret", "user:12", "12#"}, "an '@' after the host"},
		// A bad database number, quoted by go-redis (a cluster URL has none).
		{"redis://user:s3cret@127.0.0.1:1/x", []string{"s3cret"}, "invalid database number"},
	} {
		for _, cluster := range []bool{false, true} {
			if cluster && strings.HasSuffix(tc.url, "/x") {
				continue
			}
			args := []string{"status", "--redis-url", tc.url, "--timeout", "200ms"}
			if cluster {
				args = append(args, "--cluster")
			}
			r := run(t, args...)
			for _, s := range tc.secret {
				if strings.Contains(r.stderr+r.stdout, s) {
					t.Errorf("%q (cluster %v): the output holds %q:\n%s", tc.url, cluster, s, r.stderr)
				}
			}
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%q (cluster %v): exit %d, stderr %q, want exit 2 and %q", tc.url, cluster, r.code, r.stderr, tc.want)
			}
		}
	}
}

func TestURLSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	raw := "redis://admin:p%40ss%2Fw0rd@cache.internal:6379/0"
	msg := redactURL("dial "+raw+": AUTH admin:p@ss/w0rd failed p%40ss%2Fw0rd", raw)
	for _, s := range []string{"p@ss/w0rd", "p%40ss%2Fw0rd", raw} {
		if strings.Contains(msg, s) {
			t.Errorf("%q holds %q", msg, s)
		}
	}
	// A message without secrets is left alone.
	if got := redactURL("Redis at cache.internal:6379 does not answer", raw); got != "Redis at cache.internal:6379 does not answer" {
		t.Errorf("changed to %q", got)
	}
}
