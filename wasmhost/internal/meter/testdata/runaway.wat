;; runaway.wat: guests that never end on their own. Each export must be
;; stopped by the meter within its budget.
(module
  (type $v (func))
  (memory (export "memory") 256 256)
  (table 2 funcref)
  (elem (i32.const 0) $ping $pong)

  (func (export "spin") (loop $l (br $l)))

  ;; A loop that does honest-looking work and exits only when a counter
  ;; wraps, i.e. after ~2^64 iterations.
  (func (export "count") (result i64)
    (local $i i64)
    (loop $l
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.ne (local.get $i) (i64.const 0))))
    (local.get $i))

  ;; Unbounded recursion: ends in a stack overflow trap unless the budget
  ;; ends it first; with a small budget the meter must win.
  (func $deep (export "deep") (param i32) (result i32)
    (i32.add (call $deep (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))

  ;; Mutual recursion through direct calls, without growing the stack.
  (func $even (export "even") (param i64) (result i32)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 1))
      (else (call $odd (i64.sub (local.get 0) (i64.const 1))))))
  (func $odd (param i64) (result i32)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 0))
      (else (call $even (i64.sub (local.get 0) (i64.const 1))))))

  ;; A call_indirect cycle: ping -> pong -> ping ... as tail-position
  ;; indirect calls that overflow the stack eventually.
  (func $ping (type $v) (call_indirect (type $v) (i32.const 1)))
  (func $pong (type $v) (call_indirect (type $v) (i32.const 0)))
  (func (export "indirect") (call $ping))

  ;; Huge bulk operations in a loop: 16 MiB per instruction.
  (func (export "fill") (loop $l
    (memory.fill (i32.const 0) (i32.const 7) (i32.const 0x1000000))
    (memory.copy (i32.const 0) (i32.const 0x800000) (i32.const 0x800000))
    (br $l)))
)
