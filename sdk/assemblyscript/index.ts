// A thin AssemblyScript layer over the proxy-wasm ABI v0.2.1 for wasmgate
// plugins (see sdk/ABI.md). A plugin subclasses RootContext and
// HttpContext, calls setRootContext with a factory at top level, and
// re-exports the callbacks: `export * from "<sdk>/exports";`.
//
// Build: npx asc plugin.ts -O3 --runtime incremental --use abort= --exportStart _initialize
// (top-level code then runs in _initialize, called by the host like any
// WASI reactor, instead of a Wasm start function at instantiation)
//
// Memory: blocks the host returns are allocated with heap.alloc by
// proxy_on_memory_allocate (outside the GC); this layer copies each into an
// ArrayBuffer and frees it at once.

// ---- host functions (module "env") -----------------------------------------

@external("env", "proxy_log")
declare function proxy_log(level: u32, msg: usize, size: usize): u32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(t: u32, start: usize, max: usize, retData: usize, retSize: usize): u32;
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(t: u32, start: usize, size: usize, data: usize, dataSize: usize): u32;
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(t: u32, key: usize, keySize: usize, retData: usize, retSize: usize): u32;
@external("env", "proxy_add_header_map_value")
declare function proxy_add_header_map_value(t: u32, key: usize, keySize: usize, val: usize, valSize: usize): u32;
@external("env", "proxy_replace_header_map_value")
declare function proxy_replace_header_map_value(t: u32, key: usize, keySize: usize, val: usize, valSize: usize): u32;
@external("env", "proxy_remove_header_map_value")
declare function proxy_remove_header_map_value(t: u32, key: usize, keySize: usize): u32;
@external("env", "proxy_get_header_map_pairs")
declare function proxy_get_header_map_pairs(t: u32, retData: usize, retSize: usize): u32;
@external("env", "proxy_send_local_response")
declare function proxy_send_local_response(status: u32, details: usize, detailsSize: usize, body: usize, bodySize: usize, headers: usize, headersSize: usize, grpcStatus: i32): u32;
@external("env", "proxy_get_property")
declare function proxy_get_property(path: usize, pathSize: usize, retData: usize, retSize: usize): u32;
@external("env", "proxy_continue_stream")
declare function proxy_continue_stream(t: u32): u32;
@external("env", "proxy_set_tick_period_milliseconds")
declare function proxy_set_tick_period_milliseconds(ms: u32): u32;
@external("env", "proxy_define_metric")
declare function proxy_define_metric(t: u32, name: usize, nameSize: usize, retID: usize): u32;
@external("env", "proxy_increment_metric")
declare function proxy_increment_metric(id: u32, delta: i64): u32;

// ---- types ---------------------------------------------------------------------

export const enum Status { Ok = 0, NotFound = 1, BadArgument = 2, SerializationFailure = 3, ParseFailure = 4, InvalidMemoryAccess = 6, Empty = 7, CasMismatch = 8, InternalFailure = 10, Unimplemented = 12 }
export const enum Action { Continue = 0, Pause = 1 }
export const enum LogLevel { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 }
export const enum BufferType { HttpRequestBody = 0, HttpResponseBody = 1, HttpCallResponseBody = 4, VmConfiguration = 6, PluginConfiguration = 7 }
export const enum MapType { HttpRequestHeaders = 0, HttpRequestTrailers = 1, HttpResponseHeaders = 2, HttpResponseTrailers = 3, HttpCallResponseHeaders = 6 }
export const enum StreamType { HttpRequest = 0, HttpResponse = 1 }
export const enum MetricType { Counter = 0, Gauge = 1, Histogram = 2 }

// Two u32 return slots the host writes an address and a size into.
const RET: usize = memory.data(8);

function utf8(s: string): ArrayBuffer { return String.UTF8.encode(s); }
function ptr(b: ArrayBuffer): usize { return changetype<usize>(b); }

// take copies the block the host returned through RET and frees it.
function take(): ArrayBuffer {
  const p = load<u32>(RET);
  const n = load<u32>(RET + 4);
  const out = new ArrayBuffer(n);
  if (n > 0) memory.copy(changetype<usize>(out), p, n);
  if (p != 0) heap.free(p);
  return out;
}

export function log(level: LogLevel, msg: string): void {
  const b = utf8(msg);
  proxy_log(level, ptr(b), b.byteLength);
}

// ---- buffers -------------------------------------------------------------------

/** Reads size bytes of a buffer; null on failure. */
export function getBuffer(t: BufferType, size: usize): ArrayBuffer | null {
  if (size == 0) return new ArrayBuffer(0);
  if (proxy_get_buffer_bytes(t, 0, size, RET, RET + 4) != Status.Ok) return null;
  return take();
}

/** Replaces the whole buffer (of oldSize bytes) with data; empty data drops an SSE event. */
export function setBuffer(t: BufferType, oldSize: usize, data: ArrayBuffer): Status {
  return proxy_set_buffer_bytes(t, 0, oldSize, ptr(data), data.byteLength);
}

// ---- headers ---------------------------------------------------------------------

/** A header value as raw bytes, or null when absent. */
export function getHeaderBytes(m: MapType, name: string): ArrayBuffer | null {
  const k = utf8(name);
  if (proxy_get_header_map_value(m, ptr(k), k.byteLength, RET, RET + 4) != Status.Ok) return null;
  return take();
}

export function getHeader(m: MapType, name: string): string | null {
  const b = getHeaderBytes(m, name);
  return b === null ? null : String.UTF8.decode(b);
}

export function addHeader(m: MapType, name: string, value: string): Status {
  const k = utf8(name), v = utf8(value);
  return proxy_add_header_map_value(m, ptr(k), k.byteLength, ptr(v), v.byteLength);
}

export function replaceHeader(m: MapType, name: string, value: string): Status {
  const k = utf8(name), v = utf8(value);
  return proxy_replace_header_map_value(m, ptr(k), k.byteLength, ptr(v), v.byteLength);
}

export function removeHeader(m: MapType, name: string): Status {
  const k = utf8(name);
  return proxy_remove_header_map_value(m, ptr(k), k.byteLength);
}

/** Serializes [name, value] pairs in the ABI's map format. */
export function serializeHeaders(pairs: string[][]): ArrayBuffer {
  const keys = new Array<ArrayBuffer>(pairs.length), vals = new Array<ArrayBuffer>(pairs.length);
  let size = 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    keys[i] = utf8(pairs[i][0]);
    vals[i] = utf8(pairs[i][1]);
    size += keys[i].byteLength + vals[i].byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, pairs.length);
  let p = base + 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    store<u32>(base + 4 + 8 * i, keys[i].byteLength);
    store<u32>(base + 8 + 8 * i, vals[i].byteLength);
    memory.copy(p, ptr(keys[i]), keys[i].byteLength);
    p += keys[i].byteLength;
    store<u8>(p++, 0);
    memory.copy(p, ptr(vals[i]), vals[i].byteLength);
    p += vals[i].byteLength;
    store<u8>(p++, 0);
  }
  return out;
}

/** Parses a serialized map into [name, value] pairs; null when malformed. */
export function deserializeHeaders(b: ArrayBuffer): string[][] | null {
  const out = new Array<string[]>();
  const len = b.byteLength;
  if (len <= 1) return out;
  if (len < 4) return null;
  const base = changetype<usize>(b);
  const n = load<u32>(base);
  if (<i64>n > (<i64>len - 4) / 8) return null;
  let off: i64 = 4 + 8 * <i64>n;
  for (let i: u32 = 0; i < n; i++) {
    const kl = <i64>load<u32>(base + 4 + 8 * i), vl = <i64>load<u32>(base + 8 + 8 * i);
    if (off + kl + vl + 2 > <i64>len) return null;
    const k = String.UTF8.decodeUnsafe(base + <usize>off, <usize>kl);
    off += kl + 1;
    const v = String.UTF8.decodeUnsafe(base + <usize>off, <usize>vl);
    off += vl + 1;
    out.push([k, v]);
  }
  return out;
}

export function getHeaders(m: MapType): string[][] | null {
  if (proxy_get_header_map_pairs(m, RET, RET + 4) != Status.Ok) return null;
  return deserializeHeaders(take());
}

// ---- responses, streams, properties, ticks, metrics ------------------------------------

/** Answers the client instead of the upstream; return Action.Pause after. */
export function sendLocalResponse(status: u32, headers: string[][], body: ArrayBuffer, details: string): Status {
  const h = serializeHeaders(headers), d = utf8(details);
  return proxy_send_local_response(status, ptr(d), d.byteLength, ptr(body), body.byteLength, ptr(h), h.byteLength, 0);
}

export function continueStream(t: StreamType): Status { return proxy_continue_stream(t); }

export function setTickPeriodMilliseconds(ms: u32): Status { return proxy_set_tick_period_milliseconds(ms); }

/** A property by path segments (sent NUL-joined, then dot-joined). */
export function getProperty(path: string[]): ArrayBuffer | null {
  for (let i = 0; i < 2; i++) {
    const p = utf8(path.join(i == 0 ? "\0" : "."));
    const st = proxy_get_property(ptr(p), p.byteLength, RET, RET + 4);
    if (st == Status.Ok) return take();
    if (st != Status.NotFound) return null;
  }
  return null;
}

/** The gateway session id of the current request ("" if none). */
export function sessionID(): string {
  const b = getProperty(["session", "id"]);
  return b === null ? "" : String.UTF8.decode(b);
}

/** The route the current request matched. */
export function routeName(): string {
  const b = getProperty(["route", "name"]);
  return b === null ? "" : String.UTF8.decode(b);
}

export function defineMetric(t: MetricType, name: string): u32 {
  const n = utf8(name);
  if (proxy_define_metric(t, ptr(n), n.byteLength, RET) != Status.Ok) return 0;
  return load<u32>(RET);
}

export function incrementMetric(id: u32, delta: i64): Status { return proxy_increment_metric(id, delta); }

// ---- JSON configuration ------------------------------------------------------------

/** The string member key of a flat JSON object, unescaped; null when absent. */
export function jsonString(json: string, key: string): string | null {
  let depth = 0;
  let i = 0;
  while (i < json.length) {
    const c = json.charCodeAt(i);
    if (c == 0x7b || c == 0x5b) { depth++; i++; continue; }
    if (c == 0x7d || c == 0x5d) { depth--; i++; continue; }
    if (c != 0x22) { i++; continue; }
    const start = ++i;
    while (i < json.length && json.charCodeAt(i) != 0x22) i += json.charCodeAt(i) == 0x5c ? 2 : 1;
    if (i >= json.length) return null;
    const name = json.substring(start, i++);
    let j = i;
    while (j < json.length && isWS(json.charCodeAt(j))) j++;
    if (j >= json.length || json.charCodeAt(j) != 0x3a || depth != 1 || name != key) continue;
    j++;
    while (j < json.length && isWS(json.charCodeAt(j))) j++;
    if (j >= json.length || json.charCodeAt(j) != 0x22) return null;
    let out = "";
    for (j++; j < json.length && json.charCodeAt(j) != 0x22; j++) {
      let ch = json.charCodeAt(j);
      if (ch == 0x5c && j + 1 < json.length) {
        const e = json.charCodeAt(++j);
        if (e == 0x6e) ch = 10;
        else if (e == 0x72) ch = 13;
        else if (e == 0x74) ch = 9;
        else if (e == 0x62) ch = 8;
        else if (e == 0x66) ch = 12;
        else if (e == 0x75 && j + 4 < json.length) { ch = <i32>parseInt(json.substring(j + 1, j + 5), 16); j += 4; }
        else ch = e;
      }
      out += String.fromCharCode(ch);
    }
    return out;
  }
  return null;
}

function isWS(c: i32): bool { return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d; }

// ---- SSE --------------------------------------------------------------------------

/** One server-sent event in wire form (the response body of one
 * on_response_body call). Reading never changes it; mapData edits data
 * values in place so every other byte stays the same. */
export class Event {
  constructor(public raw: Uint8Array) {}

  /** The value of the last field called name, or null. */
  field(name: string): string | null {
    let found: string | null = null;
    const n = String.UTF8.encode(name);
    const nl = n.byteLength;
    const np = changetype<usize>(n);
    const base = this.raw.dataStart;
    const len = this.raw.length;
    let i = 0;
    while (i < len) {
      let e = i;
      while (e < len && this.raw[e] != 10 && this.raw[e] != 13) e++;
      if (this.isField(i, e, np, nl)) {
        const v = this.valueStart(i + nl, e);
        found = String.UTF8.decodeUnsafe(base + v, e - v);
      }
      i = nextLine(this.raw, e);
    }
    return found;
  }

  /** The event type ("" when absent). */
  name(): string {
    const v = this.field("event");
    return v === null ? "" : v;
  }

  /** Replaces every byte c of every data value with f(c), in place. */
  mapData(f: (c: u8) => u8): void {
    const len = this.raw.length;
    let i = 0;
    while (i < len) {
      let e = i;
      while (e < len && this.raw[e] != 10 && this.raw[e] != 13) e++;
      if (this.isField(i, e, changetype<usize>(DATA), 4)) {
        for (let k = this.valueStart(i + 4, e); k < e; k++) this.raw[k] = f(this.raw[k]);
      }
      i = nextLine(this.raw, e);
    }
  }

  bytes(): ArrayBuffer { return this.raw.buffer; }

  private isField(i: i32, e: i32, name: usize, nl: i32): bool {
    if (e - i < nl || memory.compare(this.raw.dataStart + i, name, nl) != 0) return false;
    return i + nl == e || this.raw[i + nl] == 0x3a;
  }

  private valueStart(v: i32, e: i32): i32 {
    if (v < e) v++; // the colon
    if (v < e && this.raw[v] == 0x20) v++;
    return v;
  }
}

const DATA = String.UTF8.encode("data");

function nextLine(raw: Uint8Array, e: i32): i32 {
  if (e >= raw.length) return e;
  if (raw[e] == 13 && e + 1 < raw.length && raw[e + 1] == 10) return e + 2;
  return e + 1;
}

// ---- contexts ------------------------------------------------------------------------

/** One request/response pair. Every callback defaults to Continue. */
export class HttpContext {
  constructor(public id: u32) {}
  onRequestHeaders(numHeaders: u32, endOfStream: bool): Action { return Action.Continue; }
  onRequestBody(bodySize: u32, endOfStream: bool): Action { return Action.Continue; }
  onResponseHeaders(numHeaders: u32, endOfStream: bool): Action { return Action.Continue; }
  /** For an SSE response, called once per complete event. */
  onResponseBody(bodySize: u32, endOfStream: bool): Action { return Action.Continue; }
  onLog(): void {}
  onDelete(): void {}
}

/** One configuration of the plugin. */
export class RootContext {
  constructor(public id: u32) {}
  onVmStart(vmConfigurationSize: u32): bool { return true; }
  /** Read the configuration with getBuffer(BufferType.PluginConfiguration, size). */
  onConfigure(configurationSize: u32): bool { return true; }
  onTick(): void {}
  /** Makes the context of one request; null leaves the request alone. */
  newHttpContext(id: u32): HttpContext | null { return null; }
}

let rootFactory: (id: u32) => RootContext = (id: u32): RootContext => new RootContext(id);

/** Installs the function that makes root contexts; call it at top level. */
export function setRootContext(f: (id: u32) => RootContext): void { rootFactory = f; }

export const roots = new Map<u32, RootContext>();
export const streams = new Map<u32, HttpContext>();

export function newRoot(id: u32): RootContext { return rootFactory(id); }
