// Package deadletter owns the dead-letter format of headway's streams: the
// fields a dead letter adds to the entry it copies, how to read one back,
// and how to move one back to the stream it came from.
//
// # The format
//
// A consumer that gives up on an entry appends it to the stream's
// dead-letter stream (events:{<stream>}:dlq) with its original fields and
// the fields named by the Field constants: why ([FieldReason]), the error
// text ([FieldError]), where it came from ([FieldStream], [FieldID],
// [FieldGroup], [FieldConsumer]), how often it was delivered
// ([FieldDeliveries]) and when ([FieldAt]). An entry over the codec's size
// limit is copied without its largest fields and carries
// [FieldTruncated]. The consumer package writes dead letters (see
// github.com/headwaylabs/headway/consumer); this package defines the
// fields it writes.
//
// The reasons are not listed here: the consumer writes its own
// (max_deliveries, handler_permanent) and brandguard's verdicts. A reader
// treats the reason as an opaque string.
//
// # Reading
//
// [Parse] turns a stream entry of a dead-letter stream into a [Letter]:
//
//	msgs, err := rdb.XRange(ctx, "events:{wallet}:dlq", "-", "+").Result()
//	for _, m := range msgs {
//		l := deadletter.Parse(m)
//		fmt.Println(l.ID, l.Reason, l.SourceID, l.Fields["event_id"])
//	}
//
// # Redriving
//
// [Redrive] moves one dead letter back to its source stream in one Lua
// script call: it appends the original fields (without the dlq_* ones) to
// the source stream and deletes the dead letter, both or neither. The
// dead-letter stream and the source stream must share a hash slot on a
// Redis Cluster, as events:{wallet} and events:{wallet}:dlq do.
//
//	newID, err := deadletter.Redrive(ctx, rdb, "events:{wallet}:dlq", "events:{wallet}", id, nil)
//	switch {
//	case errors.Is(err, deadletter.ErrNotFound):
//		// another redrive took it, or it was never there
//	case errors.Is(err, deadletter.ErrSourceMismatch):
//		// dead-lettered from another stream: left in place
//	}
//
// A redriven entry gets a new ID at the end of the stream and every group
// reads it again; a group that already applied it relies on its
// deduplication to skip it. Whether an entry should be redriven at all
// (consumers would reject a legacy or undecodable one again) is the
// caller's judgement.
package deadletter
