package cli

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

// TestRedriveReportsAMoveWhoseReplyWasLost: the connection drops after the
// redrive script ran and before its reply arrived; go-redis sends the call
// again, and the command reports the entry redriven, not gone.
func TestRedriveReportsAMoveWhoseReplyWasLost(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, dlq := walletKeys(prefix)
	id := deadLetter(t, rdb, prefix, envelope("lost-1", platform.BetSettledConfirmed), consumer.ReasonHandlerPermanent)
	p := startLossyProxy(t, rdb.Options().Addr)

	r := run(t, "dlq", "redrive", "--prefix", prefix, "--redis-url", "redis://"+p.ln.Addr().String()+"/0", "--id", id, "--json")
	if !p.lost.Load() {
		t.Fatal("no reply was lost")
	}
	var out redriveOutput
	decodeJSON(t, r.stdout, &out)
	if r.code != ExitOK || len(out.Entries) != 1 || out.Entries[0].Outcome != OutcomeRedriven {
		t.Fatalf("exit %d, %+v\n%s", r.code, out, r.stderr)
	}
	msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != out.Entries[0].NewID || rdb.XLen(ctx, dlq).Val() != 0 {
		t.Errorf("stream %v, %d dead letters; want the one entry %s and none", msgs, rdb.XLen(ctx, dlq).Val(), out.Entries[0].NewID)
	}
}

// lossyProxy forwards TCP connections to a Redis server and loses one
// reply: that of the first script call (EVALSHA or EVAL) the server runs
// without error. It closes that connection instead of forwarding the
// reply, as a dropped connection would. go-redis does not pipeline here,
// so the first bytes from the server after a call are its reply.
type lossyProxy struct {
	ln     net.Listener
	target string
	lost   atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startLossyProxy(t *testing.T, target string) *lossyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		var script atomic.Bool // a script call waits for its reply
		p.wg.Add(2)
		go p.pump(c, s, func(b []byte) bool {
			b = bytes.ToLower(b)
			if bytes.Contains(b, []byte("\r\nevalsha\r\n")) || bytes.Contains(b, []byte("\r\neval\r\n")) {
				script.Store(true)
			}
			return true
		})
		go p.pump(s, c, func(b []byte) bool {
			if !script.Swap(false) || b[0] == '-' { // not a script's reply, or an error (NOSCRIPT)
				return true
			}
			return !p.lost.CompareAndSwap(false, true)
		})
	}
}

// pump copies from src to dst while pass lets each read through; it
// closes both when it stops.
func (p *lossyProxy) pump(src, dst net.Conn, pass func([]byte) bool) {
	defer p.wg.Done()
	defer func() { _ = src.Close(); _ = dst.Close() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !pass(buf[:n]) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
