// Command guest exercises the SDK API for sdk's tests: each request path
// selects what it does, and results come back as response headers.
package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

func init() { sdk.SetPlugin(&plugin{}) }

func main() {}

type plugin struct{ sdk.DefaultPlugin }

func (p *plugin) OnVMStart(size int) bool {
	b, err := sdk.VMConfig()
	return err == nil && len(b) == size
}

func (p *plugin) NewRootContext(uint32) sdk.RootContext { return &root{} }

type root struct {
	sdk.DefaultRootContext
	cfg struct {
		GCInterval  *int `json:"gc_interval"`
		GCThreshold *int `json:"gc_threshold"`
		Garbage     int  `json:"garbage"`
	}
	requests sdk.Metric
	ticks    int
	paused   uint32
}

func (r *root) OnConfigure(int) bool {
	if err := sdk.UnmarshalPluginConfig(&r.cfg); err != nil {
		sdk.Errorf("config: %v", err)
		return false
	}
	if r.cfg.GCInterval != nil {
		sdk.SetGCInterval(*r.cfg.GCInterval)
	}
	if r.cfg.GCThreshold != nil {
		sdk.SetGCThreshold(*r.cfg.GCThreshold)
	}
	var err error
	if r.requests, err = sdk.DefineMetric(sdk.MetricCounter, "guest_requests"); err != nil {
		return false
	}
	return sdk.SetTickPeriod(250*time.Millisecond) == nil
}

func (r *root) OnTick() {
	r.ticks++
	sdk.SetSharedData("ticks", []byte(strconv.Itoa(r.ticks)), 0)
	if r.paused != 0 {
		id := r.paused
		r.paused = 0
		if sdk.SetEffectiveContext(id) == nil {
			sdk.SetRequestHeader("x-resumed-by", "tick")
			sdk.ContinueRequest()
		}
	}
}

func (r *root) NewHTTPContext(id uint32) sdk.HTTPContext { return &stream{root: r, id: id} }

type stream struct {
	sdk.DefaultHTTPContext
	root *root
	id   uint32
	path string
	sink []byte
}

func (s *stream) OnRequestHeaders(int, bool) sdk.Action {
	s.root.requests.Increment(1)
	if n := s.root.cfg.Garbage; n > 0 {
		s.sink = make([]byte, n) // garbage for the GC interval measurement
	}
	s.path, _ = sdk.RequestHeader(":path")
	switch s.path {
	case "/props":
		sdk.SetRequestHeader("x-session", sdk.SessionID())
		sdk.SetRequestHeader("x-route", sdk.RouteName())
		sdk.SetRequestHeader("x-plugin", sdk.PluginName())
	case "/headers":
		all, err := sdk.Headers(sdk.MapRequestHeaders)
		if err != nil {
			return sdk.Continue
		}
		var names []string
		for _, h := range all {
			names = append(names, h[0])
		}
		all = append(all, sdk.Header{"x-names", strings.Join(names, ",")})
		sdk.SetHeaders(sdk.MapRequestHeaders, all)
		sdk.AddHeader(sdk.MapRequestHeaders, "x-added", "1")
		sdk.RemoveHeader(sdk.MapRequestHeaders, "x-remove-me")
	case "/shared":
		_, cas, err := sdk.GetSharedData("k")
		if err == sdk.StatusNotFound {
			cas = 0
		}
		sdk.SetSharedData("k", []byte("v1"), cas)
		stale := sdk.SetSharedData("k", []byte("v2"), cas+100)
		sdk.SetRequestHeader("x-stale", stale.Error())
	case "/call":
		_, err := sdk.DispatchHTTPCall("auth", []sdk.Header{{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}},
			[]byte("q"), nil, time.Second, func(nh, bs, nt int) {
				body, _ := sdk.HTTPCallResponseBody(bs)
				hs, _ := sdk.HTTPCallResponseHeaders()
				status := ""
				for _, h := range hs {
					if h[0] == ":status" {
						status = h[1]
					}
				}
				if status != "200" {
					sdk.SendLocalResponse(403, []sdk.Header{{"x-call", status}}, body, "denied by auth")
					return
				}
				sdk.SetRequestHeader("x-call-body", string(body))
				code, _, _ := sdk.HTTPCallStatus()
				sdk.SetRequestHeader("x-call-status", strconv.Itoa(int(code)))
				sdk.ContinueRequest()
			})
		if err != nil {
			sdk.Errorf("dispatch: %v", err)
			return sdk.Continue
		}
		return sdk.Pause
	case "/pause":
		s.root.paused = s.id
		return sdk.Pause
	case "/log":
		sdk.Infof("hello from %s", s.path)
		lvl, err := sdk.HostLogLevel()
		if err == nil {
			sdk.SetRequestHeader("x-log-level", strconv.Itoa(int(lvl)))
		}
	}
	return sdk.Continue
}

func (s *stream) OnRequestBody(size int, eos bool) sdk.Action {
	if !eos {
		return sdk.Pause // buffer until the whole body is here
	}
	b, _ := sdk.RequestBody(size)
	sdk.SetRequestBody(size, []byte(strings.ToUpper(string(b))))
	return sdk.Continue
}

func (s *stream) OnResponseBody(size int, eos bool) sdk.Action {
	if s.path != "/sse" || size == 0 {
		return sdk.Continue
	}
	ev, err := sdk.ResponseEvent(size)
	if err != nil {
		return sdk.Continue
	}
	switch ev.Name() {
	case "rename":
		ev.SetField("event", "renamed")
		ev.SetData([]byte("line1\nline2"))
		sdk.SetResponseEvent(size, ev)
	case "gone":
		sdk.DropResponseEvent(size)
	}
	return sdk.Continue
}
