//! Just enough JSON for plugin configuration without crates: read the
//! string members of a flat object.

/// Returns the string member `key` of the top-level object in `json`,
/// unescaped; None when absent or not a string.
pub fn string_field(json: &[u8], key: &str) -> Option<String> {
    let mut i = 0;
    let mut depth = 0i32;
    while i < json.len() {
        match json[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let (s, next) = read_string(json, i)?;
                i = next;
                let mut j = i;
                while j < json.len() && json[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < json.len() && json[j] == b':' && depth == 1 && s == key {
                    j += 1;
                    while j < json.len() && json[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < json.len() && json[j] == b'"' {
                        return read_string(json, j).map(|(v, _)| v);
                    }
                    return None;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads the string starting at the quote at `at`; returns it and the index
/// past its closing quote.
fn read_string(json: &[u8], at: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = at + 1;
    while i < json.len() {
        let c = json[i];
        i += 1;
        match c {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i)),
            b'\\' => {
                let e = *json.get(i)?;
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = std::str::from_utf8(json.get(i..i + 4)?).ok()?;
                        let cp = u32::from_str_radix(hex, 16).ok()?;
                        i += 4;
                        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => out.push(other),
                }
            }
            _ => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields() {
        let j = br#"{"header": "x-a", "nested": {"header": "no"}, "value": "q\"\u0041", "n": 1}"#;
        assert_eq!(super::string_field(j, "header").as_deref(), Some("x-a"));
        assert_eq!(super::string_field(j, "value").as_deref(), Some("q\"A"));
        assert_eq!(super::string_field(j, "n"), None);
        assert_eq!(super::string_field(j, "missing"), None);
    }
}
