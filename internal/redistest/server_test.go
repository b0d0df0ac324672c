package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/redistest"
)

func TestServerPauseRestart(t *testing.T) {
	s := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	c := s.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := c.Get(short, "k").Err()
	cancel()
	if err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after resume: %q, %v", v, err)
	}

	s.Restart()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("append-only server lost a write across restart: %q, %v", v, err)
	}

	empty := redistest.StartServer(t, redistest.ServerOptions{})
	ec := empty.Client()
	_ = ec.Set(ctx, "k", "v", 0).Err()
	empty.Restart()
	if n, err := ec.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("server without persistence kept data across restart: %d, %v", n, err)
	}
}
