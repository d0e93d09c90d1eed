// Exercises the AssemblyScript SDK for sdk/layers_test.go: on request
// headers it reports what the SDK computed as request headers.
import {
  Action, BufferType, HttpContext, MapType, MetricType, RootContext,
  addHeader, defineMetric, getBuffer, getHeader, getHeaders, incrementMetric,
  jsonString, removeHeader, replaceHeader, routeName, sessionID, setRootContext,
} from "../index";

export * from "../exports";

class Root extends RootContext {
  greeting: string = "";
  metric: u32 = 0;
  onConfigure(size: u32): bool {
    const raw = getBuffer(BufferType.PluginConfiguration, size);
    if (raw === null) return false;
    const g = jsonString(String.UTF8.decode(raw), "greeting");
    if (g !== null) this.greeting = g;
    this.metric = defineMetric(MetricType.Counter, "probe_requests");
    return true;
  }
  newHttpContext(id: u32): HttpContext | null { return new Probe(id, this); }
}

function report(name: string, value: string): void { replaceHeader(MapType.HttpRequestHeaders, name, value); }

class Probe extends HttpContext {
  constructor(id: u32, public root: Root) { super(id); }
  onRequestHeaders(n: u32, eos: bool): Action {
    incrementMetric(this.root.metric, 1);
    report("x-greeting", this.root.greeting);
    report("x-session", sessionID());
    report("x-route", routeName());
    const all = getHeaders(MapType.HttpRequestHeaders);
    report("x-count", all === null ? "error" : all.length.toString());
    removeHeader(MapType.HttpRequestHeaders, "x-remove");
    addHeader(MapType.HttpRequestHeaders, "x-added", "1");
    report("x-absent", getHeader(MapType.HttpRequestHeaders, "x-absent") === null ? "none" : "some");
    return Action.Continue;
  }
}

setRootContext((id: u32): RootContext => new Root(id));
