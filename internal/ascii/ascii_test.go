package ascii

import (
	"strings"
	"testing"
)

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"Content-Type", "content-type"}, {"X-API-Key", "x-api-key"}, {"Host", "Hosts"}, {"", ""},
		{"a", "b"}, {"[", "{"}, {"@", "`"}, {"Straße", "STRASSE"}, {"Kelvin", "\u212aelvin"}, {"é", "É"},
		{"coo-ie", "cookie"},
	} {
		want := strings.EqualFold(tc.a, tc.b)
		if got := EqualFold(tc.a, tc.b); got != want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.a, tc.b, got, want)
		}
		if got := EqualFold(tc.a, []byte(tc.b)); got != want {
			t.Errorf("EqualFold(%q, []byte(%q)) = %v, want %v", tc.a, tc.b, got, want)
		}
	}
}

func FuzzEqualFold(f *testing.F) {
	f.Add("Content-Type", "content-type")
	f.Add("Kelvin", "\u212aelvin")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := EqualFold(a, []byte(b)), strings.EqualFold(a, b); got != want {
			t.Fatalf("EqualFold(%q, %q) = %v, strings.EqualFold says %v", a, b, got, want)
		}
	})
}
