package readiness

import (
	"runtime"
	"sync/atomic"
)

// MaxPositionLen is the number of bytes of a position text a [Watermark]
// keeps; longer texts are cut to this length. A Redis stream ID takes at
// most 41 bytes, a decimal int64 at most 20.
const MaxPositionLen = 64

const positionWords = MaxPositionLen / 8

// position holds a short text that one goroutine writes and any goroutine
// reads, without locks and without allocating on the write side.
//
// It is a sequence lock built only from atomics (so the race detector and
// the memory model both accept it). seq holds a version in its high bits,
// the text's length in bits 1–7 and a "writing" flag in bit 0: a writer
// sets the flag with a compare-and-swap, stores the bytes packed eight to a
// word, and publishes the next version with the new length in one store; a
// reader copies the words and retries when the flag was set or seq moved
// meanwhile. A writer that finds another writer in the
// middle of a store drops its own text rather than wait: the text is for
// people, and the concurrent text is as fresh as the dropped one.
type position struct {
	seq   atomic.Uint64 // version<<8 | length<<1 | writing
	words [positionWords]atomic.Uint64
}

// store sets the text to s (cut to MaxPositionLen bytes). It reports false
// when it dropped s because another store was in progress. It never blocks
// and never allocates.
func (p *position) store(s string) bool {
	seq := p.seq.Load()
	if seq&1 == 1 || !p.seq.CompareAndSwap(seq, seq+1) {
		return false
	}
	n := min(len(s), MaxPositionLen)
	w := 0
	for ; w*8+8 <= n; w++ {
		c := s[w*8 : w*8+8]
		// Little-endian packing; the compiler can merge it into one load.
		p.words[w].Store(uint64(c[0]) | uint64(c[1])<<8 | uint64(c[2])<<16 | uint64(c[3])<<24 |
			uint64(c[4])<<32 | uint64(c[5])<<40 | uint64(c[6])<<48 | uint64(c[7])<<56)
	}
	if rest := s[w*8 : n]; len(rest) > 0 {
		var v uint64
		for b := range len(rest) {
			v |= uint64(rest[b]) << (8 * b)
		}
		p.words[w].Store(v)
	}
	p.seq.Store((seq>>8+1)<<8 | uint64(n)<<1)
	return true
}

// load returns the text last stored. It allocates the returned string and
// retries (yielding the processor) while a store is in progress.
func (p *position) load() string {
	var buf [MaxPositionLen]byte
	for {
		s1 := p.seq.Load()
		if s1&1 == 1 {
			runtime.Gosched()
			continue
		}
		n := int(s1>>1) & 0x7f
		for w := 0; w*8 < n; w++ {
			v := p.words[w].Load()
			for b := range 8 {
				buf[w*8+b] = byte(v >> (8 * b))
			}
		}
		if p.seq.Load() == s1 {
			return string(buf[:n])
		}
	}
}
