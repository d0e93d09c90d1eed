package meter

// Opcodes the metering pass looks at. Prefixed opcodes are represented as
// prefix<<8 | sub-opcode (the sub-opcodes used here all fit in a byte).
const (
	opUnreachable  = 0x00
	opBlock        = 0x02
	opLoop         = 0x03
	opIf           = 0x04
	opElse         = 0x05
	opEnd          = 0x0b
	opBr           = 0x0c
	opBrIf         = 0x0d
	opBrTable      = 0x0e
	opReturn       = 0x0f
	opCall         = 0x10
	opCallIndirect = 0x11
	opLocalGet     = 0x20
	opLocalSet     = 0x21
	opLocalTee     = 0x22
	opGlobalGet    = 0x23
	opGlobalSet    = 0x24
	opI32Const     = 0x41
	opI64Const     = 0x42
	opI64LtS       = 0x53
	opI64GeS       = 0x59
	opI64Sub       = 0x7d
	opI64Shl       = 0x86
	opI64ShrU      = 0x88
	opI64ExtendU   = 0xad
	opRefFunc      = 0xd2

	prefixMisc = 0xfc
	prefixSIMD = 0xfd

	opMemoryInit = prefixMisc<<8 | 8
	opMemoryCopy = prefixMisc<<8 | 10
	opMemoryFill = prefixMisc<<8 | 11
	opTableInit  = prefixMisc<<8 | 12
	opTableCopy  = prefixMisc<<8 | 14
	opTableGrow  = prefixMisc<<8 | 15
	opTableFill  = prefixMisc<<8 | 17
)

// instr is one decoded instruction: its opcode, and the one immediate the
// metering pass may need: the function index of call and ref.func, the
// label of br and br_if, the largest label of br_table.
type instr struct {
	op    uint32
	index uint32
}

// simdGaps are the unassigned opcodes in 0xFD 0x00..0xFF of Wasm 2.0.
var simdGaps = [256]bool{
	0x9a: true, 0xa2: true, 0xa5: true, 0xa6: true, 0xaf: true, 0xb0: true,
	0xb2: true, 0xb3: true, 0xb4: true, 0xbb: true, 0xc2: true, 0xc5: true,
	0xc6: true, 0xcf: true, 0xd0: true, 0xd2: true, 0xd3: true, 0xd4: true,
	0xe2: true, 0xee: true,
}

// unsupported names single-byte opcodes of post-2.0 proposals, so a
// refusal names the construct.
var unsupported = map[byte]string{
	0x06: "exception handling (try)", 0x07: "exception handling (catch)",
	0x08: "exception handling (throw)", 0x09: "exception handling (rethrow)",
	0x0a: "exception handling (throw_ref)", 0x12: "tail calls (return_call)",
	0x13: "tail calls (return_call_indirect)", 0x14: "typed function references (call_ref)",
	0x15: "typed function references (return_call_ref)", 0x18: "exception handling (delegate)",
	0x19: "exception handling (catch_all)", 0x1f: "exception handling (try_table)",
	0xd3: "typed function references (ref.eq)", 0xd4: "typed function references (ref.as_non_null)",
	0xd5: "typed function references (br_on_null)", 0xd6: "typed function references (br_on_non_null)",
	0xfb: "garbage collection (0xFB prefix)", 0xfe: "threads (atomic 0xFE prefix)",
}

func (r *reader) memarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align >= 64 {
		return r.errorf("unsupported memarg alignment flags %#x (multi-memory)", align)
	}
	_, err = r.u32()
	return err
}

// zeroIndex reads a memory index that Wasm 2.0 requires to be zero.
func (r *reader) zeroIndex() error {
	v, err := r.u32()
	if err != nil {
		return err
	}
	if v != 0 {
		return r.errorf("unsupported memory index %d (multi-memory)", v)
	}
	return nil
}

func (r *reader) blockType() error {
	v, err := r.sleb(33)
	if err != nil {
		return err
	}
	switch {
	case v >= 0: // type index
	case v == -64: // 0x40: empty
	case v >= -17 && isValType(byte(v&0x7f)):
	default:
		return r.errorf("unsupported block type %d", v)
	}
	return nil
}

// next decodes the instruction at r.pos, checking every immediate of Wasm
// 2.0 (core, sign extension, saturating truncation, bulk memory, reference
// types, multi-value block types, fixed-width SIMD).
func (r *reader) next() (instr, error) {
	start := r.pos
	c, err := r.byte()
	if err != nil {
		return instr{}, err
	}
	in := instr{op: uint32(c)}
	switch {
	case c == opBlock || c == opLoop || c == opIf:
		err = r.blockType()
	case c == opBr || c == opBrIf:
		in.index, err = r.u32()
	case c == opBrTable:
		var n uint32
		if n, err = r.count(1); err != nil {
			break
		}
		for i := uint32(0); i <= n && err == nil; i++ {
			var l uint32
			l, err = r.u32()
			in.index = max(in.index, l)
		}
	case c == opCall || c == opRefFunc:
		in.index, err = r.u32()
	case c == opCallIndirect:
		if _, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case c == 0x1c: // select t*
		var n uint32
		if n, err = r.count(1); err != nil {
			break
		}
		for i := uint32(0); i < n && err == nil; i++ {
			_, err = r.valType()
		}
	case c >= 0x20 && c <= 0x26: // local.*, global.*, table.get/set
		_, err = r.u32()
	case c >= 0x28 && c <= 0x3e:
		err = r.memarg()
	case c == 0x3f || c == 0x40:
		err = r.zeroIndex()
	case c == opI32Const:
		_, err = r.sleb(32)
	case c == opI64Const:
		_, err = r.sleb(64)
	case c == 0x43:
		_, err = r.bytes(4)
	case c == 0x44:
		_, err = r.bytes(8)
	case c == 0xd0:
		_, err = r.refType()
	case c == prefixMisc:
		in.op, err = r.misc()
	case c == prefixSIMD:
		in.op, err = r.simd()
	case c == 0x00 || c == 0x01 || c == opElse || c == opEnd || c == opReturn ||
		c == 0x1a || c == 0x1b || (c >= 0x45 && c <= 0xc4) || c == 0xd1:
		// No immediates.
	default:
		r.pos = start
		if what, ok := unsupported[c]; ok {
			return in, r.errorf("unsupported instruction: %s", what)
		}
		return in, r.errorf("unknown opcode %#x", c)
	}
	return in, err
}

func (r *reader) misc() (uint32, error) {
	start := r.pos - 1
	sub, err := r.u32()
	if err != nil {
		return 0, err
	}
	op := uint32(prefixMisc<<8) | sub
	switch {
	case sub <= 7: // saturating truncation
	case sub == 8: // memory.init data mem
		if _, err = r.u32(); err == nil {
			err = r.zeroIndex()
		}
	case sub == 9 || sub == 13: // data.drop, elem.drop
		_, err = r.u32()
	case sub == 10: // memory.copy mem mem
		if err = r.zeroIndex(); err == nil {
			err = r.zeroIndex()
		}
	case sub == 11:
		err = r.zeroIndex()
	case sub == 12 || sub == 14: // table.init elem table, table.copy table table
		if _, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case sub >= 15 && sub <= 17:
		_, err = r.u32()
	default:
		r.pos = start
		return 0, r.errorf("unsupported instruction 0xfc %d (a post-2.0 proposal such as memory64 or threads)", sub)
	}
	return op, err
}

func (r *reader) simd() (uint32, error) {
	start := r.pos - 1
	sub, err := r.u32()
	if err != nil {
		return 0, err
	}
	if sub > 0xff || simdGaps[sub] {
		r.pos = start
		if sub >= 0x100 && sub <= 0x113 {
			return 0, r.errorf("unsupported instruction 0xfd %#x (relaxed SIMD)", sub)
		}
		return 0, r.errorf("unknown SIMD instruction 0xfd %#x", sub)
	}
	op := uint32(prefixSIMD<<8) | sub
	switch {
	case sub <= 0x0b || sub == 0x5c || sub == 0x5d: // loads, store, load_zero
		err = r.memarg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		_, err = r.bytes(16)
	case sub >= 0x15 && sub <= 0x22: // extract/replace lane
		_, err = r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load/store lane
		if err = r.memarg(); err == nil {
			_, err = r.byte()
		}
	}
	return op, err
}

// expr decodes a constant expression (global initializers, segment
// offsets, element expressions) up to and including its final end, and
// returns its bytes.
func (r *reader) expr() ([]byte, error) {
	start := r.pos
	depth := 0
	for {
		in, err := r.next()
		if err != nil {
			return nil, err
		}
		switch in.op {
		case opBlock, opLoop, opIf:
			depth++
		case opEnd:
			if depth == 0 {
				return r.b[start:r.pos], nil
			}
			depth--
		}
	}
}
