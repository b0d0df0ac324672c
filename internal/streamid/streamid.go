// Package streamid reads Redis stream entry IDs, "ms-seq": the
// millisecond time of the entry and a sequence number within that
// millisecond, both unsigned decimals.
//
// [Less] and [Compare] order IDs as Redis does without parsing them, so
// they neither allocate nor fail: an ID whose numbers do not fit in uint64
// still sorts by its decimal value. [Parse] and [Millis] read the numbers
// for callers that need them, such as the age of an entry.
package streamid

import (
	"strconv"
	"strings"
)

// Less reports whether stream ID a sorts before b. "" sorts before every
// other ID. The ms parts are compared first, then the seq parts, each as an
// unsigned decimal of any length (leading zeros allowed; an absent or empty
// part is 0). IDs that are not decimal still get a total order, but not a
// meaningful one.
func Less(a, b string) bool {
	if a == "" {
		return b != ""
	}
	am, as := cut(a)
	bm, bs := cut(b)
	if c := cmpDecimal(am, bm); c != 0 {
		return c < 0
	}
	return cmpDecimal(as, bs) < 0
}

// Compare returns -1 when a sorts before b, 1 when b sorts before a and 0
// otherwise, in the order of [Less]; it suits slices.SortFunc and
// slices.BinarySearchFunc.
func Compare(a, b string) int {
	switch {
	case Less(a, b):
		return -1
	case Less(b, a):
		return 1
	}
	return 0
}

// Parse returns the two numbers of a complete stream entry ID "ms-seq". ok
// is false when id has no "-" or when a part is not an unsigned decimal that
// fits in uint64; ms and seq are then meaningless.
func Parse(id string) (ms, seq uint64, ok bool) {
	m, s, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(m, 10, 64)
	seq, err2 := strconv.ParseUint(s, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// Millis returns the millisecond part of a stream ID "ms-seq" or "ms". ok is
// false, and ms 0, when that part is not an unsigned decimal that fits in
// uint64. The seq part is not checked.
func Millis(id string) (ms uint64, ok bool) {
	m, _ := cut(id)
	ms, err := strconv.ParseUint(m, 10, 64)
	if err != nil {
		return 0, false
	}
	return ms, true
}

// cut cuts a stream ID at its first "-" into its ms and seq parts (seq ""
// when there is no "-").
func cut(id string) (ms, seq string) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			return id[:i], id[i+1:]
		}
	}
	return id, ""
}

// cmpDecimal compares two unsigned decimal numbers written in ASCII digits
// (leading zeros allowed; "" is 0).
func cmpDecimal(a, b string) int {
	for len(a) > 0 && a[0] == '0' {
		a = a[1:]
	}
	for len(b) > 0 && b[0] == '0' {
		b = b[1:]
	}
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
