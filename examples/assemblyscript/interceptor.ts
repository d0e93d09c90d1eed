// The example interceptor in AssemblyScript (see examples/README.md): adds
// a response header, checks x-api-key, and rewrites SSE events named
// "shout" and "drop".
import {
  Action, BufferType, Event, HttpContext, MapType, RootContext, LogLevel,
  getBuffer, getHeader, getHeaderBytes, jsonString, log, replaceHeader,
  sendLocalResponse, setBuffer, setRootContext,
} from "../../sdk/assemblyscript/index";

export * from "../../sdk/assemblyscript/exports";

class Config {
  header: string = "";
  value: string = "";
  apiKey: string = "";
}

class Root extends RootContext {
  cfg: Config = new Config();

  onConfigure(size: u32): bool {
    const raw = getBuffer(BufferType.PluginConfiguration, size);
    if (raw === null) {
      log(LogLevel.Error, "cannot read the plugin configuration");
      return false;
    }
    const json = String.UTF8.decode(raw);
    const cfg = new Config();
    const h = jsonString(json, "header"), v = jsonString(json, "value"), k = jsonString(json, "api_key");
    if (h !== null) cfg.header = h.toLowerCase();
    if (v !== null) cfg.value = v;
    if (k !== null) cfg.apiKey = k;
    this.cfg = cfg;
    return true;
  }

  newHttpContext(id: u32): HttpContext | null { return new Stream(id, this.cfg); }
}

const UNAUTHORIZED = String.UTF8.encode('{"error":"invalid or missing x-api-key"}');

class Stream extends HttpContext {
  sse: bool = false;
  constructor(id: u32, public cfg: Config) { super(id); }

  onRequestHeaders(n: u32, eos: bool): Action {
    if (this.cfg.apiKey.length == 0) return Action.Continue;
    const key = getHeaderBytes(MapType.HttpRequestHeaders, "x-api-key");
    if (key !== null && String.UTF8.decode(key) == this.cfg.apiKey) return Action.Continue;
    const headers: string[][] = [["content-type", "application/json"]];
    if (this.cfg.header.length > 0) headers.push([this.cfg.header, this.cfg.value]);
    sendLocalResponse(401, headers, UNAUTHORIZED, "api_key_mismatch");
    return Action.Pause;
  }

  onResponseHeaders(n: u32, eos: bool): Action {
    if (this.cfg.header.length > 0) replaceHeader(MapType.HttpResponseHeaders, this.cfg.header, this.cfg.value);
    const ct = getHeader(MapType.HttpResponseHeaders, "content-type");
    this.sse = ct !== null && ct.startsWith("text/event-stream");
    return Action.Continue;
  }

  onResponseBody(size: u32, eos: bool): Action {
    if (!this.sse || size == 0) return Action.Continue;
    const raw = getBuffer(BufferType.HttpResponseBody, size);
    if (raw === null) return Action.Continue;
    const ev = new Event(Uint8Array.wrap(raw));
    const name = ev.name();
    if (name == "drop") {
      setBuffer(BufferType.HttpResponseBody, size, new ArrayBuffer(0));
    } else if (name == "shout") {
      ev.mapData(upper);
      setBuffer(BufferType.HttpResponseBody, size, ev.bytes());
    }
    return Action.Continue;
  }
}

function upper(c: u8): u8 { return c >= 0x61 && c <= 0x7a ? c - 0x20 : c; }

setRootContext((id: u32): RootContext => new Root(id));
