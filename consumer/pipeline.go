package consumer

// pipelineDepth is the number of batches in the pipeline: one running its
// handlers (while the one before it may still be acknowledging), one
// prepared behind it, one being read.
const pipelineDepth = 3

// pipeline orders the batches of Serve's loop. This is the one place its
// rule is stated:
//
//   - batch n is prepared (decoded, judged, claimed in dedup) as soon as
//     it is read, while batch n-1 may still run its handlers;
//   - batch n runs its handlers only after those of batch n-1 have
//     finished, so handlers run batch after batch in the order the
//     batches were read, and an aggregate's entries in stream order;
//   - batch n acknowledges only after batch n-1 has acknowledged, so the
//     watermark advances in stream order;
//   - batch n uses slot n%pipelineDepth (its buffer, its channels), which
//     is free once batch n-pipelineDepth has finished: at most
//     pipelineDepth batches are in memory.
//
// Serve alone calls its methods; the batches' goroutines only wait on and
// close the channels start hands them.
type pipeline struct {
	// done[i] closes when the batch in slot i has finished (acknowledged);
	// ran[i] when its handlers have finished.
	done, ran [pipelineDepth]chan struct{}
	seq       int // batches started
}

// stage is what one batch of the pipeline waits for and signals.
type stage struct {
	prevRan, prevDone <-chan struct{} // the batch before it: handlers finished; finished
	ran               chan struct{}   // close when this batch's handlers have finished (run does)
	finished          chan struct{}   // close when this batch has finished
}

// init starts the pipeline empty: every slot free, nothing to wait for.
func (p *pipeline) init() {
	for i := range p.done {
		p.done[i], p.ran[i] = make(chan struct{}), make(chan struct{})
		close(p.done[i])
		close(p.ran[i])
	}
}

// slot is the slot of the next batch.
func (p *pipeline) slot() int { return p.seq % pipelineDepth }

// free closes when slot is free: the batch that used it has finished.
func (p *pipeline) free(slot int) <-chan struct{} { return p.done[slot] }

// last closes when the last batch started has finished.
func (p *pipeline) last() <-chan struct{} { return p.done[(p.seq+pipelineDepth-1)%pipelineDepth] }

// start takes slot (p.slot(), once free) for the next batch.
func (p *pipeline) start(slot int) stage {
	prev := (p.seq + pipelineDepth - 1) % pipelineDepth
	s := stage{prevRan: p.ran[prev], prevDone: p.done[prev], ran: make(chan struct{}), finished: make(chan struct{})}
	p.ran[slot], p.done[slot] = s.ran, s.finished
	p.seq++
	return s
}
