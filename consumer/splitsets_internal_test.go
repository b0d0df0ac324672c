package consumer

import (
	"context"
	"fmt"
	"testing"

	"github.com/headwaylabs/headway/event"
)

// TestSplitSets: only aggregates whose every job is of one type with a
// BatchHandler leave the lanes, in runs by type and part, in stream order;
// an aggregate with a Handler's job, or with jobs of two batch types,
// stays in the lanes whole.
func TestSplitSets(t *testing.T) {
	set := BatchHandler(func(context.Context, []*Message, []error) error { return nil })
	job := func(id, agg string, typ event.Type, batch bool) *item {
		it := &item{}
		it.m.Envelope = event.Envelope{EventID: id, AggregateID: agg, EventType: typ}
		if batch {
			it.set = set
		}
		return it
	}
	const t1, t2, plain = event.Type("T1"), event.Type("T2"), event.Type("P")
	jobs := []*item{
		job("a1", "A", t1, true), job("b1", "B", t1, true), job("c1", "C", t1, true),
		job("b2", "B", plain, false), job("a2", "A", t1, true), job("c2", "C", t2, true),
		job("d1", "D", t2, true),
	}
	sets, rest := splitSets(jobs, 1)
	show := func(its []*item) string {
		var ids []string
		for _, it := range its {
			ids = append(ids, it.m.Envelope.EventID)
		}
		return fmt.Sprint(ids)
	}
	var got []string
	for _, s := range sets {
		got = append(got, show(s))
	}
	if fmt.Sprint(got) != "[[a1 a2] [d1]]" || show(rest) != "[b1 c1 b2 c2]" {
		t.Errorf("sets %v, lanes %s; want [[a1 a2] [d1]] and [b1 c1 b2 c2]", got, show(rest))
	}
}
