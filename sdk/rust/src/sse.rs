//! One server-sent event in wire form, as wasmgate puts it in the response
//! body buffer. Reading never changes the bytes; `map_data` edits data
//! values in place so everything else stays byte-identical.

pub struct Event {
    raw: Vec<u8>,
}

/// (content start, content end, next line start) of each line.
fn lines(raw: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let mut j = i;
        while j < raw.len() && raw[j] != b'\n' && raw[j] != b'\r' {
            j += 1;
        }
        let mut next = j;
        if next < raw.len() {
            next += if raw[next] == b'\r' && next + 1 < raw.len() && raw[next + 1] == b'\n' { 2 } else { 1 };
        }
        out.push((i, j, next));
        i = next;
    }
    out
}

/// Splits a line into (name, value start); None for comments and blanks.
fn field(raw: &[u8], start: usize, end: usize) -> Option<(&[u8], usize)> {
    if start == end || raw[start] == b':' {
        return None;
    }
    match raw[start..end].iter().position(|&c| c == b':') {
        None => Some((&raw[start..end], end)),
        Some(c) => {
            let mut v = start + c + 1;
            if v < end && raw[v] == b' ' {
                v += 1;
            }
            Some((&raw[start..start + c], v))
        }
    }
}

impl Event {
    pub fn parse(raw: Vec<u8>) -> Event {
        Event { raw }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.raw
    }

    /// The value of the last field called `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        for (s, e, _) in lines(&self.raw) {
            if let Some((n, v)) = field(&self.raw, s, e) {
                if n == name.as_bytes() {
                    found = Some(&self.raw[v..e]);
                }
            }
        }
        found
    }

    /// The event type ("" when absent, which clients treat as "message").
    pub fn name(&self) -> &[u8] {
        self.field("event").unwrap_or(b"")
    }

    /// The data lines joined with "\n".
    pub fn data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut first = true;
        for (s, e, _) in lines(&self.raw) {
            if let Some((n, v)) = field(&self.raw, s, e) {
                if n == b"data" {
                    if !first {
                        out.push(b'\n');
                    }
                    out.extend_from_slice(&self.raw[v..e]);
                    first = false;
                }
            }
        }
        out
    }

    /// Calls `f` on the value of every data line, in place.
    pub fn map_data<F: FnMut(&mut [u8])>(&mut self, mut f: F) {
        for (s, e, _) in lines(&self.raw) {
            let v = match field(&self.raw, s, e) {
                Some((n, v)) if n == b"data" => v,
                _ => continue,
            };
            f(&mut self.raw[v..e]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn read_and_map() {
        let mut e = Event::parse(b"event: shout\r\ndata: ab\r\ndata:cd\r\n: c\r\n\r\n".to_vec());
        assert_eq!(e.name(), b"shout");
        assert_eq!(e.data(), b"ab\ncd");
        e.map_data(|v| v.make_ascii_uppercase());
        assert_eq!(e.bytes(), b"event: shout\r\ndata: AB\r\ndata:CD\r\n: c\r\n\r\n");
    }
}
