package cli

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
)

// buildHeadway builds cmd/headway into a temporary directory.
func buildHeadway(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not in PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "headway")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/headwaylabs/headway/cmd/headway").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRedriveKilledLosesAndDoublesNothing runs the real binary on a
// thousand dead letters, kills it with SIGKILL in the middle, and checks
// that every event is in exactly one of the two streams; a second run
// finishes the job.
func TestRedriveKilledLosesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	bin := buildHeadway(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream, _ := walletKeys(prefix)
	ids := fillDLQ(t, rdb, prefix, 1000)

	// --rate keeps the run at about 2.5 s, so the kill lands mid-run.
	cmd := exec.Command(bin, "dlq", "redrive", "--redis-url", redisURL(), "--prefix", prefix, "--all", "--rate", "400")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	testkit.Eventually(t, 20*time.Second, "the redrive under way", func() bool { return rdb.XLen(ctx, stream).Val() >= 100 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() {
		t.Fatalf("the redrive was not killed mid-run (state %v, stderr %s)", cmd.ProcessState, stderr.String())
	}

	moved := checkExactlyOnce(t, rdb, prefix, ids)
	if moved == 0 || moved == len(ids) {
		t.Fatalf("%d of %d moved when killed: not mid-run", moved, len(ids))
	}
	t.Logf("killed after %d of %d entries", moved, len(ids))

	out, err := exec.Command(bin, "dlq", "redrive", "--redis-url", redisURL(), "--prefix", prefix, "--all", "--json").Output()
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	var res redriveOutput
	decodeJSON(t, string(out), &res)
	if res.Counts[OutcomeRedriven] != len(ids)-moved {
		t.Errorf("second run redrove %d, want %d", res.Counts[OutcomeRedriven], len(ids)-moved)
	}
	if n := checkExactlyOnce(t, rdb, prefix, ids); n != len(ids) {
		t.Fatalf("%d on the stream after the second run, want %d", n, len(ids))
	}
}
