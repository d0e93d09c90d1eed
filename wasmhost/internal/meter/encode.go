package meter

// Structured encoders for the sections the metering pass rewrites. They
// write canonical (shortest) LEB128s; sections nobody rewrites keep their
// original bytes (see Module.Encode).

func (m *Module) encodeTypes() []byte {
	b := appendU32(nil, uint32(len(m.types)))
	for _, t := range m.types {
		b = append(b, 0x60)
		b = appendU32(b, uint32(len(t.params)))
		b = append(b, t.params...)
		b = appendU32(b, uint32(len(t.results)))
		b = append(b, t.results...)
	}
	return b
}

func (m *Module) encodeImports() []byte {
	b := appendU32(nil, uint32(len(m.imports)))
	for _, im := range m.imports {
		b = appendName(b, im.module)
		b = appendName(b, im.name)
		b = append(b, im.desc...)
	}
	return b
}

func (m *Module) encodeGlobals(remap func(uint32) uint32) []byte {
	b := appendU32(nil, uint32(len(m.globals)))
	for _, g := range m.globals {
		b = append(b, g.valType, g.mutable)
		b = rewriteFuncRefs(b, g.init, remap)
	}
	return b
}

func (m *Module) encodeExports(remap func(uint32) uint32) []byte {
	b := appendU32(nil, uint32(len(m.exports)))
	for _, e := range m.exports {
		b = appendName(b, e.name)
		b = append(b, e.kind)
		if e.kind == kindFunc {
			b = appendU32(b, remap(e.index))
		} else {
			b = appendU32(b, e.index)
		}
	}
	return b
}

func (m *Module) encodeElements(remap func(uint32) uint32) []byte {
	b := appendU32(nil, uint32(len(m.elems)))
	for _, e := range m.elems {
		b = appendU32(b, e.flags)
		if e.flags == 2 || e.flags == 6 {
			b = appendU32(b, e.table)
		}
		if e.flags&1 == 0 {
			b = rewriteFuncRefs(b, e.offset, remap)
		}
		if e.flags&3 != 0 {
			b = append(b, e.kind)
		}
		if e.flags&4 == 0 {
			b = appendU32(b, uint32(len(e.funcs)))
			for _, f := range e.funcs {
				b = appendU32(b, remap(f))
			}
		} else {
			b = appendU32(b, uint32(len(e.exprs)))
			for _, x := range e.exprs {
				b = rewriteFuncRefs(b, x, remap)
			}
		}
	}
	return b
}

func appendLocals(b []byte, groups []localGroup) []byte {
	b = appendU32(b, uint32(len(groups)))
	for _, g := range groups {
		b = appendU32(b, g.n)
		b = append(b, g.valType)
	}
	return b
}

// encodeCode re-encodes the code section unchanged (locals re-encoded,
// bodies copied); the metering pass has its own body writer.
func (m *Module) encodeCode() []byte {
	b := appendU32(nil, uint32(len(m.codes)))
	var fn []byte
	for _, c := range m.codes {
		fn = appendLocals(fn[:0], c.locals)
		fn = append(fn, c.body...)
		b = appendU32(b, uint32(len(fn)))
		b = append(b, fn...)
	}
	return b
}

// rewriteFuncRefs copies a decoded (hence valid) instruction sequence,
// renumbering the function index of every call and ref.func.
func rewriteFuncRefs(dst, code []byte, remap func(uint32) uint32) []byte {
	r := &reader{b: code}
	last := 0
	for !r.eof() {
		start := r.pos
		in, err := r.next()
		if err != nil {
			break // unreachable: code was decoded before
		}
		if in.op == opCall || in.op == opRefFunc {
			dst = append(dst, code[last:start]...)
			dst = append(dst, byte(in.op))
			dst = appendU32(dst, remap(in.index))
			last = r.pos
		}
	}
	return append(dst, code[last:]...)
}

// reencodeAll replaces every structurally kept section with its
// re-encoding, without metering. Tests use it to check the encoders
// against toolchain output.
func (m *Module) reencodeAll() {
	id := func(i uint32) uint32 { return i }
	for _, s := range m.sections {
		switch s.id {
		case secType:
			s.out = m.encodeTypes()
		case secImport:
			s.out = m.encodeImports()
		case secGlobal:
			s.out = m.encodeGlobals(id)
		case secExport:
			s.out = m.encodeExports(id)
		case secStart:
			s.out = appendU32(nil, *m.start)
		case secElement:
			s.out = m.encodeElements(id)
		case secCode:
			s.out = m.encodeCode()
		}
	}
}
