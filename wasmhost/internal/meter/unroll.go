package meter

// Unrolling small loops, so their fuel check runs once per unrollBy
// iterations.
//
// A loop's charge is a subtract, a compare and a branch per iteration. On
// a loop of a few instructions that is a large share: the 26-instruction
// WAT scan loop runs in ~3 cycles per iteration and the check adds ~0.7
// (1.23x). No cheaper per-iteration check exists in wazero's code (the
// fuel lives in a register already), so small loops are checked less
// often instead: the body is repeated unrollBy times under one loop
// header, whose charge pays for all the copies. A branch back to the loop
// from copy k continues into copy k+1 without a check; only the last copy
// branches to the header. Copies run forward, so each instruction still
// runs at most once per charge. A loop that exits early has paid for up to
// unrollBy-1 iterations it did not run: the CPU-used figure counts at most
// that much extra per loop exit.
const (
	unrollBy = 4
	// maxUnrollCost bounds the body (in instructions) of the loops
	// unrolled (64 takes in the Rust scan loop, which LLVM already
	// unrolled 4x); above it the check weighs a few percent at most.
	maxUnrollCost = 64
	// The instructions unrolling adds, which are not charged: in the
	// loop, a block, a br and an end per copy but the last, less the loop
	// body's end that only the last copy keeps; around it, a block and
	// its end.
	unrollAddedInside  = (unrollBy - 1) * 2
	unrollAddedOutside = 2
)

// loopSpan is an innermost loop of a function body: body[loop:start] is
// the loop instruction, body[start:end] its body, body[end] its end.
type loopSpan struct{ loop, start, end int }

// unrollLoops returns body with each small innermost loop of empty block
// type
//
//	loop BODY end
//
// rewritten as
//
//	block                      ;; exit
//	  loop
//	    block BODY' br 2 end   ;; unrollBy-1 times
//	    BODY''
//	  end
//	end
//
// where a branch in BODY to the loop keeps its index (in BODY' it now
// leaves the copy's block: the next copy runs), a branch in BODY' to a
// label outside the loop gets 2 more (the copy's block and the exit) and
// in BODY” 1 more (the exit). BODY' falling off its end leaves the loop,
// as BODY did. loops are the offsets in out of the unrolled loops' loop
// instructions. It returns body itself when no loop qualifies. body has
// passed checkBody.
func unrollLoops(body []byte) (out []byte, loops []int) {
	var ls loopScan
	r := &reader{b: body}
	for !r.eof() {
		start := r.pos
		in, err := r.next()
		if err != nil {
			return body, nil
		}
		ls.step(body, in.op, start, r.pos)
	}
	spans := ls.spans
	if len(spans) == 0 {
		return body, nil
	}
	grow := 0
	for _, s := range spans {
		grow += (unrollBy-1)*(s.end-s.start+8) + 8
	}
	out = make([]byte, 0, len(body)+grow)
	loops = make([]int, 0, len(spans))
	last := 0
	for _, s := range spans {
		out = append(out, body[last:s.loop]...)
		out = append(out, opBlock, 0x40)
		loops = append(loops, len(out))
		out = append(out, opLoop, 0x40)
		for range unrollBy - 1 {
			out = append(out, opBlock, 0x40)
			out = relabel(out, body[s.start:s.end], 2)
			out = append(out, opBr, 2, opEnd)
		}
		out = relabel(out, body[s.start:s.end], 1)
		out = append(out, opEnd, opEnd)
		last = s.end + 1
	}
	return append(out, body[last:]...), loops
}

// loopScan finds the loops unrollLoops unrolls: fed every instruction
// of a body in order, it collects the innermost loops of empty block type
// without calls and of at most maxUnrollCost instructions. Decode runs it
// too, so that unrollLoops decodes again only the bodies that have one.
type loopScan struct {
	frames []loopFrame
	cur    int // the innermost open loop's frame + 1; 0: none
	spans  []loopSpan
}

type loopFrame struct {
	loop      bool
	ok        bool // a loop that may be unrolled so far
	pos, body int
	cost      int
	outer     int // the enclosing loop's cur
}

// step takes the instruction op at body[start:next].
func (l *loopScan) step(body []byte, op uint32, start, next int) {
	if l.cur > 0 {
		l.frames[l.cur-1].cost++
	}
	switch op {
	case opBlock, opIf:
		l.frames = append(l.frames, loopFrame{})
	case opLoop:
		if l.cur > 0 {
			l.frames[l.cur-1].ok = false // not innermost
		}
		l.frames = append(l.frames, loopFrame{loop: true, ok: body[start+1] == 0x40, pos: start, body: next, outer: l.cur})
		l.cur = len(l.frames)
	case opCall, opCallIndirect:
		if l.cur > 0 {
			l.frames[l.cur-1].ok = false // the check weighs little beside a call
		}
	case opEnd:
		if len(l.frames) == 0 {
			return // the function's end
		}
		f := l.frames[len(l.frames)-1]
		l.frames = l.frames[:len(l.frames)-1]
		if f.loop {
			l.cur = f.outer
			if f.ok && f.cost <= maxUnrollCost+1 {
				l.spans = append(l.spans, loopSpan{loop: f.pos, start: f.body, end: start})
			}
		}
	}
}

// relabel appends code (a loop body: its blocks balanced) to out, adding
// shift to every branch label that leaves the loop: at block depth d
// inside code, labels above d.
func relabel(out, code []byte, shift uint32) []byte {
	r := &reader{b: code}
	depth := uint32(0)
	label := func(l uint32) uint32 {
		if l > depth {
			return l + shift
		}
		return l
	}
	last := 0
	for !r.eof() {
		start := r.pos
		in, err := r.next()
		if err != nil {
			return append(out, code[last:]...) // cannot happen: checked
		}
		switch in.op {
		case opBlock, opLoop, opIf:
			depth++
		case opEnd:
			depth--
		case opBr, opBrIf:
			out = append(out, code[last:start]...)
			out = appendU32(append(out, code[start]), label(in.index))
			last = r.pos
		case opBrTable:
			out = append(out, code[last:start]...)
			out = append(out, opBrTable)
			t := &reader{b: code, pos: start + 1}
			n, _ := t.u32()
			out = appendU32(out, n)
			for i := uint32(0); i <= n; i++ {
				l, _ := t.u32()
				out = appendU32(out, label(l))
			}
			last = r.pos
		}
	}
	return append(out, code[last:]...)
}
