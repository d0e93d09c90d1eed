package meter

import (
	"bytes"
	"fmt"
)

// Section ids of Wasm 2.0.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// sectionRank is the required order of the non-custom sections.
var sectionRank = [13]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5,
	secGlobal: 6, secExport: 7, secStart: 8, secElement: 9, secDataCount: 10,
	secCode: 11, secData: 12,
}

var sectionNames = [13]string{"custom", "type", "import", "function", "table",
	"memory", "global", "export", "start", "element", "code", "data", "datacount"}

const (
	kindFunc   = 0x00
	kindTable  = 0x01
	kindMemory = 0x02
	kindGlobal = 0x03
)

var header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// Module is a decoded Wasm 2.0 module. Every section is parsed (so that
// malformed input is refused here, not half-way through a rewrite), and
// each keeps its original bytes: Encode writes a section verbatim unless
// the metering pass replaced it, so an untouched module round-trips byte
// for byte, and a metered one differs only where it must.
type Module struct {
	sections []*section

	types     []funcType
	imports   []importEntry
	funcTypes []uint32 // type index per defined function
	globals   []global
	exports   []export
	start     *uint32
	elems     []elemSegment
	codes     []code

	importedFuncs, importedGlobals uint32
	locals                         uint64 // declared in all functions
}

type section struct {
	id   byte
	name string // custom sections
	raw  []byte // the whole section: id, size and payload
	body []byte // the payload (for custom sections: after the name)
	// out, when not nil, replaces the payload on Encode.
	out []byte
	// drop removes the section on Encode.
	drop bool
}

type funcType struct{ params, results []byte }

type importEntry struct {
	module, name string
	kind         byte
	desc         []byte // the import descriptor's bytes, kind included
}

type global struct {
	valType byte
	mutable byte
	init    []byte // constant expression with its end
}

type export struct {
	name  string
	kind  byte
	index uint32
}

// elemSegment is an element segment in any of the eight encodings
// (flags 0..7), kept structurally so function indices can be renumbered.
type elemSegment struct {
	flags  uint32
	table  uint32
	offset []byte   // active segments
	kind   byte     // elemkind (flags 1..3) or reftype (flags 5..7)
	funcs  []uint32 // flags 0..3
	exprs  [][]byte // flags 4..7
}

type code struct {
	locals []localGroup
	body   []byte // instructions, ending with the function's end
	offset int    // of body in the module, for error messages
	// leafCost is the instruction count of a leaf function (see
	// leafCosts), or -1.
	leafCost int64
	// unroll: the body has a loop for unrollLoops.
	unroll bool
}

type localGroup struct {
	n       uint32
	valType byte
}

// maxLocals bounds the locals of one function. The format allows 2^32-1
// in a few bytes, and wazero allocates a slot per declared local while
// decoding, so a hostile module could make it allocate gigabytes; real
// toolchains stay in the thousands.
const maxLocals = 1 << 20

// Decode parses a Wasm 2.0 binary module. Constructs of later proposals
// (GC, exception handling, tail calls, memory64, multi-memory, threads,
// relaxed SIMD) are refused with an error that names them.
func Decode(wasm []byte) (*Module, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], header[:4]) {
		return nil, &DecodeError{Msg: "not a Wasm binary (bad magic)"}
	}
	if !bytes.Equal(wasm[4:8], header[4:]) {
		return nil, &DecodeError{Offset: 4, Msg: "unsupported binary version (only 1: a core module, not a component)"}
	}
	m := &Module{}
	r := &reader{b: wasm, pos: 8}
	lastRank := 0
	var funcCount *uint32
	var dataCount *uint32
	dataSegs := -1
	for !r.eof() {
		start := r.pos
		id, _ := r.byte()
		if id > secDataCount {
			r.pos = start
			return nil, r.errorf("unknown section id %d", id)
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.bytes(size)
		if err != nil {
			return nil, err
		}
		s := &section{id: id, raw: wasm[start:r.pos], body: body}
		sr := &reader{b: body, base: r.pos - len(body)}
		if id != secCustom {
			if sectionRank[id] <= lastRank {
				return nil, sr.errorf("%s section out of order or repeated", sectionNames[id])
			}
			lastRank = sectionRank[id]
		}
		switch id {
		case secCustom:
			s.name, err = sr.name()
			s.body = body[sr.pos:]
		case secType:
			err = m.decodeTypes(sr)
		case secImport:
			err = m.decodeImports(sr)
		case secFunction:
			var n uint32
			if n, err = sr.count(1); err == nil {
				funcCount = &n
				m.funcTypes = make([]uint32, 0, n)
				for i := uint32(0); i < n && err == nil; i++ {
					var t uint32
					if t, err = sr.u32(); err == nil && t >= uint32(len(m.types)) {
						// Invalid Wasm; wazero v1.12.0 panics validating
						// a call to such a function instead of refusing it.
						err = sr.errorf("function %d has type %d of %d", i, t, len(m.types))
					}
					m.funcTypes = append(m.funcTypes, t)
				}
			}
		case secTable:
			err = vec(sr, 3, func() error {
				if _, err := sr.refType(); err != nil {
					return err
				}
				return sr.limits(false)
			})
		case secMemory:
			err = vec(sr, 2, func() error { return sr.limits(true) })
		case secGlobal:
			err = vec(sr, 3, func() error {
				var g global
				var err error
				if g.valType, err = sr.valType(); err != nil {
					return err
				}
				if g.mutable, err = sr.byte(); err != nil {
					return err
				}
				if g.mutable > 1 {
					return sr.errorf("bad global mutability %#x", g.mutable)
				}
				if g.init, err = sr.expr(); err != nil {
					return err
				}
				m.globals = append(m.globals, g)
				return nil
			})
		case secExport:
			err = vec(sr, 3, func() error {
				var e export
				var err error
				if e.name, err = sr.name(); err != nil {
					return err
				}
				if e.kind, err = sr.byte(); err != nil {
					return err
				}
				if e.kind > kindGlobal {
					return sr.errorf("unsupported export kind %#x", e.kind)
				}
				if e.index, err = sr.u32(); err != nil {
					return err
				}
				m.exports = append(m.exports, e)
				return nil
			})
		case secStart:
			var f uint32
			f, err = sr.u32()
			m.start = &f
		case secElement:
			err = m.decodeElements(sr)
		case secCode:
			err = m.decodeCode(sr)
			if err == nil && (funcCount == nil || uint32(len(m.codes)) != *funcCount) {
				err = sr.errorf("code section has %d bodies for %d declared functions", len(m.codes), len(m.funcTypes))
			}
		case secData:
			var n uint32
			n, err = sr.count(1)
			dataSegs = int(n)
			for i := uint32(0); i < n && err == nil; i++ {
				err = decodeData(sr)
			}
		case secDataCount:
			var n uint32
			n, err = sr.u32()
			dataCount = &n
		}
		if err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionNames[id], err)
		}
		if id != secCustom && !sr.eof() {
			return nil, fmt.Errorf("%s section: %w", sectionNames[id], sr.errorf("%d trailing bytes", sr.remaining()))
		}
		m.sections = append(m.sections, s)
	}
	if funcCount != nil && *funcCount > 0 && m.section(secCode) == nil {
		return nil, &DecodeError{Offset: len(wasm), Msg: "function section without code section"}
	}
	if dataCount != nil && int(*dataCount) != max(dataSegs, 0) {
		return nil, &DecodeError{Offset: len(wasm), Msg: "data count does not match the data section"}
	}
	return m, nil
}

func vec(r *reader, minSize int, f func() error) error {
	n, err := r.count(minSize)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func (m *Module) section(id byte) *section {
	for _, s := range m.sections {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (m *Module) decodeTypes(r *reader) error {
	return vec(r, 3, func() error {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			r.pos--
			return r.errorf("unsupported type form %#x (Wasm 3.0 GC types)", form)
		}
		var t funcType
		for _, dst := range []*[]byte{&t.params, &t.results} {
			n, err := r.count(1)
			if err != nil {
				return err
			}
			start := r.pos
			for i := uint32(0); i < n; i++ {
				if _, err := r.valType(); err != nil {
					return err
				}
			}
			*dst = r.b[start:r.pos]
		}
		m.types = append(m.types, t)
		return nil
	})
}

func (m *Module) decodeImports(r *reader) error {
	return vec(r, 4, func() error {
		var im importEntry
		var err error
		if im.module, err = r.name(); err != nil {
			return err
		}
		if im.name, err = r.name(); err != nil {
			return err
		}
		descStart := r.pos
		if im.kind, err = r.byte(); err != nil {
			return err
		}
		switch im.kind {
		case kindFunc:
			_, err = r.u32()
			m.importedFuncs++
		case kindTable:
			if _, err = r.refType(); err == nil {
				err = r.limits(false)
			}
		case kindMemory:
			err = r.limits(true)
		case kindGlobal:
			if _, err = r.valType(); err == nil {
				var mut byte
				if mut, err = r.byte(); err == nil && mut > 1 {
					err = r.errorf("bad global mutability %#x", mut)
				}
			}
			m.importedGlobals++
		default:
			r.pos--
			return r.errorf("unsupported import kind %#x (exception tags?)", im.kind)
		}
		if err != nil {
			return err
		}
		im.desc = r.b[descStart:r.pos]
		m.imports = append(m.imports, im)
		return nil
	})
}

func (m *Module) decodeElements(r *reader) error {
	return vec(r, 2, func() error {
		var e elemSegment
		var err error
		if e.flags, err = r.u32(); err != nil {
			return err
		}
		if e.flags > 7 {
			return r.errorf("bad element segment flags %d", e.flags)
		}
		if e.flags == 2 || e.flags == 6 {
			if e.table, err = r.u32(); err != nil {
				return err
			}
		}
		if e.flags&1 == 0 { // active
			if e.offset, err = r.expr(); err != nil {
				return err
			}
		}
		if e.flags&3 != 0 { // explicit elemkind / reftype
			if e.kind, err = r.byte(); err != nil {
				return err
			}
			if e.flags&4 == 0 && e.kind != 0x00 {
				return r.errorf("unsupported element kind %#x", e.kind)
			}
			if e.flags&4 != 0 && !isRefType(e.kind) {
				return r.errorf("unsupported element reference type %#x", e.kind)
			}
		}
		n, err := r.count(1)
		if err != nil {
			return err
		}
		for i := uint32(0); i < n; i++ {
			if e.flags&4 == 0 {
				f, err := r.u32()
				if err != nil {
					return err
				}
				e.funcs = append(e.funcs, f)
			} else {
				x, err := r.expr()
				if err != nil {
					return err
				}
				e.exprs = append(e.exprs, x)
			}
		}
		m.elems = append(m.elems, e)
		return nil
	})
}

func decodeData(r *reader) error {
	flags, err := r.u32()
	if err != nil {
		return err
	}
	switch flags {
	case 0:
		_, err = r.expr()
	case 1:
	case 2:
		if err = r.zeroIndex(); err == nil {
			_, err = r.expr()
		}
	default:
		return r.errorf("bad data segment flags %d", flags)
	}
	if err != nil {
		return err
	}
	n, err := r.u32()
	if err != nil {
		return err
	}
	_, err = r.bytes(n)
	return err
}

func (m *Module) decodeCode(r *reader) error {
	var ls loopScan
	return vec(r, 2, func() error {
		size, err := r.u32()
		if err != nil {
			return err
		}
		start := r.pos
		b, err := r.bytes(size)
		if err != nil {
			return err
		}
		fr := &reader{b: b, base: r.base + start}
		var c code
		groups, err := fr.count(2)
		if err != nil {
			return err
		}
		var total uint64
		for i := uint32(0); i < groups; i++ {
			var g localGroup
			if g.n, err = fr.u32(); err != nil {
				return err
			}
			if g.valType, err = fr.valType(); err != nil {
				return err
			}
			total += uint64(g.n)
			c.locals = append(c.locals, g)
		}
		if total > maxLocals {
			return fr.errorf("function declares %d locals (limit %d)", total, maxLocals)
		}
		m.locals += total
		c.offset = fr.base + fr.pos
		c.body = b[fr.pos:]
		if c.leafCost, c.unroll, err = checkBody(&reader{b: c.body, base: c.offset}, &ls); err != nil {
			return err
		}
		m.codes = append(m.codes, c)
		return nil
	})
}

// checkBody decodes a function body and checks that its blocks nest and
// that its final end is its last byte. It returns the body's instruction
// count if the function is a leaf for the metering pass (no loop, call or
// bulk operation, at most maxLeafCost instructions), else -1, and whether
// it has a loop that unrollLoops unrolls (ls is scratch space).
func checkBody(r *reader, ls *loopScan) (leafCost int64, unroll bool, err error) {
	depth := 0
	ls.frames, ls.cur, ls.spans = ls.frames[:0], 0, ls.spans[:0]
	for {
		start := r.pos
		in, err := r.next()
		if err != nil {
			return 0, false, err
		}
		ls.step(r.b, in.op, start, r.pos)
		if leafCost >= 0 {
			leafCost++
		}
		switch in.op {
		case opBlock, opIf:
			depth++
		case opLoop:
			depth++
			leafCost = -1
		case opEnd:
			if depth == 0 {
				if !r.eof() {
					return 0, false, r.errorf("%d bytes after the function's end", r.remaining())
				}
				return leafCost, len(ls.spans) > 0, nil
			}
			depth--
		case opCall, opCallIndirect, opMemoryFill, opMemoryCopy, opMemoryInit,
			opTableFill, opTableCopy, opTableInit, opTableGrow:
			leafCost = -1
		}
		if leafCost > maxLeafCost {
			leafCost = -1
		}
	}
}

// Encode writes the module: original bytes for untouched sections, new
// payloads for rewritten ones.
func (m *Module) Encode() []byte {
	n := len(header)
	for _, s := range m.sections {
		n += len(s.raw) + len(s.out) + 8
	}
	out := make([]byte, 0, n)
	out = append(out, header...)
	for _, s := range m.sections {
		switch {
		case s.drop:
		case s.out != nil:
			out = appendSection(out, s.id, s.out)
		default:
			out = append(out, s.raw...)
		}
	}
	return out
}
