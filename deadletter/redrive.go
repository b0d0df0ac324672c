package deadletter

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultMarkerTTL is RedriveOptions.MarkerTTL's default.
const DefaultMarkerTTL = time.Minute

// RedriveOptions are the rarely needed settings of [Redrive]; nil means
// every default.
type RedriveOptions struct {
	// Token names the call. A call made again with the same token after
	// its outcome was lost (an error from a timeout or a dropped
	// connection) reports the move the first one made instead of
	// ErrNotFound. Empty: a random token, so that only go-redis's own
	// retries of the script call are recognised.
	Token string
	// MarkerTTL is how long the record of a move outlives it: it must
	// cover the client's retries (go-redis tries a call up to 4 times,
	// each waiting for its dial and read timeouts) and the caller's own.
	// Zero: DefaultMarkerTTL.
	MarkerTTL time.Duration
}

// redriveScript moves one dead letter back to its source stream: KEYS[1]
// is the dead-letter stream, KEYS[2] the source stream, KEYS[3] the
// marker of this call (see Redrive); ARGV[1] is the dead letter's ID,
// ARGV[2] the marker's time to live in milliseconds, ARGV[3] the name of
// the field that records the source stream (FieldStream) and ARGV[4:] the
// field names to drop. It returns {new entry ID, 0} after the move, {new
// entry ID, 1} when this call's move was already done, and nil when the
// dead letter is not there. It refuses, changing nothing, a dead letter
// whose source field names another stream (an error reply starting with
// mismatchReply, then that stream) or that has no original fields
// (noFieldsReply). The append runs before the delete: if the append fails,
// nothing has changed.
//
// go-redis sends a call again when its reply is lost (a read timeout, a
// dropped connection): that retry finds the dead letter gone although the
// first try moved it. So the move records its new ID under a marker key
// named after the dead letter and a token that only this call knows, in
// the same script, and a retry that finds the dead letter gone returns
// that ID. Another redrive that took the entry has another token: for it,
// as for an ID never there, the dead letter is gone.
var redriveScript = redis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then
  local done = redis.call('GET', KEYS[3])
  if done then return {done, 1} end
  return false
end
local drop = {}
for i = 4, #ARGV do drop[ARGV[i]] = true end
local f, out = e[1][2], {}
for i = 1, #f, 2 do
  if f[i] == ARGV[3] and f[i + 1] ~= '' and f[i + 1] ~= KEYS[2] then
    return redis.error_reply('HEADWAY_SOURCE_MISMATCH ' .. f[i + 1])
  end
  if not drop[f[i]] then
    out[#out + 1] = f[i]
    out[#out + 1] = f[i + 1]
  end
end
if #out == 0 then
  return redis.error_reply('HEADWAY_NO_FIELDS the dead letter has no original fields')
end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], id, 'PX', ARGV[2])
return {id, 0}
`)

// Redrive moves the dead letter id of the dead-letter stream dlq back to
// the stream source and returns its new entry ID there. The append of its
// original fields (without the dlq_* ones) and the delete from dlq happen
// in one script call, together or not at all, so a redrive interrupted at
// any point neither loses nor doubles the entry. On a Redis Cluster, dlq
// and source must share a hash slot; the record of the move is kept under
// a key that starts with dlq, so it does too.
//
// Redrive refuses a dead letter, leaving it in place, when its dlq_stream
// names another stream than source ([ErrSourceMismatch]) or when it has no
// original fields ([ErrNoFields]); a dead letter without dlq_stream
// (written by hand) is taken as source's. The checks run in the same
// script as the move: one round trip. It returns [ErrNotFound] when dlq
// does not hold id, which is what a second redrive of the same entry
// finds.
//
// Redrive is idempotent under retried calls: a script call go-redis sends
// again after a lost reply, or a Redrive called again with the same
// RedriveOptions.Token, reports the move already made. It is safe for
// concurrent use; two concurrent redrives of one entry move it once, and
// the other gets ErrNotFound.
func Redrive(ctx context.Context, rdb redis.Cmdable, dlq, source, id string, opts *RedriveOptions) (string, error) {
	var o RedriveOptions
	if opts != nil {
		o = *opts
	}
	if o.Token == "" {
		o.Token = rand.Text()
	}
	if o.MarkerTTL <= 0 {
		o.MarkerTTL = DefaultMarkerTTL
	}
	newID, _, err := redriveCall(ctx, rdb, dlq, source, id, o.Token, o.MarkerTTL)
	var rerr redis.Error
	switch {
	case errors.Is(err, redis.Nil):
		return "", fmt.Errorf("%w: %s in %s", ErrNotFound, id, dlq)
	case errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), mismatchReply+" "):
		from := strings.TrimSpace(strings.TrimPrefix(rerr.Error(), mismatchReply))
		return "", fmt.Errorf("%w: %s of %s was dead-lettered from %s, not from %s", ErrSourceMismatch, id, dlq, from, source)
	case errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), noFieldsReply+" "):
		return "", fmt.Errorf("%w: %s of %s", ErrNoFields, id, dlq)
	}
	return newID, err
}

// The redrive script's error replies for a dead letter it refuses: an
// error code (the first word of the reply), then a space.
const (
	mismatchReply = "HEADWAY_SOURCE_MISMATCH"
	noFieldsReply = "HEADWAY_NO_FIELDS"
)

// redriveCall runs redriveScript once; again reports that the call found
// the move already done under token. It returns redis.Nil when id is no
// longer a dead letter.
func redriveCall(ctx context.Context, rdb redis.Scripter, dlq, source, id, token string, ttl time.Duration) (newID string, again bool, err error) {
	argv := make([]any, 0, 3+len(fields))
	argv = append(argv, id, ttl.Milliseconds(), FieldStream)
	for _, f := range fields {
		argv = append(argv, f)
	}
	marker := dlq + ":redriven:" + id + ":" + token // dlq's hash tag keeps it in the streams' slot
	res, err := redriveScript.Run(ctx, rdb, []string{dlq, source, marker}, argv...).Slice()
	if err != nil {
		return "", false, err
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("deadletter: redrive script: unexpected reply %v", res)
	}
	newID, ok := res[0].(string)
	n, ok2 := res[1].(int64)
	if !ok || !ok2 {
		return "", false, fmt.Errorf("deadletter: redrive script: unexpected reply %v", res)
	}
	return newID, n == 1, nil
}
