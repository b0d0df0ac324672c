package streamid_test

import (
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/internal/streamid"
)

func TestLess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int // Compare(a, b)
	}{
		{"", "", 0},
		{"", "0-0", -1},
		{"0-0", "", 1},
		{"", "x", -1},
		{"1-0", "2-0", -1},
		{"2-0", "1-0", 1},
		{"1-1", "1-2", -1},
		{"1-10", "1-9", 1},
		{"9-0", "10-0", -1},
		{"1747300000000-0", "1747300000000-0", 0},
		{"1747300000000-5", "1747300000001-0", -1},
		{"007-1", "7-1", 0}, // leading zeros
		{"5", "5-0", 0},     // an absent seq is 0
		{"5-", "5-0", 0},    // an empty seq is 0
		{"-1", "0-1", 0},    // an empty ms is 0
		{"5-1-2", "5-1", 1}, // the seq part is "1-2"
		{"18446744073709551615-0", "18446744073709551616-0", -1}, // beyond uint64
		{"99999999999999999999999-0", "100000000000000000000000-0", -1},
		{"1-18446744073709551616", "1-18446744073709551615", 1},
		{"abc", "abd", -1}, // malformed: ordered, but not meaningfully
		{"b", "aa", -1},    // malformed: the longer is larger
	} {
		if got := streamid.Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := streamid.Less(tc.a, tc.b); got != (tc.want < 0) {
			t.Errorf("Less(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want < 0)
		}
		if got := streamid.Less(tc.b, tc.a); got != (tc.want > 0) {
			t.Errorf("Less(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want > 0)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id      string
		ms, seq uint64
		ok      bool
	}{
		{"1747300000000-0", 1747300000000, 0, true},
		{"0-0", 0, 0, true},
		{"007-08", 7, 8, true},
		{"18446744073709551615-18446744073709551615", math.MaxUint64, math.MaxUint64, true},
		{"", 0, 0, false},
		{"5", 0, 0, false},  // no seq
		{"5-", 0, 0, false}, // empty seq
		{"-5", 0, 0, false}, // empty ms
		{"5-1-2", 0, 0, false},
		{"+5-1", 0, 0, false},
		{"5-+1", 0, 0, false},
		{"a-1", 0, 0, false},
		{"18446744073709551616-0", 0, 0, false}, // beyond uint64
		{"1-18446744073709551616", 0, 0, false},
	} {
		ms, seq, ok := streamid.Parse(tc.id)
		if ok != tc.ok || (ok && (ms != tc.ms || seq != tc.seq)) {
			t.Errorf("Parse(%q) = %d, %d, %v; want %d, %d, %v", tc.id, ms, seq, ok, tc.ms, tc.seq, tc.ok)
		}
	}
}

func TestMillis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id string
		ms uint64
		ok bool
	}{
		{"1747300000000-0", 1747300000000, true},
		{"1747300000000", 1747300000000, true},
		{"1747300000000-x", 1747300000000, true}, // seq not checked
		{"0-0", 0, true},
		{"18446744073709551615-0", math.MaxUint64, true},
		{"", 0, false},
		{"-5", 0, false},
		{"+5-0", 0, false},
		{"x-0", 0, false},
		{"18446744073709551616-0", 0, false}, // beyond uint64
	} {
		ms, ok := streamid.Millis(tc.id)
		if ms != tc.ms || ok != tc.ok {
			t.Errorf("Millis(%q) = %d, %v; want %d, %v", tc.id, ms, ok, tc.ms, tc.ok)
		}
	}
}

var decimalID = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// refCompare orders "" first, then decimal IDs "ms" or "ms-seq" by their
// numbers of any size.
func refCompare(a, b string) int {
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	case b == "":
		return 1
	}
	am, as := refSplit(a)
	bm, bs := refSplit(b)
	if c := am.Cmp(bm); c != 0 {
		return c
	}
	return as.Cmp(bs)
}

func refSplit(id string) (ms, seq *big.Int) {
	m, s, _ := strings.Cut(id, "-")
	ms, seq = new(big.Int), new(big.Int)
	ms.SetString(m, 10)
	if s != "" {
		seq.SetString(s, 10)
	}
	return ms, seq
}

func FuzzLess(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""}, {"", "0-0"}, {"1-0", "2-0"}, {"1-10", "1-9"}, {"007-1", "7-1"},
		{"5", "5-0"}, {"18446744073709551615-0", "18446744073709551616-0"},
		{"1747300000000-5", "1747300000001-0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		less, rev, cmp := streamid.Less(a, b), streamid.Less(b, a), streamid.Compare(a, b)
		if less && rev {
			t.Fatalf("Less(%q, %q) and Less(%q, %q) are both true", a, b, b, a)
		}
		want := 0
		if less {
			want = -1
		} else if rev {
			want = 1
		}
		if cmp != want {
			t.Fatalf("Compare(%q, %q) = %d, want %d", a, b, cmp, want)
		}
		ok := func(s string) bool { return s == "" || decimalID.MatchString(s) }
		if !ok(a) || !ok(b) {
			return
		}
		if ref := refCompare(a, b); cmp != ref {
			t.Fatalf("Compare(%q, %q) = %d, reference %d", a, b, cmp, ref)
		}
		if ms, seq, ok := streamid.Parse(a); ok {
			if m, s := refSplit(a); m.Uint64() != ms || s.Uint64() != seq || !m.IsUint64() || !s.IsUint64() {
				t.Fatalf("Parse(%q) = %d, %d", a, ms, seq)
			}
		}
		if ms, ok := streamid.Millis(a); ok != (a != "" && mustFit(a)) || (ok && strconv.FormatUint(ms, 10) != refMs(a)) {
			t.Fatalf("Millis(%q) = %d, %v", a, ms, ok)
		}
	})
}

func mustFit(id string) bool { m, _ := refSplit(id); return m.IsUint64() }
func refMs(id string) string { m, _ := refSplit(id); return m.String() }

func BenchmarkLess(b *testing.B) {
	ids := []string{"1747300000000-0", "1747300000000-1", "1747300000001-0", "18446744073709551616-3"}
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if streamid.Less(ids[i%len(ids)], ids[(i+1)%len(ids)]) {
			n++
		}
	}
	_ = n
}

func TestLessDoesNotAllocate(t *testing.T) {
	a, b := "1747300000000-5", "1747300000000-12"
	if n := testing.AllocsPerRun(100, func() { streamid.Less(a, b) }); n != 0 {
		t.Errorf("Less allocates %v times per call, want 0", n)
	}
}
