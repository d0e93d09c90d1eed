;; The example interceptor in hand-written WebAssembly text, speaking the
;; proxy-wasm ABI v0.2.1 with no SDK. sdk/ABI.md walks through it.
;;
;; Behaviour (same as the other four languages), configured with JSON
;; {"header": NAME, "value": VALUE, "api_key": KEY}:
;;   (a) every response gets the header NAME: VALUE;
;;   (b) with api_key set, a request whose x-api-key differs gets a 401;
;;   (c) SSE events named "shout" get their data upper-cased, events named
;;       "drop" are dropped, all others pass byte-identical.
;;
;; Limits of this hand-written version: one configuration per instance (the
;; last proxy_on_configure wins), at most 4 KiB of configuration, JSON
;; string values are used raw (backslash escapes are not decoded), and up to
;; 64 SSE streams at once per instance (further ones pass unmodified).
(module
  ;; ---- host functions: module "env", names and signatures from the spec.
  ;; Every pointer/size is an i32 (wasm32); every function returns a status.
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param $type i32) (param $start i32) (param $max i32)
                      (param $ret_ptr i32) (param $ret_len i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $set_buffer (param $type i32) (param $start i32) (param $size i32)
                      (param $ptr i32) (param $len i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param $map i32) (param $key i32) (param $key_len i32)
                      (param $ret_ptr i32) (param $ret_len i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace_header (param $map i32) (param $key i32) (param $key_len i32)
                          (param $val i32) (param $val_len i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param $status i32) (param $details i32) (param $details_len i32)
                               (param $body i32) (param $body_len i32)
                               (param $headers i32) (param $headers_len i32)
                               (param $grpc_status i32) (result i32)))

  ;; ---- memory: one page to start; the host reads and writes it directly.
  ;;   0..7        return slots: the host writes a pointer at 0, a size at 4
  ;;   1024..      constant strings (data segments below)
  ;;   4096..8191  a copy of the plugin configuration
  ;;   8192..8447  64 context ids whose response is an SSE stream
  ;;   16384..     bump heap for proxy_on_memory_allocate, reset per callback
  (memory (export "memory") 1)

  (data (i32.const 1024) "header")              ;; 1024, 6
  (data (i32.const 1040) "value")               ;; 1040, 5
  (data (i32.const 1056) "api_key")             ;; 1056, 7
  (data (i32.const 1072) "x-api-key")           ;; 1072, 9
  (data (i32.const 1088) "content-type")        ;; 1088, 12
  (data (i32.const 1104) "text/event-stream")   ;; 1104, 17
  (data (i32.const 1136) "application/json")    ;; 1136, 16
  (data (i32.const 1168) "api_key_mismatch")    ;; 1168, 16
  (data (i32.const 1200) "{\22error\22:\22invalid or missing x-api-key\22}") ;; 1200, 40
  (data (i32.const 1264) "event")               ;; 1264, 5
  (data (i32.const 1280) "data")                ;; 1280, 4
  (data (i32.const 1296) "drop")                ;; 1296, 4
  (data (i32.const 1312) "shout")               ;; 1312, 5

  (global $heap (mut i32) (i32.const 16384))    ;; next free heap byte
  (global $cfg_len (mut i32) (i32.const 0))
  (global $hdr_ptr (mut i32) (i32.const 0))  (global $hdr_len (mut i32) (i32.const 0))
  (global $val_ptr (mut i32) (i32.const 0))  (global $val_len (mut i32) (i32.const 0))
  (global $key_ptr (mut i32) (i32.const 0))  (global $key_len (mut i32) (i32.const 0))
  (global $found_ptr (mut i32) (i32.const 0)) (global $found_len (mut i32) (i32.const 0))
  (global $content_end (mut i32) (i32.const 0))
  (global $value_start (mut i32) (i32.const 0))

  ;; The marker the host looks for to know which ABI this module speaks.
  (func (export "proxy_abi_version_0_2_1"))

  ;; The host calls this to place return values (header values, bodies) in
  ;; our memory. A bump allocator is enough: nothing the host returns is kept
  ;; past the callback that asked for it, so every callback resets the heap.
  (func $alloc (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    ;; grow the memory when the heap would pass its end; 0 means failure
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func $reset_heap (global.set $heap (i32.const 16384)))

  ;; memeq(a, b, n): 1 when n bytes at a and b are equal.
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $no
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; is_ws(c): JSON whitespace.
  (func $is_ws (param $c i32) (result i32)
    (i32.or (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
            (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  ;; json_str(key, key_len): find "key" : "value" in the configuration copy
  ;; and set $found_ptr/$found_len to the raw value. Returns 1 when found.
  (func $json_str (param $key i32) (param $klen i32) (result i32)
    (local $i i32) (local $end i32) (local $j i32)
    (local.set $i (i32.const 4096))
    (local.set $end (i32.add (i32.const 4096) (global.get $cfg_len)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.add (local.get $klen) (i32.const 2))) (local.get $end)))
        ;; a quote, the key, a quote?
        (if (i32.and (i32.and (i32.eq (i32.load8_u (local.get $i)) (i32.const 34))
                              (i32.eq (i32.load8_u (i32.add (i32.add (local.get $i) (local.get $klen)) (i32.const 1))) (i32.const 34)))
                     (call $memeq (i32.add (local.get $i) (i32.const 1)) (local.get $key) (local.get $klen)))
          (then
            (local.set $j (i32.add (i32.add (local.get $i) (local.get $klen)) (i32.const 2)))
            (block $skip1 (loop $ws1
              (br_if $skip1 (i32.ge_u (local.get $j) (local.get $end)))
              (br_if $skip1 (i32.eqz (call $is_ws (i32.load8_u (local.get $j)))))
              (local.set $j (i32.add (local.get $j) (i32.const 1))) (br $ws1)))
            ;; then a colon (otherwise this was a value, not a key)
            (if (i32.and (i32.lt_u (local.get $j) (local.get $end)) (i32.eq (i32.load8_u (local.get $j)) (i32.const 58)))
              (then
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (block $skip2 (loop $ws2
                  (br_if $skip2 (i32.ge_u (local.get $j) (local.get $end)))
                  (br_if $skip2 (i32.eqz (call $is_ws (i32.load8_u (local.get $j)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1))) (br $ws2)))
                ;; the value must be a string
                (if (i32.or (i32.ge_u (local.get $j) (local.get $end)) (i32.ne (i32.load8_u (local.get $j)) (i32.const 34)))
                  (then (return (i32.const 0))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (global.set $found_ptr (local.get $j))
                ;; up to the closing quote, stepping over backslash pairs
                (block $close (loop $chars
                  (br_if $close (i32.ge_u (local.get $j) (local.get $end)))
                  (br_if $close (i32.eq (i32.load8_u (local.get $j)) (i32.const 34)))
                  (if (i32.eq (i32.load8_u (local.get $j)) (i32.const 92))
                    (then (local.set $j (i32.add (local.get $j) (i32.const 1)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1))) (br $chars)))
                (if (i32.ge_u (local.get $j) (local.get $end)) (then (return (i32.const 0))))
                (global.set $found_len (i32.sub (local.get $j) (global.get $found_ptr)))
                (return (i32.const 1))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.const 0))

  ;; proxy_on_configure(root_context_id, configuration_size) -> bool
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (call $reset_heap)
    (global.set $cfg_len (i32.const 0))
    (global.set $hdr_len (i32.const 0)) (global.set $val_len (i32.const 0)) (global.set $key_len (i32.const 0))
    (if (i32.gt_u (local.get $size) (i32.const 4096)) (then (return (i32.const 0))))
    (if (local.get $size)
      (then
        ;; PLUGIN_CONFIGURATION is buffer type 7; the host allocates a copy
        ;; in our memory and writes its address at 0 and its size at 4.
        (if (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
          (then (return (i32.const 0))))
        (global.set $cfg_len (i32.load (i32.const 4)))
        (memory.copy (i32.const 4096) (i32.load (i32.const 0)) (global.get $cfg_len))))
    (if (call $json_str (i32.const 1024) (i32.const 6))
      (then (global.set $hdr_ptr (global.get $found_ptr)) (global.set $hdr_len (global.get $found_len))
            (call $lower (global.get $hdr_ptr) (global.get $hdr_len))))   ;; header names are lower case
    (if (call $json_str (i32.const 1040) (i32.const 5))
      (then (global.set $val_ptr (global.get $found_ptr)) (global.set $val_len (global.get $found_len))))
    (if (call $json_str (i32.const 1056) (i32.const 7))
      (then (global.set $key_ptr (global.get $found_ptr)) (global.set $key_len (global.get $found_len))))
    (i32.const 1))

  ;; lower(p, n): ASCII A-Z to a-z, in place.
  (func $lower (param $p i32) (param $n i32)
    (local $c i32) (local $end i32)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 65)) (i32.le_u (local.get $c) (i32.const 90)))
        (then (i32.store8 (local.get $p) (i32.add (local.get $c) (i32.const 32)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $next))))

  ;; put32(p, v): little-endian store (wasm is little-endian already).
  (func $put32 (param $p i32) (param $v i32) (i32.store (local.get $p) (local.get $v)))

  ;; put_str(p, src, n) -> p+n+1: copy n bytes and a NUL terminator.
  (func $put_str (param $p i32) (param $src i32) (param $n i32) (result i32)
    (memory.copy (local.get $p) (local.get $src) (local.get $n))
    (i32.store8 (i32.add (local.get $p) (local.get $n)) (i32.const 0))
    (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 1)))

  ;; proxy_on_request_headers(context_id, num_headers, end_of_stream) -> action
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $map i32) (local $p i32) (local $pairs i32)
    (if (i32.eqz (global.get $key_len)) (then (return (i32.const 0))))   ;; no api_key: Continue
    (call $reset_heap)
    ;; map 0 = HTTP_REQUEST_HEADERS; status 0 = OK (1 = NOT_FOUND)
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 1072) (i32.const 9) (i32.const 0) (i32.const 4)))
      (then
        (if (i32.and (i32.eq (i32.load (i32.const 4)) (global.get $key_len))
                     (call $memeq (i32.load (i32.const 0)) (global.get $key_ptr) (global.get $key_len)))
          (then (return (i32.const 0))))))                                  ;; key matches: Continue
    ;; Serialize the local response headers: count, (key len, value len)
    ;; per pair, then "key\0value\0" per pair.
    (local.set $pairs (select (i32.const 2) (i32.const 1) (i32.ne (global.get $hdr_len) (i32.const 0))))
    (local.set $map (call $alloc (i32.const 256)))
    (call $put32 (local.get $map) (local.get $pairs))
    (call $put32 (i32.add (local.get $map) (i32.const 4)) (i32.const 12))
    (call $put32 (i32.add (local.get $map) (i32.const 8)) (i32.const 16))
    (call $put32 (i32.add (local.get $map) (i32.const 12)) (global.get $hdr_len))
    (call $put32 (i32.add (local.get $map) (i32.const 16)) (global.get $val_len))
    (local.set $p (i32.add (i32.add (local.get $map) (i32.const 4)) (i32.mul (local.get $pairs) (i32.const 8))))
    (local.set $p (call $put_str (local.get $p) (i32.const 1088) (i32.const 12)))
    (local.set $p (call $put_str (local.get $p) (i32.const 1136) (i32.const 16)))
    (if (i32.eq (local.get $pairs) (i32.const 2))
      (then
        (local.set $p (call $put_str (local.get $p) (global.get $hdr_ptr) (global.get $hdr_len)))
        (local.set $p (call $put_str (local.get $p) (global.get $val_ptr) (global.get $val_len)))))
    (drop (call $send_local_response (i32.const 401) (i32.const 1168) (i32.const 16)
                                     (i32.const 1200) (i32.const 40)
                                     (local.get $map) (i32.sub (local.get $p) (local.get $map))
                                     (i32.const 0)))
    (i32.const 1))                                                          ;; Pause: the host answers

  ;; slot_of(key, home) -> address of the SSE table slot holding key, or 0.
  ;; A context usually sits in its home slot (id mod 64); collisions fall
  ;; back to a scan of the 64 slots.
  (func $slot_of (param $key i32) (param $home i32) (result i32)
    (local $a i32)
    (local.set $a (i32.add (i32.const 8192) (i32.shl (i32.and (local.get $home) (i32.const 63)) (i32.const 2))))
    (if (i32.eq (i32.load (local.get $a)) (local.get $key)) (then (return (local.get $a))))
    (local.set $a (i32.const 8192))
    (block $none (loop $next
      (br_if $none (i32.ge_u (local.get $a) (i32.const 8448)))
      (if (i32.eq (i32.load (local.get $a)) (local.get $key)) (then (return (local.get $a))))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (br $next)))
    (i32.const 0))

  ;; sse_slot(ctx) -> address of ctx's slot in the SSE table, or 0.
  (func $sse_slot (param $ctx i32) (result i32)
    (call $slot_of (local.get $ctx) (local.get $ctx)))

  ;; proxy_on_response_headers(context_id, num_headers, end_of_stream) -> action
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $slot i32)
    (call $reset_heap)
    ;; (a) map 2 = HTTP_RESPONSE_HEADERS: add or replace NAME: VALUE
    (if (global.get $hdr_len)
      (then (drop (call $replace_header (i32.const 2) (global.get $hdr_ptr) (global.get $hdr_len)
                                        (global.get $val_ptr) (global.get $val_len)))))
    ;; remember whether this response is an event stream
    (if (i32.eqz (call $get_header (i32.const 2) (i32.const 1088) (i32.const 12) (i32.const 0) (i32.const 4)))
      (then
        (if (i32.and (i32.ge_u (i32.load (i32.const 4)) (i32.const 17))
                     (call $memeq (i32.load (i32.const 0)) (i32.const 1104) (i32.const 17)))
          (then
            (local.set $slot (call $slot_of (i32.const 0) (local.get $ctx)))  ;; a free slot
            (if (local.get $slot) (then (i32.store (local.get $slot) (local.get $ctx))))))))
    (i32.const 0))

  ;; line_end(i, end) -> start of the next line; $content_end = end of this
  ;; line's content. Lines end with LF, CR or CRLF.
  (func $line_end (param $i i32) (param $end i32) (result i32)
    (local $c i32)
    (block $eol (loop $scan
      (br_if $eol (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $c (i32.load8_u (local.get $i)))
      (br_if $eol (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (global.set $content_end (local.get $i))
    (if (i32.ge_u (local.get $i) (local.get $end)) (then (return (local.get $i))))
    (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 13))
      (then
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.and (i32.lt_u (local.get $i) (local.get $end)) (i32.eq (i32.load8_u (local.get $i)) (i32.const 10)))
          (then (local.set $i (i32.add (local.get $i) (i32.const 1)))))
        (return (local.get $i))))
    (i32.add (local.get $i) (i32.const 1)))

  ;; field_is(i, line_end, name, name_len) -> 1 when the line [i, line_end)
  ;; is the field `name`; sets $value_start past "name:" and one space.
  (func $field_is (param $i i32) (param $le i32) (param $name i32) (param $nlen i32) (result i32)
    (local $v i32)
    (local.set $v (i32.add (local.get $i) (local.get $nlen)))
    (if (i32.gt_u (local.get $v) (local.get $le)) (then (return (i32.const 0))))
    (if (i32.eqz (call $memeq (local.get $i) (local.get $name) (local.get $nlen))) (then (return (i32.const 0))))
    (if (i32.lt_u (local.get $v) (local.get $le))
      (then
        (if (i32.ne (i32.load8_u (local.get $v)) (i32.const 58)) (then (return (i32.const 0))))  ;; "eventx:" is not "event"
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (if (i32.and (i32.lt_u (local.get $v) (local.get $le)) (i32.eq (i32.load8_u (local.get $v)) (i32.const 32)))
          (then (local.set $v (i32.add (local.get $v) (i32.const 1)))))))
    (global.set $value_start (local.get $v))
    (i32.const 1))

  ;; proxy_on_response_body(context_id, body_size, end_of_stream) -> action
  ;; For an SSE response the body buffer holds exactly one complete event.
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $ev i32) (local $end i32) (local $i i32) (local $next i32)
    (local $name i32) (local $nlen i32) (local $c i32)
    (if (i32.or (i32.eqz (local.get $size)) (i32.eqz (call $sse_slot (local.get $ctx))))
      (then (return (i32.const 0))))
    (call $reset_heap)
    ;; buffer 1 = HTTP_RESPONSE_BODY
    (if (call $get_buffer (i32.const 1) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (local.set $ev (i32.load (i32.const 0)))
    (local.set $end (i32.add (local.get $ev) (i32.load (i32.const 4))))
    ;; pass 1: the last "event" field names the event
    (local.set $i (local.get $ev))
    (block $done (loop $lines
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $next (call $line_end (local.get $i) (local.get $end)))
      (if (call $field_is (local.get $i) (global.get $content_end) (i32.const 1264) (i32.const 5))
        (then (local.set $name (global.get $value_start))
              (local.set $nlen (i32.sub (global.get $content_end) (global.get $value_start)))))
      (local.set $i (local.get $next))
      (br $lines)))
    ;; "drop": replace the whole event with nothing
    (if (i32.and (i32.eq (local.get $nlen) (i32.const 4)) (call $memeq (local.get $name) (i32.const 1296) (i32.const 4)))
      (then
        (drop (call $set_buffer (i32.const 1) (i32.const 0) (i32.sub (local.get $end) (local.get $ev)) (i32.const 0) (i32.const 0)))
        (return (i32.const 0))))
    (if (i32.eqz (i32.and (i32.eq (local.get $nlen) (i32.const 5)) (call $memeq (local.get $name) (i32.const 1312) (i32.const 5))))
      (then (return (i32.const 0))))                                         ;; any other event: untouched
    ;; "shout", pass 2: upper-case a-z in every data value, in place
    (local.set $i (local.get $ev))
    (block $done2 (loop $lines2
      (br_if $done2 (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $next (call $line_end (local.get $i) (local.get $end)))
      (if (call $field_is (local.get $i) (global.get $content_end) (i32.const 1280) (i32.const 4))
        (then
          (local.set $i (global.get $value_start))
          (block $vend (loop $chars
            (br_if $vend (i32.ge_u (local.get $i) (global.get $content_end)))
            (local.set $c (i32.load8_u (local.get $i)))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
              (then (i32.store8 (local.get $i) (i32.sub (local.get $c) (i32.const 32)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $chars)))))
      (local.set $i (local.get $next))
      (br $lines2)))
    (drop (call $set_buffer (i32.const 1) (i32.const 0) (i32.sub (local.get $end) (local.get $ev))
                            (local.get $ev) (i32.sub (local.get $end) (local.get $ev))))
    (i32.const 0))

  ;; proxy_on_delete(context_id): forget the context's SSE slot.
  (func (export "proxy_on_delete") (param $ctx i32)
    (local $slot i32)
    (if (i32.eqz (local.get $ctx)) (then (return)))
    (local.set $slot (call $sse_slot (local.get $ctx)))
    (if (local.get $slot) (then (i32.store (local.get $slot) (i32.const 0)))))
)
