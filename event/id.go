package event

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// NewID returns a new event ID: a UUID version 7 (RFC 9562) in its
// canonical text form, e.g. "0193a5c4-7f1e-7b2a-9c4d-5e6f7a8b9c0d". Its
// first 48 bits are the Unix time in milliseconds, so IDs sort by the time
// they were made (IDs of the same millisecond in no particular order); the
// rest are random (74 bits), so IDs made anywhere never collide in
// practice. A producer calls it for Envelope.EventID — the outbox writer
// fills an empty EventID with it — and keeps the ID when it retries the
// same event, so that consumers deduplicate the retry.
func NewID() string { return newID(time.Now()) }

func newID(now time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[6:]) // crypto/rand.Read never fails (Go 1.24+)
	ms := uint64(now.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // variant 10
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
