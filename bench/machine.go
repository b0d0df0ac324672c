package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is what the figures were measured on.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	GOGC       string `json:"gogc"`
	Redis      string `json:"redis"`
	PostgreSQL string `json:"postgresql,omitempty"`
}

func (b *bench) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, GOGC: os.Getenv("GOGC")}
	if m.GOGC == "" {
		m.GOGC = "100 (default)"
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if info, err := b.rdb.Info(ctx, "server").Result(); err == nil {
		m.Redis = infoField(info, "redis_version")
	}
	if b.pool != nil {
		_ = b.pool.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgreSQL)
	}
	return m
}

func (m Machine) write(w io.Writer, commit string, load LoadAvg) {
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d) %s, Linux %s, %s, GOGC %s\n",
		m.CPUs, m.GOMAXPROCS, m.CPUModel, m.Kernel, m.Go, m.GOGC)
	fmt.Fprintf(w, "servers: Redis %s", m.Redis)
	if m.PostgreSQL != "" {
		fmt.Fprintf(w, ", PostgreSQL %s", m.PostgreSQL)
	}
	fmt.Fprintf(w, "\nheadway commit: %s\nload average at the start: %s\n", commit, load)
}

// infoField returns field's value in the text of Redis's INFO.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// gitCommit is the abbreviated commit of the working tree, or "" outside
// a repository.
func gitCommit() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// LoadAvg is the system's 1, 5 and 15 minute load averages.
type LoadAvg [3]float64

func (l LoadAvg) String() string { return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]) }

func loadAvg() LoadAvg {
	var l LoadAvg
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(data)) {
		if i == 3 {
			break
		}
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}

// rss is the process's resident set size (VmRSS) in bytes.
func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapObjects is the bytes of live and not yet swept heap objects.
func heapObjects() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// usage is a snapshot of the CPU time used so far by this process, by
// Redis and by the local PostgreSQL processes.
type usage struct {
	at                   time.Time
	self, redis, postgre time.Duration
	kernel               time.Duration // the kernel's threads
	busy                 time.Duration // of the whole machine, every CPU
	steal                time.Duration // taken by the hypervisor
}

// usage takes a snapshot. The readings of Redis and PostgreSQL cost time
// and CPU of their own: before the measured interval (start) they are
// taken first, after it last, so that they stay outside the interval.
func (b *bench) usage(ctx context.Context, start bool) usage {
	var u usage
	others := func() {
		if info, err := b.rdb.Info(ctx, "cpu").Result(); err == nil {
			sys, _ := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
			user, _ := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
			u.redis = time.Duration((sys + user) * float64(time.Second))
		}
		u.postgre, u.kernel = procCPU()
		u.busy, u.steal = machineCPU()
	}
	if start {
		others()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	u.at = time.Now()
	if !start {
		others()
	}
	return u
}

// CPU is the CPU used during a measured interval, in cores (CPU seconds
// per second of wall time).
type CPU struct {
	Self       float64 `json:"self_cores"`
	Redis      float64 `json:"redis_cores"`
	PostgreSQL float64 `json:"postgresql_cores"`
	// Others is the rest of the machine's busy time, the kernel's
	// threads left out: other processes. More than a few hundredths means
	// something else ran during the measurement.
	Others float64 `json:"others_cores"`
	// Steal is the time the hypervisor ran something else on this
	// machine's CPUs.
	Steal float64 `json:"steal_cores"`
}

func (u usage) sub(v usage) CPU {
	wall := u.at.Sub(v.at).Seconds()
	if wall <= 0 {
		return CPU{}
	}
	c := CPU{Self: (u.self - v.self).Seconds() / wall, Redis: (u.redis - v.redis).Seconds() / wall,
		PostgreSQL: (u.postgre - v.postgre).Seconds() / wall}
	c.Others = max(0, (u.busy-v.busy-(u.kernel-v.kernel)).Seconds()/wall-c.Self-c.Redis-c.PostgreSQL)
	c.Steal = (u.steal - v.steal).Seconds() / wall
	return c
}

// disturbance is the CPU that neither this run's processes nor the
// kernel's threads used: other processes, and the hypervisor's steal.
func (c CPU) disturbance() float64 { return c.Others + c.Steal }

func (c CPU) String() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f", c.Self, c.Redis, c.PostgreSQL, c.Others, c.Steal)
}

// procCPU sums the CPU time of the processes named postgres on this
// machine (the server's backends and workers, when the server is local)
// and of the kernel's threads (block I/O, journal). Processes that start
// and exit within an interval are missed; the pools here keep their
// backends.
func procCPU() (postgres, kernel time.Duration) {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0
	}
	const pfKthread = 0x00200000
	for _, e := range dir {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(data[end+1:])) // from field 3, state
		if len(f) < 13 {
			continue
		}
		flags, _ := strconv.ParseUint(f[6], 10, 64) // field 9
		ut, _ := strconv.ParseInt(f[11], 10, 64)    // field 14, utime
		st, _ := strconv.ParseInt(f[12], 10, 64)    // field 15, stime
		t := time.Duration(ut+st) * userHZ
		switch {
		case string(data[open+1:end]) == "postgres":
			postgres += t
		case flags&pfKthread != 0:
			kernel += t
		}
	}
	return postgres, kernel
}

// userHZ is the unit of /proc's CPU times.
const userHZ = time.Second / 100

// machineCPU is the CPU time all CPUs of the machine spent in processes
// (user, nice and system of /proc/stat; interrupts left out) and the time
// the hypervisor stole from them.
func machineCPU() (busy, steal time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var ticks [9]int64
	for i := 1; i < 9; i++ {
		ticks[i], _ = strconv.ParseInt(f[i], 10, 64)
	}
	return time.Duration(ticks[1]+ticks[2]+ticks[3]) * userHZ, time.Duration(ticks[8]) * userHZ
}
