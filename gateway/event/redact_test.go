package event

import "testing"

func TestHeaderSet(t *testing.T) {
	s := NewHeaderSet([]string{"Authorization", "cookie", "X-API-Key"})
	for name, want := range map[string]bool{
		"authorization": true, "AUTHORIZATION": true, "Cookie": true, "x-api-key": true,
		"Cookies": false, "Set-Cookie": false, "": false, "X-Api-Keys-And-More-Than-Any-Name": false,
		"Content-Type": false, "cookiE": true, "coo-ie": false, "X-API-Kez": false,
	} {
		if got := s.Has(name); got != want {
			t.Errorf("Has(%q) = %v, want %v", name, got, want)
		}
		if got := s.HasBytes([]byte(name)); got != want {
			t.Errorf("HasBytes(%q) = %v, want %v", name, got, want)
		}
	}
	if NewHeaderSet(nil).Has("Cookie") {
		t.Error("empty set has Cookie")
	}
}

func BenchmarkHeaderSet(b *testing.B) {
	s := NewHeaderSet([]string{"Authorization", "Cookie", "Set-Cookie", "x-api-key"})
	names := [][]byte{[]byte("Host"), []byte("User-Agent"), []byte("Content-Type"), []byte("Mcp-Session-Id"),
		[]byte("X-Forwarded-For"), []byte("Via"), []byte("X-Request-Id"), []byte("Authorization")}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			s.HasBytes(n)
		}
	}
}
