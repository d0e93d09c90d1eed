package meter

import "errors"

// StripCustomSections returns wasm without its custom sections, checking
// only the section framing (ids and sizes), not the contents: it serves
// modules Instrument refuses, which a host may still hand to wazero
// unmetered. wazero v1.12.0 sizes its name maps from the counts a name
// section declares (40 bytes claiming 2^31 names make it allocate until
// the process dies); custom sections never change what a module does.
func StripCustomSections(wasm []byte) ([]byte, error) {
	if len(wasm) < len(header) {
		return nil, errors.New("meter: module shorter than its 8-byte header")
	}
	out := append(make([]byte, 0, len(wasm)), wasm[:len(header)]...)
	r := &reader{b: wasm, pos: len(header)}
	for !r.eof() {
		start := r.pos
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		if _, err := r.bytes(size); err != nil {
			return nil, err
		}
		if id != secCustom {
			out = append(out, wasm[start:r.pos]...)
		}
	}
	return out, nil
}
