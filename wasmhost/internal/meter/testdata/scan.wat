;; scan.wat: the 1 KB header-style scan in hand-written WAT, for the
;; meter package's differential tests and benchmarks.
(module
  (memory (export "memory") 1)
  (func (export "buffer") (result i32) (i32.const 0))
  (func (export "scan") (param $n i32) (result i32)
    (local $i i32) (local $c i32) (local $b i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $b (i32.load8_u (local.get $i)))
        (if (i32.or (i32.eq (local.get $b) (i32.const 10)) (i32.eq (local.get $b) (i32.const 58)))
          (then (local.set $c (i32.add (local.get $c) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $c)))
