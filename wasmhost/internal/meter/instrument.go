package meter

import (
	"fmt"
	"strings"
)

// Names the metered module links against and exports.
const (
	// ImportModule is the host module that provides YieldName.
	ImportModule = "wasmgate_meter"
	// YieldName is the one function the metering pass imports, type
	// () -> (). A metered guest calls it when its fuel is exhausted.
	YieldName = "yield"
	// FuelGlobal is the exported mutable i64 global holding the fuel left
	// in the current slice. Charges subtract from it; below zero the
	// guest calls yield.
	FuelGlobal = "wasmgate_fuel"
)

// Costs, in units. A unit is one Wasm instruction of the guest's own code;
// Calibrate measures what a unit costs in time on this machine.
const (
	// bulkMemoryShift: memory.fill/copy/init cost one unit per 16 bytes.
	bulkMemoryShift = 4
	// Table bulk operations cost one unit per element (shift 0).
	bulkTableShift = 0
)

// Config tunes the metering pass.
type Config struct {
	// DropNames drops the "name" custom section instead of renumbering
	// its function entries. Names only serve stack traces.
	DropNames bool
}

// Instrument returns wasm with metering inserted:
//
//   - a mutable i64 global, appended after the module's globals (no
//     global index moves) and exported as FuelGlobal;
//   - one function import, ImportModule.YieldName, appended after the
//     module's imports, which moves every defined function's index up by
//     one: calls, ref.func, exports, the start function, element segments,
//     function-typed global initializers and the name section are
//     renumbered to match;
//   - a charge at each function entry and at each loop header, before the
//     code it pays for runs. A charge subtracts the static cost of the
//     instructions whose innermost enclosing loop (or the function body,
//     outside all loops) it heads: between two charges control only moves
//     forward, so each of those instructions runs at most once per charge,
//     and any run of n instructions has been paid for in advance. Calls
//     pay at the callee's entry, so recursion and call_indirect cycles
//     are covered;
//   - before memory.fill/copy/init and table.fill/copy/init/grow, a
//     charge computed from the length operand, so one instruction cannot
//     do unbounded work for a constant price.
//
// A loop's charge is: local.get; i64.const cost; i64.sub; local.tee;
// i64.const 0; i64.ge_s; if; else <yield> end — a subtract, a compare
// and a predicted branch on a register per iteration (see appendCheck for
// the branch's shape, meterCode for where the fuel local meets the
// global). Small innermost loops are unrolled first (unrollLoops), so
// their check runs once per 4 iterations.
//
// DWARF sections (".debug_*") are dropped because their code offsets no
// longer hold; other custom sections are kept. A module using a construct
// outside Wasm 2.0 is refused with an error naming it.
func Instrument(wasm []byte, cfg Config) ([]byte, error) {
	m, err := Decode(wasm)
	if err != nil {
		return nil, err
	}
	if err := m.instrument(cfg); err != nil {
		return nil, err
	}
	return m.Encode(), nil
}

func (m *Module) instrument(cfg Config) error {
	for _, im := range m.imports {
		if im.module == ImportModule {
			return fmt.Errorf("meter: module already imports from %q (metered twice?)", ImportModule)
		}
	}
	for _, e := range m.exports {
		if e.name == FuelGlobal {
			return fmt.Errorf("meter: module already exports %q (metered twice?)", FuelGlobal)
		}
	}
	nfuncs := m.importedFuncs + uint32(len(m.funcTypes))
	if nfuncs == ^uint32(0) {
		return fmt.Errorf("meter: too many functions to add the yield import")
	}

	// The yield import's type: reuse () -> () if the module has it.
	yieldType := uint32(len(m.types))
	for i, t := range m.types {
		if len(t.params) == 0 && len(t.results) == 0 {
			yieldType = uint32(i)
			break
		}
	}
	if yieldType == uint32(len(m.types)) {
		m.types = append(m.types, funcType{})
		m.ensure(secType).out = m.encodeTypes()
	}

	yield := m.importedFuncs
	remap := func(i uint32) uint32 {
		if i >= yield {
			return i + 1
		}
		return i
	}
	m.imports = append(m.imports, importEntry{
		module: ImportModule, name: YieldName, kind: kindFunc,
		desc: appendU32([]byte{kindFunc}, yieldType),
	})
	m.ensure(secImport).out = m.encodeImports()

	fuel := m.importedGlobals + uint32(len(m.globals))
	m.globals = append(m.globals, global{valType: typeI64, mutable: 1, init: []byte{opI64Const, 0, opEnd}})
	m.ensure(secGlobal).out = m.encodeGlobals(remap)

	m.exports = append(m.exports, export{name: FuelGlobal, kind: kindGlobal, index: fuel})
	m.ensure(secExport).out = m.encodeExports(remap)

	if m.start != nil {
		m.section(secStart).out = appendU32(nil, remap(*m.start))
	}
	if s := m.section(secElement); s != nil {
		s.out = m.encodeElements(remap)
	}
	if s := m.section(secCode); s != nil {
		out, err := m.meterCode(remap, fuel, yield)
		if err != nil {
			return err
		}
		s.out = out
	}
	for _, s := range m.sections {
		if s.id != secCustom {
			continue
		}
		switch {
		case strings.HasPrefix(s.name, ".debug_"):
			s.drop = true
		case s.name == "name":
			if cfg.DropNames {
				s.drop = true
				continue
			}
			out, ok := renumberNames(s.body, remap)
			if !ok {
				s.drop = true // malformed: engines ignore it, so do we
				continue
			}
			s.out = appendName(nil, "name")
			s.out = append(s.out, out...)
		}
	}
	return nil
}

// ensure returns the section with id, creating an empty one at its place
// in the section order if the module has none.
func (m *Module) ensure(id byte) *section {
	if s := m.section(id); s != nil {
		return s
	}
	s := &section{id: id}
	at := len(m.sections)
	lastKnown := -1
	for i, o := range m.sections {
		if o.id == secCustom {
			continue
		}
		if sectionRank[o.id] > sectionRank[id] {
			at = i
			break
		}
		lastKnown = i
	}
	if at == len(m.sections) {
		at = lastKnown + 1
	}
	m.sections = append(m.sections, nil)
	copy(m.sections[at+1:], m.sections[at:])
	m.sections[at] = s
	return s
}

// edit is a change to a function body at byte offset pos.
type edit struct {
	pos, end int // bytes [pos, end) are replaced (end == pos: insertion)
	kind     byte
	value    uint32 // region (charge), new index (renumber) or shift (bulk)
}

const (
	editEntry    = iota // the function's entry charge (region 0)
	editLoop            // a loop header's charge for region value
	editRenumber        // rewrite call/ref.func to function index value
	editBulk            // a dynamic charge: length >> value
	editStore           // write the fuel local back to the global
	editLoad            // reload the fuel local from the global
)

// meterCode meters every function body.
//
// Within a function the fuel lives in a local (a register, once
// compiled), so a loop's charge is a subtract, a compare and a branch,
// with no memory access. The global is the fuel's home between
// functions: the entry charge reads it, and the local is written back
// before every call (the callee, or a guest function the host calls back
// into, charges the global) and reloaded after it, before yield, and
// before the function exits (return, a branch to the function's label,
// its final end). A trap leaves the global at its last write: the units
// since then are not counted, and the instance is discarded after a trap
// anyway.
func (m *Module) meterCode(remap func(uint32) uint32, fuel, yield uint32) ([]byte, error) {
	leaves, maxLeaf := m.leafCosts()
	size := 0
	for i := range m.codes {
		size += len(m.codes[i].body) + 16
	}
	out := appendU32(make([]byte, 0, size+size/4), uint32(len(m.codes)))
	var fnBuf []byte
	var edits []edit
	var regions []int64
	var parents []int // a region's enclosing region
	var calls []bool  // a region (or a loop nested in it) makes a call
	var frames []int
	for i := range m.codes {
		c := &m.codes[i]
		if leaves[i] >= 0 {
			fnBuf = appendLocals(fnBuf[:0], c.locals)
			fnBuf = rewriteFuncRefs(fnBuf, c.body, remap)
			out = appendU32(out, uint32(len(fnBuf)))
			out = append(out, fnBuf...)
			continue
		}
		ti := m.funcTypes[i]
		if int(ti) >= len(m.types) {
			return nil, fmt.Errorf("meter: function %d: type index %d out of range", m.importedFuncs+uint32(i), ti)
		}
		nlocals := uint64(len(m.types[ti].params))
		for _, g := range c.locals {
			nlocals += uint64(g.n)
		}

		// Pass 1: costs per region, and where to edit.
		edits, regions, frames = edits[:0], append(regions[:0], 0), append(frames[:0], 0)
		parents, calls = append(parents[:0], -1), append(calls[:0], false)
		edits = append(edits, edit{kind: editEntry})
		hasBulk := false
		// checkBody passed: no decode error below.
		body, unrolled := c.body, []int(nil)
		if c.unroll {
			body, unrolled = unrollLoops(c.body)
		}
		r := &reader{b: body, base: c.offset}
		for !r.eof() {
			start := r.pos
			in, err := r.next()
			if err != nil {
				return nil, err
			}
			regions[frames[len(frames)-1]]++
			switch in.op {
			case opBlock, opIf:
				frames = append(frames, frames[len(frames)-1])
			case opLoop:
				if len(unrolled) > 0 && unrolled[0] == start {
					// Charge the guest's own instructions only, not the
					// blocks and branches unrolling added (see unrollLoops).
					unrolled = unrolled[1:]
					regions[frames[len(frames)-1]] -= unrollAddedOutside
					regions = append(regions, -unrollAddedInside)
				} else {
					regions = append(regions, 0)
				}
				parents = append(parents, frames[len(frames)-1])
				calls = append(calls, false)
				frames = append(frames, len(regions)-1)
				edits = append(edits, edit{pos: r.pos, end: r.pos, kind: editLoop, value: uint32(len(regions) - 1)})
			case opEnd:
				frames = frames[:len(frames)-1]
				if len(frames) == 0 {
					if !r.eof() {
						return nil, r.errorf("code after the function's end")
					}
					edits = append(edits, edit{pos: start, end: start, kind: editStore})
				}
			case opReturn:
				edits = append(edits, edit{pos: start, end: start, kind: editStore})
			case opBr, opBrIf, opBrTable:
				if int(in.index) >= len(frames)-1 { // may leave the function
					edits = append(edits, edit{pos: start, end: start, kind: editStore})
				}
			case opCall, opCallIndirect:
				cur := frames[len(frames)-1]
				for g := cur; g >= 0 && !calls[g]; g = parents[g] {
					calls[g] = true
				}
				if in.op == opCallIndirect {
					regions[cur] += maxLeaf // the callee may be a leaf
				} else if in.index >= m.importedFuncs && uint64(in.index-m.importedFuncs) < uint64(len(leaves)) &&
					leaves[in.index-m.importedFuncs] >= 0 {
					regions[cur] += leaves[in.index-m.importedFuncs]
					if n := remap(in.index); n != in.index {
						edits = append(edits, edit{pos: start, end: r.pos, kind: editRenumber, value: n})
					}
					break
				}
				edits = append(edits, edit{pos: start, end: start, kind: editStore})
				if n := remap(in.index); in.op == opCall && n != in.index {
					edits = append(edits, edit{pos: start, end: r.pos, kind: editRenumber, value: n})
				}
				edits = append(edits, edit{pos: r.pos, end: r.pos, kind: editLoad})
			case opRefFunc:
				if n := remap(in.index); n != in.index {
					edits = append(edits, edit{pos: start, end: r.pos, kind: editRenumber, value: n})
				}
			case opMemoryFill, opMemoryCopy, opMemoryInit:
				hasBulk = true
				edits = append(edits, edit{pos: start, end: start, kind: editBulk, value: bulkMemoryShift})
			case opTableFill, opTableCopy, opTableInit, opTableGrow:
				hasBulk = true
				edits = append(edits, edit{pos: start, end: start, kind: editBulk, value: bulkTableShift})
			}
			if len(frames) == 0 {
				break
			}
		}
		if len(frames) != 0 {
			return nil, r.errorf("function body ends inside a block")
		}

		// Pass 2: write the body with its new locals.
		locals := append([]localGroup(nil), c.locals...)
		f := uint32(nlocals) // the fuel local
		locals = append(locals, localGroup{n: 1, valType: typeI64})
		n32 := f + 1 // a bulk operation's length
		if hasBulk {
			locals = append(locals, localGroup{n: 1, valType: typeI32})
		}
		if nlocals+2 >= 1<<32 {
			return nil, fmt.Errorf("meter: function %d: too many locals", m.importedFuncs+uint32(i))
		}
		fnBuf = appendLocals(fnBuf[:0], locals)
		last := 0
		for _, e := range edits {
			fnBuf = append(fnBuf, body[last:e.pos]...)
			last = e.end
			switch e.kind {
			case editEntry, editLoop:
				if e.kind == editEntry {
					fnBuf = appendU32(append(fnBuf, opGlobalGet), fuel)
				} else {
					fnBuf = appendU32(append(fnBuf, opLocalGet), f)
				}
				fnBuf = appendS64(append(fnBuf, opI64Const), regions[e.value])
				fnBuf = append(fnBuf, opI64Sub)
				fnBuf = appendCheck(fnBuf, fuel, yield, f, calls[e.value])
			case editRenumber:
				fnBuf = appendU32(append(fnBuf, body[e.pos]), e.value)
			case editBulk:
				// Stack: ... length. Keep it, and charge length >> shift.
				fnBuf = appendU32(append(fnBuf, opLocalTee), n32)
				fnBuf = appendU32(append(fnBuf, opLocalGet), f)
				fnBuf = appendU32(append(fnBuf, opLocalGet), n32)
				fnBuf = append(fnBuf, opI64ExtendU)
				if e.value != 0 {
					fnBuf = appendS64(append(fnBuf, opI64Const), int64(e.value))
					fnBuf = append(fnBuf, opI64ShrU)
				}
				fnBuf = append(fnBuf, opI64Sub)
				fnBuf = appendCheck(fnBuf, fuel, yield, f, true)
			case editStore:
				fnBuf = appendStore(fnBuf, fuel, f)
			case editLoad:
				fnBuf = appendLoad(fnBuf, fuel, f)
			}
		}
		fnBuf = append(fnBuf, body[last:]...)
		out = appendU32(out, uint32(len(fnBuf)))
		out = append(out, fnBuf...)
	}
	return out, nil
}

// maxLeafCost bounds the leaf functions that are charged at their call
// sites instead of at their entry.
const maxLeafCost = 256

// leafCosts finds the leaf functions: no loop, no call, no bulk
// operation, at most maxLeafCost instructions. Such a function cannot be
// part of a cycle and runs each instruction at most once, so it needs no
// fuel code of its own: a direct call adds its cost to the caller's
// charge, and call_indirect adds the largest leaf cost (the callee may be
// a leaf). A leaf the host calls directly runs uncharged, which is
// bounded by maxLeafCost. It returns -1 for the other functions.
func (m *Module) leafCosts() (costs []int64, maxCost int64) {
	costs = make([]int64, len(m.codes))
	for i := range m.codes {
		costs[i] = m.codes[i].leafCost // computed by checkBody
		maxCost = max(maxCost, costs[i])
	}
	return costs, maxCost
}

// appendCheck keeps the new fuel (on the stack) in local f and, when it
// is negative, writes it back, calls yield and reloads it.
//
// The shape of the branch matters to wazero's register allocator, which
// allocates blocks in order and starts a block where control paths merge
// from the registers of the first predecessor it allocated; a value
// live across a call is kept in a stack slot from then on. With the
// yield call in the then-arm (allocated first), the code after the check
// starts from the post-call state and a loop without other calls reloads
// every loop-carried local from the stack on each iteration (the WAT
// scan ran 1.47x unmetered). With an empty then-arm taken when the fuel
// is not negative and the call in the else-arm, the merge starts from
// the no-call state and only the cold path reloads (1.23x). In a region
// that makes calls anyway its values are in stack slots already, and
// there the else-arm form only adds a jump and a store (the Go scan:
// 1.14x vs 1.21x), so calls (the region or a loop in it makes a call)
// selects the then-arm form.
func appendCheck(b []byte, fuel, yield, f uint32, calls bool) []byte {
	b = appendU32(append(b, opLocalTee), f)
	if calls {
		b = append(b, opI64Const, 0, opI64LtS, opIf, 0x40)
	} else {
		b = append(b, opI64Const, 0, opI64GeS, opIf, 0x40, opElse)
	}
	b = appendStore(b, fuel, f)
	b = appendU32(append(b, opCall), yield)
	b = appendLoad(b, fuel, f)
	return append(b, opEnd)
}

func appendStore(b []byte, fuel, f uint32) []byte {
	b = appendU32(append(b, opLocalGet), f)
	return appendU32(append(b, opGlobalSet), fuel)
}

func appendLoad(b []byte, fuel, f uint32) []byte {
	b = appendU32(append(b, opGlobalGet), fuel)
	return appendU32(append(b, opLocalSet), f)
}

// renumberNames rewrites the function indices of the name section's
// function (1), local (2) and label (3) subsections; the others (module,
// types, tables, memories, globals, element and data segments) hold no
// function indices and are copied. ok is false for a malformed section.
func renumberNames(body []byte, remap func(uint32) uint32) (out []byte, ok bool) {
	r := &reader{b: body}
	for !r.eof() {
		id, err := r.byte()
		if err != nil {
			return nil, false
		}
		size, err := r.u32()
		if err != nil {
			return nil, false
		}
		sub, err := r.bytes(size)
		if err != nil {
			return nil, false
		}
		if id < 1 || id > 3 {
			out = append(out, id)
			out = appendU32(out, size)
			out = append(out, sub...)
			continue
		}
		sr := &reader{b: sub}
		n, err := sr.count(2)
		if err != nil {
			return nil, false
		}
		payload := appendU32(nil, n)
		for i := uint32(0); i < n; i++ {
			idx, err := sr.u32()
			if err != nil {
				return nil, false
			}
			payload = appendU32(payload, remap(idx))
			start := sr.pos
			if id == 1 {
				if _, err := sr.name(); err != nil {
					return nil, false
				}
			} else { // a name map per function
				k, err := sr.count(2)
				if err != nil {
					return nil, false
				}
				for j := uint32(0); j < k; j++ {
					if _, err := sr.u32(); err != nil {
						return nil, false
					}
					if _, err := sr.name(); err != nil {
						return nil, false
					}
				}
			}
			payload = append(payload, sub[start:sr.pos]...)
		}
		if !sr.eof() {
			return nil, false
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	return out, true
}
