package event

import (
	"testing"
	"time"
)

func TestReleaseZeroesAndKeepsSmallStorage(t *testing.T) {
	tests := []struct {
		name     string
		body     int
		headers  int
		wantBody bool
		wantHdrs bool
	}{
		{"small", 100, 4, true, true},
		{"big body", maxPooledBytes + 1, 4, false, true},
		{"many headers", 10, 65, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Event{Session: "s", Seq: 7, Time: time.Now(), Type: Request, Status: 200,
				Body: make([]byte, tt.body), Data: []byte("d"), Headers: make([]Header, tt.headers)}
			for i := range e.Headers {
				e.Headers[i] = Header{"n", "v"}
			}
			hs := e.Headers
			e.Release()
			if e.Session != "" || e.Seq != 0 || !e.Time.IsZero() || e.Type != 0 || e.Status != 0 ||
				len(e.Body) != 0 || len(e.Data) != 0 || len(e.Headers) != 0 {
				t.Fatalf("released event not zero: %+v", e)
			}
			if (cap(e.Body) > 0) != tt.wantBody {
				t.Errorf("body storage kept = %v, want %v", cap(e.Body) > 0, tt.wantBody)
			}
			if (cap(e.Headers) > 0) != tt.wantHdrs {
				t.Errorf("header storage kept = %v, want %v", cap(e.Headers) > 0, tt.wantHdrs)
			}
			if hs[0] != (Header{}) {
				t.Error("released header storage still refers to its strings")
			}
		})
	}
}
