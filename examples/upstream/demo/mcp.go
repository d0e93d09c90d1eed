package demo

// A minimal MCP-style server over the Streamable HTTP shape, enough to drive
// a gateway's session handling:
//
//   - POST /mcp with a JSON-RPC 2.0 request. "initialize" needs no session;
//     its response carries a new Mcp-Session-Id header. Every other call
//     must carry that header: missing → 400, unknown or ended → 404.
//     Methods: initialize, ping, tools/list, tools/call (tool "echo" with
//     argument "text"). A notification (no id) is answered 202 with no body.
//     Batches (JSON arrays) are refused with 400.
//   - GET /mcp with the header opens an SSE stream of the session's
//     notifications: first "stream open", then one "echo: <text>" per echo
//     call, as notifications/message; a ": ping" comment every 5 s. It ends
//     when the session ends or the client leaves.
//   - DELETE /mcp with the header ends the session (200); its streams end.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// SessionHeader is the MCP session header.
const SessionHeader = "Mcp-Session-Id"

// MCP protocol version answered when the client does not ask for one.
const mcpProtocolVersion = "2025-06-18"

const (
	maxStreamsPerSession = 4
	maxMCPBody           = 1 << 20
	notificationQueue    = 16
	mcpPingInterval      = 5 * time.Second
)

type mcpSessions struct {
	mu       sync.Mutex
	max      int
	sessions map[string]*mcpSession
}

type mcpSession struct {
	ended   chan struct{}
	streams map[chan []byte]struct{} // guarded by mcpSessions.mu
}

func (m *mcpSessions) init(max int) {
	m.max = max
	m.sessions = map[string]*mcpSession{}
}

func (m *mcpSessions) create() (string, bool) {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sessions) >= m.max {
		return "", false
	}
	m.sessions[id] = &mcpSession{ended: make(chan struct{}), streams: map[chan []byte]struct{}{}}
	return id, true
}

func (m *mcpSessions) get(id string) *mcpSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[id]
}

func (m *mcpSessions) end(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if ok {
		delete(m.sessions, id)
		close(s.ended)
	}
	return ok
}

// publish queues a notification on every open stream of the session,
// dropping it for a stream whose queue is full.
func (m *mcpSessions) publish(s *mcpSession, msg []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range s.streams {
		select {
		case ch <- msg:
		default:
		}
	}
}

// MCPSessions is the number of live MCP sessions.
func (s *Server) MCPSessions() int {
	s.mcp.mu.Lock()
	defer s.mcp.mu.Unlock()
	return len(s.mcp.sessions)
}

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

var nullID = json.RawMessage("null")

func writeRPC(ctx *fasthttp.RequestCtx, httpStatus int, id json.RawMessage, result any, rerr *rpcError) {
	if len(id) == 0 {
		id = nullID
	}
	out, _ := json.Marshal(rpcResponse{JSONRPC: "2.0", ID: id, Result: result, Error: rerr})
	ctx.SetStatusCode(httpStatus)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

func (s *Server) serveMCP(ctx *fasthttp.RequestCtx, method string) {
	switch method {
	case "POST":
		s.mcpCall(ctx)
	case "GET":
		if sess := s.mcpSession(ctx); sess != nil {
			s.mcpStream(ctx, sess)
		}
	case "DELETE":
		id := string(ctx.Request.Header.Peek(SessionHeader))
		if id == "" {
			refuse(ctx, fasthttp.StatusBadRequest, "missing "+SessionHeader)
		} else if !s.mcp.end(id) {
			refuse(ctx, fasthttp.StatusNotFound, "unknown session")
		}
	default:
		refuse(ctx, fasthttp.StatusMethodNotAllowed, "use POST, GET or DELETE")
	}
}

// mcpSession returns the session named by the request header, or answers
// 400/404 and returns nil.
func (s *Server) mcpSession(ctx *fasthttp.RequestCtx) *mcpSession {
	id := string(ctx.Request.Header.Peek(SessionHeader))
	if id == "" {
		refuse(ctx, fasthttp.StatusBadRequest, "missing "+SessionHeader)
		return nil
	}
	sess := s.mcp.get(id)
	if sess == nil {
		refuse(ctx, fasthttp.StatusNotFound, "unknown session")
	}
	return sess
}

func (s *Server) mcpCall(ctx *fasthttp.RequestCtx) {
	body, err := readBody(ctx, maxMCPBody)
	if err != nil {
		writeRPC(ctx, fasthttp.StatusRequestEntityTooLarge, nil, nil, &rpcError{-32600, err.Error()})
		return
	}
	var req rpcRequest
	if len(body) > 0 && body[0] == '[' {
		writeRPC(ctx, fasthttp.StatusBadRequest, nil, nil, &rpcError{-32600, "batches are not supported"})
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeRPC(ctx, fasthttp.StatusBadRequest, nil, nil, &rpcError{-32700, "parse error: " + err.Error()})
		return
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		writeRPC(ctx, fasthttp.StatusBadRequest, req.ID, nil, &rpcError{-32600, `invalid request: need "jsonrpc":"2.0" and a method`})
		return
	}
	if req.Method == "initialize" {
		if len(req.ID) == 0 {
			writeRPC(ctx, fasthttp.StatusBadRequest, nil, nil, &rpcError{-32600, "initialize must be a request"})
			return
		}
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		json.Unmarshal(req.Params, &p)
		if p.ProtocolVersion == "" {
			p.ProtocolVersion = mcpProtocolVersion
		}
		id, ok := s.mcp.create()
		if !ok {
			writeRPC(ctx, fasthttp.StatusServiceUnavailable, req.ID, nil, &rpcError{-32000, "session table full"})
			return
		}
		ctx.Response.Header.Set(SessionHeader, id)
		writeRPC(ctx, fasthttp.StatusOK, req.ID, map[string]any{
			"protocolVersion": p.ProtocolVersion,
			"capabilities":    map[string]any{"tools": map[string]any{"listChanged": false}},
			"serverInfo":      map[string]any{"name": "wasmgate-demo", "version": "0.1.0"},
		}, nil)
		return
	}
	sess := s.mcpSession(ctx)
	if sess == nil {
		return
	}
	if len(req.ID) == 0 { // a notification
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		return
	}
	switch req.Method {
	case "ping":
		writeRPC(ctx, fasthttp.StatusOK, req.ID, struct{}{}, nil)
	case "tools/list":
		writeRPC(ctx, fasthttp.StatusOK, req.ID, map[string]any{"tools": []any{map[string]any{
			"name":        "echo",
			"description": "Returns its text argument.",
			"inputSchema": map[string]any{
				"type":       "object",
				"properties": map[string]any{"text": map[string]any{"type": "string"}},
				"required":   []string{"text"},
			},
		}}}, nil)
	case "tools/call":
		var p struct {
			Name      string `json:"name"`
			Arguments struct {
				Text *string `json:"text"`
			} `json:"arguments"`
		}
		if err := json.Unmarshal(req.Params, &p); err != nil {
			writeRPC(ctx, fasthttp.StatusOK, req.ID, nil, &rpcError{-32602, "invalid params: " + err.Error()})
			return
		}
		if p.Name != "echo" {
			writeRPC(ctx, fasthttp.StatusOK, req.ID, nil, &rpcError{-32602, "unknown tool: " + strconv.Quote(p.Name)})
			return
		}
		if p.Arguments.Text == nil {
			writeRPC(ctx, fasthttp.StatusOK, req.ID, nil, &rpcError{-32602, `echo needs a "text" argument`})
			return
		}
		text := *p.Arguments.Text
		s.mcp.publish(sess, notification("echo: "+text))
		writeRPC(ctx, fasthttp.StatusOK, req.ID, map[string]any{
			"content": []any{map[string]any{"type": "text", "text": text}},
			"isError": false,
		}, nil)
	default:
		writeRPC(ctx, fasthttp.StatusOK, req.ID, nil, &rpcError{-32601, "method not found: " + req.Method})
	}
}

func notification(text string) []byte {
	out, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"method":  "notifications/message",
		"params":  map[string]any{"level": "info", "logger": "demo", "data": text},
	})
	return out
}

func (s *Server) mcpStream(ctx *fasthttp.RequestCtx, sess *mcpSession) {
	s.mcp.mu.Lock()
	full := len(sess.streams) >= maxStreamsPerSession
	s.mcp.mu.Unlock()
	if full {
		refuse(ctx, fasthttp.StatusTooManyRequests, "too many streams for this session")
		return
	}
	setStreamHeaders(ctx)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		ch := make(chan []byte, notificationQueue)
		s.mcp.mu.Lock()
		full := len(sess.streams) >= maxStreamsPerSession
		if !full {
			sess.streams[ch] = struct{}{}
		}
		s.mcp.mu.Unlock()
		if full {
			return
		}
		s.openStreams.Add(1)
		defer s.openStreams.Add(-1)
		defer func() {
			s.mcp.mu.Lock()
			delete(sess.streams, ch)
			s.mcp.mu.Unlock()
		}()
		ping := time.NewTicker(mcpPingInterval)
		defer ping.Stop()
		var buf []byte
		seq := 1
		msg := notification("stream open")
		for {
			if msg != nil {
				buf = sse.AppendEvent(buf[:0], strconv.Itoa(seq), "", msg)
				seq++
			} else {
				buf = sse.AppendComment(buf[:0], "ping")
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			select {
			case msg = <-ch:
			case <-ping.C:
				msg = nil
			case <-sess.ended:
				return
			case <-s.done:
				return
			}
		}
	})
}
