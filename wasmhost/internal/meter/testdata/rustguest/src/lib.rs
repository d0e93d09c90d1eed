//! The Rust guest of the meter package's differential tests and
//! benchmarks: the 1 KB header-style scan, plus work that allocates,
//! sorts and calls through trait objects.

use std::collections::BTreeMap;

static mut BUF: [u8; 4096] = [0; 4096];

#[link(wasm_import_module = "env")]
extern "C" {
    fn trace(i: i32, v: i64);
}

#[no_mangle]
pub extern "C" fn buffer() -> *mut u8 {
    unsafe { BUF.as_mut_ptr() }
}

#[no_mangle]
pub extern "C" fn scan(n: i32) -> i32 {
    let buf = unsafe { &BUF[..(n.max(0) as usize).min(4096)] };
    let mut c = 0;
    for &b in buf {
        if b == b'\n' || b == b':' {
            c += 1;
        }
    }
    c
}

trait Op {
    fn apply(&self, a: i64, b: i64) -> i64;
}
struct Add;
struct Mul;
impl Op for Add {
    fn apply(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}
impl Op for Mul {
    fn apply(&self, a: i64, b: i64) -> i64 {
        a.wrapping_mul(b).wrapping_add(1)
    }
}

#[no_mangle]
pub extern "C" fn work(n: i32) -> i64 {
    let ops: [Box<dyn Op>; 2] = [Box::new(Add), Box::new(Mul)];
    let mut words: Vec<String> = (0..n.max(0)).map(|i| "ab".repeat((i % 5) as usize + 1)).collect();
    words.sort();
    let mut counts = BTreeMap::new();
    for w in &words {
        *counts.entry(w.len()).or_insert(0i64) += 1;
    }
    let mut acc = 0i64;
    for (i, (k, v)) in counts.iter().enumerate() {
        acc = ops[i & 1].apply(acc, (*k as i64) * v);
    }
    unsafe { trace(n, acc) };
    acc
}
