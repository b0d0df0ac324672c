package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"
	"go.uber.org/goleak"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// blocker is a service that runs until its context is cancelled.
type blocker struct{}

func (blocker) Serve(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// serviceFunc adapts a function to suture.Service.
type serviceFunc func(ctx context.Context) error

func (f serviceFunc) Serve(ctx context.Context) error { return f(ctx) }

// permanent is a service that fails for good at once with msg.
func permanent(msg string) suture.Service {
	return serviceFunc(func(context.Context) error {
		return fmt.Errorf("%s: %w", msg, suture.ErrDoNotRestart)
	})
}

// failing is a service that fails at once, every time, with msg.
func failing(msg string) suture.Service {
	return serviceFunc(func(context.Context) error { return errors.New(msg) })
}

// newTree returns a tree reporting into probes (nil: none) whose worker
// goes into backoff at its second quick failure and stays there for the
// test.
func newTree(t *testing.T, name string, probes *readiness.Probes) *supervisor.Tree {
	t.Helper()
	tree, err := supervisor.New(supervisor.Config{
		Name:             name,
		Logger:           slog.New(slog.DiscardHandler),
		Probes:           probes,
		FailureThreshold: 1,
		FailureDecay:     time.Hour,
		FailureBackoff:   time.Hour,
		BackoffJitter:    suture.NoJitter{},
		StopTimeout:      time.Second,
		ShutdownTimeout:  2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// serve serves tree until the test ends, and waits for it to stop.
func serve(t *testing.T, tree *supervisor.Tree) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("tree.Serve() = %v, want context.Canceled", err)
		}
	})
}

// waitForState waits until the worker name of tree is in state want.
func waitForState(t *testing.T, tree *supervisor.Tree, name string, want supervisor.ServiceState) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("worker %q %v", name, want), func() bool {
		st, ok := tree.Status(name)
		return ok && st.State == want
	})
}

func newProbes(t *testing.T) *readiness.Probes {
	t.Helper()
	p, err := readiness.NewProbes(readiness.ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newHandler(t *testing.T, cfg status.Config) *status.Handler {
	t.Helper()
	h, err := status.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// do serves one request; hdr holds header name and value pairs.
func do(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// page gets the HTML page and checks the answer's code and headers.
func page(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := do(h, http.MethodGet, "/status")
	checkHeaders(t, rec, http.StatusOK, "text/html; charset=utf-8")
	return rec.Body.String()
}

// snapshot gets the JSON form and decodes it.
func snapshot(t *testing.T, h http.Handler) status.Snapshot {
	t.Helper()
	rec := do(h, http.MethodGet, "/status?format=json")
	checkHeaders(t, rec, http.StatusOK, "application/json")
	var s status.Snapshot
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
	return s
}

func checkHeaders(t *testing.T, rec *httptest.ResponseRecorder, code int, contentType string) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("code = %d, want %d; body %q", rec.Code, code, rec.Body.String())
	}
	for name, want := range map[string]string{
		"Content-Type":           contentType,
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
	}
}

// row returns the table row of name on the page ("" if none): from its
// name cell to the end of the row.
func row(body, name string) string {
	i := strings.Index(body, `<td class="name">`+name+`</td>`)
	if i < 0 {
		return ""
	}
	end := strings.Index(body[i:], "</tr>")
	if end < 0 {
		return body[i:]
	}
	return body[i : i+end]
}

// badge is the markup of a state's badge.
func badge(tone status.Tone, state string) string {
	return `<span class="badge ` + string(tone) + `">` + state + `</span>`
}
