package meter

import (
	"bytes"
	"strings"
	"testing"
)

func TestStripCustomSections(t *testing.T) {
	typ := appendSection(nil, secType, []byte{1, 0x60, 0, 0})
	custom := appendSection(nil, secCustom, append(appendName(nil, "foo"), 1, 2, 3))
	hdr := append([]byte(nil), header...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		in, out []byte
		err     string
	}{
		{"none", cat(hdr, typ), cat(hdr, typ), ""},
		{"custom dropped", cat(hdr, custom, typ, custom), cat(hdr, typ), ""},
		{"huge name section", cat(hugeNameCount(), typ), cat(hdr, typ), ""},
		{"short", hdr[:5], nil, "header"},
		{"size past end", cat(hdr, []byte{1, 9, 1}), nil, "exceeds"},
		{"unterminated size", cat(hdr, []byte{1, 0x80, 0x80}), nil, "unexpected end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := StripCustomSections(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.out) {
				t.Fatalf("got % x, %v; want % x", got, err, tc.out)
			}
		})
	}
}
