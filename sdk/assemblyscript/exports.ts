// The callbacks exported to the host. A plugin's entry file re-exports
// them: `export * from "<path to sdk/assemblyscript>/exports";`

import { roots, streams, newRoot, Action } from "./index";

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size > 0 ? size : 1);
}

export function proxy_on_context_create(id: u32, parent: u32): void {
  if (parent == 0) {
    roots.set(id, newRoot(id));
    return;
  }
  if (!roots.has(parent)) return;
  const ctx = roots.get(parent).newHttpContext(id);
  if (ctx !== null) streams.set(id, ctx);
}

export function proxy_on_vm_start(id: u32, size: u32): bool {
  return roots.has(id) ? roots.get(id).onVmStart(size) : false;
}

export function proxy_on_configure(id: u32, size: u32): bool {
  return roots.has(id) ? roots.get(id).onConfigure(size) : false;
}

export function proxy_on_tick(id: u32): void {
  if (roots.has(id)) roots.get(id).onTick();
}

export function proxy_on_request_headers(id: u32, n: u32, eos: bool): u32 {
  return streams.has(id) ? streams.get(id).onRequestHeaders(n, eos) : Action.Continue;
}

export function proxy_on_request_body(id: u32, size: u32, eos: bool): u32 {
  return streams.has(id) ? streams.get(id).onRequestBody(size, eos) : Action.Continue;
}

export function proxy_on_response_headers(id: u32, n: u32, eos: bool): u32 {
  return streams.has(id) ? streams.get(id).onResponseHeaders(n, eos) : Action.Continue;
}

export function proxy_on_response_body(id: u32, size: u32, eos: bool): u32 {
  return streams.has(id) ? streams.get(id).onResponseBody(size, eos) : Action.Continue;
}

export function proxy_on_done(id: u32): bool { return true; }

export function proxy_on_log(id: u32): void {
  if (streams.has(id)) streams.get(id).onLog();
}

export function proxy_on_delete(id: u32): void {
  if (streams.has(id)) {
    streams.get(id).onDelete();
    streams.delete(id);
    return;
  }
  roots.delete(id);
}
