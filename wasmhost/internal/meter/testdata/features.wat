;; features.wat exercises every instruction family of Wasm 2.0 that the
;; metering pass must decode, re-encode or renumber around. Each export
;; returns a value derived from the work it did, so the differential test
;; can compare metered and unmetered runs.
(module
  (type $binop (func (param i32 i32) (result i32)))
  (type $pair (func (param i32) (result i32 i32)))
  (import "env" "trace" (func $trace (param i32 i64)))
  (import "genv" "g" (global $gi i32))
  (memory (export "memory") 2 16)
  (table $t 8 funcref)
  (table $ext 2 externref)
  (global $counter (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $add))
  (global $fromImport i32 (global.get $gi))

  (elem $active (i32.const 0) $add $sub $mul $self_indirect)
  (elem $passive func $add $mul)
  (elem $exprs funcref (ref.func $sub) (ref.null func) (item ref.func $add))
  (elem declare func $pair_swap)
  (elem (table $t) (i32.const 5) funcref (ref.func $rec))
  (data $d0 (i32.const 16) "hello, wasm metering!")
  (data $passive_data "0123456789abcdef")

  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $binop) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $binop) (i32.mul (local.get 0) (local.get 1)))

  ;; call_indirect through the table; index 3 calls itself n times.
  (func $self_indirect (type $binop)
    (if (result i32) (i32.eqz (local.get 0))
      (then (local.get 1))
      (else (call_indirect $t (type $binop)
              (i32.sub (local.get 0) (i32.const 1))
              (i32.add (local.get 1) (i32.const 2))
              (i32.const 3)))))

  (func $pair_swap (type $pair) (i32.const 7) (local.get 0))

  (func $rec (type $binop)
    (if (result i32) (i32.le_s (local.get 0) (i32.const 1))
      (then (local.get 1))
      (else (call $rec (i32.sub (local.get 0) (i32.const 1))
                       (i32.mul (local.get 1) (local.get 0))))))

  (func (export "control") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $done
      (loop $top
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (block $b3 (block $b2 (block $b1 (block $b0
          (br_table $b0 $b1 $b2 $b3 (i32.rem_u (local.get $i) (i32.const 4))))
          (local.set $acc (i32.add (local.get $acc) (i32.const 1))) (br $b3))
          (local.set $acc (i32.mul (local.get $acc) (i32.const 3))) (br $b3))
          (local.set $acc (i32.xor (local.get $acc) (i32.const 0x55))))
        (call $trace (local.get $i) (i64.extend_i32_u (local.get $acc)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $top)))
    (local.get $acc))

  ;; control without the call: a small loop the metering unrolls, left
  ;; by br_if and by a br_table default past the loop (labels relabel
  ;; shifts) and continued by br $top (the next copy).
  (func (export "control_unrolled") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $done
      (loop $top
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (block $b3 (block $b2 (block $b1 (block $b0
          (br_table $b0 $b1 $b2 $b3 $done
            (select (i32.const 4) (i32.rem_u (local.get $i) (i32.const 4))
                    (i32.eq (local.get $i) (i32.const 13)))))
          (local.set $acc (i32.add (local.get $acc) (i32.const 1))) (br $b3))
          (local.set $acc (i32.mul (local.get $acc) (i32.const 3))) (br $b3))
          (local.set $acc (i32.xor (local.get $acc) (i32.const 0x55))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $top)))
    (local.get $acc))

  (func (export "multivalue") (param i32) (result i32)
    (local $a i32) (local $b i32)
    (call $pair_swap (local.get 0))
    (block $blk (type $binop) (param i32 i32) (result i32) (i32.sub))
    (local.set $a)
    (i32.const 1) (i32.const 2)
    (loop $l (param i32 i32) (result i32 i32) (br_if 0 (i32.const 0)))
    (local.set $b) (drop)
    (i32.add (local.get $a) (local.get $b)))

  (func (export "signext_sat") (param f64) (result i64)
    (i64.add
      (i64.add (i64.extend8_s (i64.const 0x80)) (i64.extend_i32_s (i32.extend16_s (i32.const 0x8001))))
      (i64.add (i64.trunc_sat_f64_s (local.get 0))
               (i64.extend_i32_u (i32.trunc_sat_f32_u (f32.const -5.5))))))

  (func (export "simd") (param i32) (result i32)
    (local $v v128)
    (local.set $v (v128.load offset=16 (i32.const 0)))
    (local.set $v (i8x16.add (local.get $v) (i8x16.splat (local.get 0))))
    (v128.store (i32.const 256) (local.get $v))
    (v128.store8_lane 3 (i32.const 300) (local.get $v))
    (local.set $v (v128.load32_lane 1 (i32.const 256) (local.get $v)))
    (local.set $v (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0 (local.get $v) (v128.const i32x4 1 2 3 4)))
    (local.set $v (v128.bitselect (local.get $v) (v128.load64_zero (i32.const 16)) (v128.const i64x2 -1 0)))
    (local.set $v (f32x4.add (local.get $v) (f32x4.convert_i32x4_s (i32x4.splat (i32.const 3)))))
    (i32.add
      (i32.add (i8x16.extract_lane_u 0 (local.get $v)) (i32x4.extract_lane 3 (local.get $v)))
      (i32.add (i8x16.bitmask (local.get $v)) (i32x4.extract_lane 0 (i32x4.dot_i16x8_s (local.get $v) (local.get $v))))))

  (func (export "bulk") (param $n i32) (result i32)
    (memory.fill (i32.const 1024) (i32.const 0xab) (local.get $n))
    (memory.copy (i32.const 4096) (i32.const 1024) (local.get $n))
    (memory.init $passive_data (i32.const 8192) (i32.const 2) (i32.const 10))
    (table.init $t $passive (i32.const 6) (i32.const 0) (i32.const 2))
    (table.copy $t $t (i32.const 4) (i32.const 0) (i32.const 1))
    (drop (table.grow $t (ref.null func) (i32.const 2)))
    (table.fill $t (i32.const 8) (ref.func $mul) (i32.const 2))
    (elem.drop $passive)
    (i32.add
      (i32.add (i32.load8_u (i32.sub (i32.add (i32.const 4096) (local.get $n)) (i32.const 1)))
               (i32.load (i32.const 8192)))
      (i32.add (table.size $t)
               (call_indirect $t (type $binop) (i32.const 6) (i32.const 7) (i32.const 9)))))

  (func (export "refs") (result i32)
    (local $f funcref)
    (local.set $f (table.get $t (i32.const 1)))
    (table.set $t (i32.const 7) (local.get $f))
    (table.set $ext (i32.const 0) (ref.null extern))
    (i32.add
      (i32.add (ref.is_null (local.get $f)) (ref.is_null (table.get $ext (i32.const 0))))
      (i32.add (call_indirect $t (type $binop) (i32.const 10) (i32.const 3) (i32.const 7))
               (select (result i32) (i32.const 100) (i32.const 200) (ref.is_null (global.get $fref))))))

  (func (export "indirect_chain") (param i32) (result i32)
    (call_indirect $t (type $binop) (local.get 0) (i32.const 0) (i32.const 3)))

  (func (export "recurse") (param i32) (result i32)
    (call_indirect $t (type $binop) (local.get 0) (i32.const 1) (i32.const 5)))

  (func (export "memory_ops") (result i64)
    (local $p i32)
    (drop (memory.grow (i32.const 1)))
    (i64.store (i32.const 65536) (i64.const 0x1122334455667788))
    (i64.add (i64.load32_s offset=4 (i32.const 65536))
             (i64.extend_i32_u (i32.add (memory.size) (i32.load16_u (i32.const 65537))))))

  (func (export "floats") (param f32 f64) (result f64)
    (f64.add (f64.promote_f32 (f32.sqrt (local.get 0)))
             (f64.copysign (f64.nearest (local.get 1)) (f64.const -0.0))))

  (func $start
    (global.set $counter (i32.add (global.get $fromImport) (i32.const 41))))
  (start $start)
  (func (export "counter") (result i32) (global.get $counter))
  (func (export "unreachable_tail") (param i32) (result i32)
    (block (br_if 0 (local.get 0)) (return (i32.const 5)))
    (return (i32.const 6))
    (unreachable)
    (memory.fill))
)
