//! Serialized header maps: u32 count, a (u32 key length, u32 value length)
//! pair per entry, then each key and value followed by a NUL byte; all
//! integers little-endian.

fn put32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

fn get32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Serializes pairs; no pairs give an empty vector.
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    put32(&mut out, pairs.len());
    for (k, v) in pairs {
        put32(&mut out, k.len());
        put32(&mut out, v.len());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a serialized map; None when it is malformed.
pub fn deserialize(b: &[u8]) -> Option<Vec<(String, String)>> {
    if b.len() <= 1 {
        return Some(Vec::new());
    }
    if b.len() < 4 {
        return None;
    }
    let n = get32(b, 0);
    if n > (b.len() - 4) / 8 {
        return None;
    }
    let mut off = 4 + 8 * n;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (kl, vl) = (get32(b, 4 + 8 * i), get32(b, 8 + 8 * i));
        if off.checked_add(kl)?.checked_add(vl)?.checked_add(2)? > b.len() {
            return None;
        }
        let k = String::from_utf8_lossy(&b[off..off + kl]).into_owned();
        off += kl + 1;
        let v = String::from_utf8_lossy(&b[off..off + vl]).into_owned();
        off += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_example() {
        let b = super::serialize(&[("a", "1"), ("b", "22")]);
        assert_eq!(b, [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'1', 0, b'b', 0, b'2', b'2', 0]);
        let back = super::deserialize(&b).unwrap();
        assert_eq!(back, vec![("a".to_string(), "1".to_string()), ("b".to_string(), "22".to_string())]);
        assert!(super::deserialize(&[9, 0, 0, 0, 1]).is_none());
    }
}
