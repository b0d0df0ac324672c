package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/service"
)

func TestOpenRedisFromTheEnvironment(t *testing.T) {
	t.Setenv(service.EnvRedisURL, "redis://127.0.0.1:6379/0")
	rdb, err := service.OpenRedis("")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rdb.Close() }()
	if !rdb.Options().ContextTimeoutEnabled {
		t.Error("ContextTimeoutEnabled is off: a hung Redis would ignore deadlines")
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Setenv(service.EnvRedisURL, "")
	if _, err := service.OpenRedis(""); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("no URL: %v, want ErrInvalidConfig", err)
	}
	_, err = service.OpenRedis("rediss://user:s3cret@host:notaport/0")
	if !errors.Is(err, service.ErrInvalidConfig) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: %v, want ErrInvalidConfig without the password", err)
	}
}

func TestOpenPostgresFromTheEnvironment(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv(service.EnvDatabaseURL, db.URL)
	pool, err := service.OpenPostgres(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Setenv(service.EnvDatabaseURL, "")
	if _, err := service.OpenPostgres(context.Background(), ""); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("no URL: %v, want ErrInvalidConfig", err)
	}
}

func TestGuardAndWriterFromTheService(t *testing.T) {
	s, err := service.New(service.Config{Name: "producer", Addr: "127.0.0.1:0", Registry: prometheus.NewPedanticRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	t.Setenv(brandguard.EnvVar, "observe")
	g, err := s.Guard(platform.Catalog())
	if err != nil || g.Mode() != brandguard.ModeObserve {
		t.Fatalf("Guard with MULTI_BRAND_ENFORCEMENT=observe: %v, %v", g, err)
	}
	t.Setenv(brandguard.EnvVar, "lenient")
	if _, err := s.Guard(platform.Catalog()); !errors.Is(err, brandguard.ErrInvalidMode) {
		t.Errorf("an invalid mode: %v, want ErrInvalidMode", err)
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), Registerer: s.Registerer()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddWriter(w); err != nil {
		t.Fatal(err)
	}
	// Before Run the tree is pending, so /ready is 503; the writer's check
	// is there, and passes.
	rec := httptestGet(t, s.Handler(), "/ready?full=1")
	var checks map[string]string
	if err := json.Unmarshal([]byte(rec.body), &checks); err != nil || checks[service.WriterCheck] != "OK" {
		t.Errorf("/ready = %d %s (%v), want the writer's check OK", rec.code, rec.body, err)
	}
}

type recorded struct {
	code int
	body string
}

func httptestGet(t *testing.T, h http.Handler, path string) recorded {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return recorded{rec.Code, rec.Body.String()}
}
