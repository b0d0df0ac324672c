package runbookcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	moduleRoot  = "../.."
	runbookPath = "../../docs/operations.md"
)

// quote is a log line the runbook quotes.
type quote struct {
	msg  string   // the message; … stands for any text
	keys []string // attribute keys named beside it
	line int      // where it starts in the runbook
}

var (
	// quoteRE finds a quoted message: "log line `…`" (or "log lines").
	quoteRE = regexp.MustCompile("(?i)\\blog lines? `([^`]+)`")
	// otherQuoteRE finds a message quoted another way, which the check
	// would miss.
	otherQuoteRE = regexp.MustCompile("(?i)\\b(logs|logged)\\s*:?\\s*`([^`]+)`")
	keyRE        = regexp.MustCompile("`([a-z][a-z0-9_]*)`")
	withRE       = regexp.MustCompile(`\b(with|carries)\b`)
	sentenceEnd  = regexp.MustCompile(`[.;](\s|$)`)
	spaceRE      = regexp.MustCompile(`\s+`)
)

// readQuotes returns the log lines the runbook quotes, in order. It fails
// the test on a message quoted other than as "log line `…`".
func readQuotes(t *testing.T) []quote {
	t.Helper()
	b, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		quotes []quote
		block  []string
		start  int
		fenced bool
	)
	flush := func() {
		text := spaceRE.ReplaceAllString(strings.Join(block, " "), " ")
		block = block[:0]
		for _, m := range otherQuoteRE.FindAllStringSubmatch(text, -1) {
			t.Errorf("docs/operations.md:%d: %q: quote a log message as \"the log line `…`\" so that it is checked", start, m[0])
		}
		ms := quoteRE.FindAllStringSubmatchIndex(text, -1)
		for i, m := range ms {
			rest := text[m[1]:]
			if i+1 < len(ms) {
				rest = text[m[1]:ms[i+1][0]]
			}
			if e := sentenceEnd.FindStringIndex(rest); e != nil {
				rest = rest[:e[0]]
			}
			q := quote{msg: text[m[2]:m[3]], line: start}
			if w := withRE.FindStringIndex(rest); w != nil {
				for _, k := range keyRE.FindAllStringSubmatch(rest[w[0]:], -1) {
					q.keys = append(q.keys, k[1])
				}
			}
			quotes = append(quotes, q)
		}
	}
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			fenced = !fenced
			flush()
			continue
		}
		if fenced {
			continue
		}
		// A block is a paragraph, a list item or a table row.
		if trimmed == "" || strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(trimmed, "|") || strings.HasPrefix(trimmed, "#") {
			flush()
			start = i + 1
			if trimmed == "" {
				start = i + 2
			}
		}
		block = append(block, trimmed)
	}
	flush()
	return quotes
}

// logCall is a call of a slog method in the code.
type logCall struct {
	msg  string
	keys map[string]bool // keys set by the call's function or its package's loggers
	pos  string
}

// logMethods maps the slog methods to the index of their message argument.
var logMethods = map[string]int{
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
	"Log": 2, "LogAttrs": 2,
}

// attrFuncs are the slog functions whose first argument is a key.
var attrFuncs = map[string]bool{
	"String": true, "Int": true, "Int64": true, "Uint64": true, "Float64": true,
	"Bool": true, "Time": true, "Duration": true, "Any": true, "Group": true,
}

// readLogCalls parses the module's non-test Go files and returns every
// call of a slog method whose message it can evaluate.
func readLogCalls(t *testing.T) []logCall {
	t.Helper()
	fset := token.NewFileSet()
	type file struct {
		dir string
		f   *ast.File
	}
	var files []file
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != moduleRoot && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, file{filepath.Dir(path), f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// String constants, by package directory and by "pkg.Name".
	local := map[string]map[string]string{}
	qualified := map[string]string{}
	// A constant may be defined by another one (consumer.AttrError =
	// logkey.Error): resolve until nothing more resolves.
	for resolved := true; resolved; {
		resolved = false
		for _, f := range files {
			for _, decl := range f.f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						if _, done := local[f.dir][name.Name]; done {
							continue
						}
						s, ok := stringLit(vs.Values[i])
						if !ok {
							if sel, isSel := vs.Values[i].(*ast.SelectorExpr); isSel {
								if x, isID := sel.X.(*ast.Ident); isID {
									s, ok = qualified[x.Name+"."+sel.Sel.Name]
								}
							} else if id, isID := vs.Values[i].(*ast.Ident); isID {
								s, ok = local[f.dir][id.Name]
							}
						}
						if ok {
							if local[f.dir] == nil {
								local[f.dir] = map[string]string{}
							}
							local[f.dir][name.Name] = s
							qualified[f.f.Name.Name+"."+name.Name] = s
							resolved = true
						}
					}
				}
			}
		}
	}
	keyOf := func(dir string, e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.Ident:
			s, ok := local[dir][e.Name]
			return s, ok
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok {
				s, ok := qualified[x.Name+"."+e.Sel.Name]
				return s, ok
			}
		}
		return stringLit(e)
	}
	// keysIn adds the keys of the slog attributes built in n.
	keysIn := func(dir string, n ast.Node, keys map[string]bool) {
		ast.Inspect(n, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "slog" && attrFuncs[sel.Sel.Name] {
				if k, ok := keyOf(dir, call.Args[0]); ok {
					keys[k] = true
				}
			}
			return true
		})
	}

	// Keys of the loggers a package derives with With: every call of its
	// loggers carries them.
	withKeys := map[string]map[string]bool{}
	for _, f := range files {
		ast.Inspect(f.f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "With" {
				if withKeys[f.dir] == nil {
					withKeys[f.dir] = map[string]bool{}
				}
				keysIn(f.dir, call, withKeys[f.dir])
			}
			return true
		})
	}

	var calls []logCall
	for _, f := range files {
		for _, decl := range f.f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			var fnKeys map[string]bool // built on the first log call
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				at, ok := logMethods[sel.Sel.Name]
				if !ok || at >= len(call.Args) {
					return true
				}
				msgs := messages(fn.Body, call.Args[at])
				if len(msgs) == 0 {
					return true
				}
				if fnKeys == nil {
					fnKeys = map[string]bool{}
					keysIn(f.dir, fn.Body, fnKeys)
					for k := range withKeys[f.dir] {
						fnKeys[k] = true
					}
				}
				for _, m := range msgs {
					calls = append(calls, logCall{msg: m, keys: fnKeys, pos: fset.Position(call.Pos()).String()})
				}
				return true
			})
		}
	}
	if len(calls) == 0 {
		t.Fatal("no log calls found in the code")
	}
	return calls
}

// messages returns the strings e can be: a constant string expression, or
// a variable of body that is only ever assigned constant strings.
func messages(body *ast.BlockStmt, e ast.Expr) []string {
	if s, ok := stringLit(e); ok {
		return []string{s}
	}
	id, ok := e.(*ast.Ident)
	if !ok {
		return nil
	}
	var out []string
	ast.Inspect(body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) != len(as.Rhs) {
			return true
		}
		for i, l := range as.Lhs {
			if li, ok := l.(*ast.Ident); ok && li.Name == id.Name {
				if s, ok := stringLit(as.Rhs[i]); ok {
					out = append(out, s)
				}
			}
		}
		return true
	})
	return out
}

// stringLit evaluates a string literal or a concatenation of them.
func stringLit(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := stringLit(e.X)
		y, ok2 := stringLit(e.Y)
		return x + y, ok1 && ok2
	case *ast.ParenExpr:
		return stringLit(e.X)
	}
	return "", false
}

// pattern turns a quoted message into a regexp: … stands for any text.
func pattern(msg string) *regexp.Regexp {
	parts := strings.Split(msg, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*`) + `$`)
}

// TestRunbookQuotesLoggedMessages checks that every log line
// docs/operations.md quotes is a message the code logs, and that the
// attribute keys it names are set by a call that logs it.
func TestRunbookQuotesLoggedMessages(t *testing.T) {
	quotes := readQuotes(t)
	if len(quotes) < 10 {
		t.Fatalf("docs/operations.md: found only %d quoted log lines; is the convention (see doc.go) still followed?", len(quotes))
	}
	calls := readLogCalls(t)
	for _, q := range quotes {
		re := pattern(q.msg)
		keys := map[string]bool{}
		var found []string
		for _, c := range calls {
			if re.MatchString(c.msg) {
				found = append(found, c.pos)
				for k := range c.keys {
					keys[k] = true
				}
			}
		}
		if len(found) == 0 {
			t.Errorf("docs/operations.md:%d: the log line %q is not a message the code logs", q.line, q.msg)
			continue
		}
		for _, k := range q.keys {
			if !keys[k] {
				have := make([]string, 0, len(keys))
				for k := range keys {
					have = append(have, k)
				}
				slices.Sort(have)
				t.Errorf("docs/operations.md:%d: the log line %q has no attribute %q (logged at %s with %v)",
					q.line, q.msg, k, strings.Join(found, ", "), have)
			}
		}
	}
}

// TestPattern pins the convention's ellipsis.
func TestPattern(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		quote, msg string
		want       bool
	}{
		{"job run failed", "job run failed", true},
		{"job run failed", "job run failed twice", false},
		{"outbox row parked: …", "outbox row parked: it can never be appended (x.y)", true},
		{"a … c", "a b c", true},
		{"a … c", "a b d", false},
	} {
		if got := pattern(c.quote).MatchString(c.msg); got != c.want {
			t.Errorf("pattern(%q).MatchString(%q) = %v, want %v", c.quote, c.msg, got, c.want)
		}
	}
}
