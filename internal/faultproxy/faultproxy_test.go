package faultproxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/redistest"
)

func TestFreezeHoldsAndThawDelivers(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	p, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "1", 0).Err(); err != nil {
		t.Fatalf("through a thawed proxy: %v", err)
	}

	p.Freeze()
	if !p.Frozen() {
		t.Fatal("Frozen() = false after Freeze")
	}
	// The write is held, not refused: the call times out, it does not fail fast.
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.Incr(tctx, "k").Err()
	cancel()
	if err == nil {
		t.Fatal("INCR through a frozen proxy succeeded")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("INCR through a frozen proxy failed after %v (%v): a freeze must hang, not refuse", took, err)
	}
	// A new connection hangs too.
	c2 := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c2.Close() })
	tctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	err = c2.Ping(tctx).Err()
	cancel()
	if err == nil {
		t.Fatal("a new connection through a frozen proxy answered")
	}

	p.Thaw()
	// The held INCR reaches the server after the thaw: a frozen network
	// delays, it does not drop.
	direct := srv.Client()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := direct.Get(ctx, "k").Result()
		if err == nil && v == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the INCR held by the freeze never arrived: k=%q (%v)", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after thaw: %v", err)
	}
}

func TestResetClosesConnections(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	p, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("PING through the proxy: %q, %v", buf[:n], err)
	}
	p.Reset()
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("read on a reset connection returned %q, want an error", buf[:n])
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING on a new connection after reset: %v", err)
	}
}
