;; headers.wat: the benchmark guest in WAT. It reads request header "x-in"
;; in on_request_headers and adds it back as response header "x-out".
;; Memory: a bump allocator that resets at each request (one context at a
;; time is enough for a benchmark guest; the host serializes calls).
(module
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-in")
  (data (i32.const 32) "x-out")
  ;; 64: returned value pointer, 68: returned value size
  ;; 72: saved value pointer, 76: saved value size
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $bump) (i32.const 131072))
      (then (global.set $bump (i32.const 4096)) (local.set $p (i32.const 4096))
            (global.set $bump (i32.add (i32.const 4096) (local.get $n)))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $bump (i32.const 4096))
    (i32.store (i32.const 76) (i32.const 0))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 64) (i32.const 68)))
      (then
        (i32.store (i32.const 72) (i32.load (i32.const 64)))
        (i32.store (i32.const 76) (i32.load (i32.const 68)))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.load (i32.const 76))
      (then (drop (call $add (i32.const 2) (i32.const 32) (i32.const 5)
                    (i32.load (i32.const 72)) (i32.load (i32.const 76))))))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
