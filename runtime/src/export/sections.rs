//! Top-level custom sections of a component: appended by the exporter, read
//! back without descending into the nested modules and components.

/// The section naming the exported model and its lineage (JSON).
pub const EXPORT_SECTION: &str = "tensorlet-export";
/// The section holding the export's signature (JSON); always the last section.
pub const SIGNATURE_SECTION: &str = "tensorlet-signature";

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a custom section (id 0) named `name` to a component or module.
pub(crate) fn append(bytes: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut payload = Vec::with_capacity(name.len() + data.len() + 5);
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    bytes.push(0);
    leb128(payload.len(), bytes);
    bytes.extend_from_slice(&payload);
}

/// A custom section found at the top level.
pub(crate) struct Custom<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// Offset of the section's id byte.
    pub start: usize,
    /// Offset just past the section.
    pub end: usize,
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<usize, String> {
    let mut n: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or("the file ends inside a section header")?;
        *pos += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return usize::try_from(n).map_err(|_| "a section is too large".to_string());
        }
    }
    Err("a section size is not a valid LEB128 number".into())
}

/// The custom sections at the top level of a WebAssembly component.
pub(crate) fn top_level_custom(bytes: &[u8]) -> Result<Vec<Custom<'_>>, String> {
    // Component preamble: magic, version 0x0d, layer 1.
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" || bytes[6..8] != [1, 0] {
        return Err("it is not a WebAssembly component".into());
    }
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb(bytes, &mut pos)?;
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or("a section runs past the end of the file; it is truncated")?;
        if id == 0 {
            let mut p = pos;
            let name_len = read_leb(bytes, &mut p)?;
            let name_end = p
                .checked_add(name_len)
                .filter(|&e| e <= end)
                .ok_or("a custom section name runs past its section")?;
            if let Ok(name) = std::str::from_utf8(&bytes[p..name_end]) {
                out.push(Custom {
                    name,
                    data: &bytes[name_end..end],
                    start,
                    end,
                });
            }
        }
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_sections_read_back_at_the_top_level() {
        let mut c = vec![0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        append(&mut c, "first", b"one");
        let big = vec![7u8; 300];
        append(&mut c, "second", &big);
        let found = top_level_custom(&c).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].name, found[0].data), ("first", &b"one"[..]));
        assert_eq!(found[1].data, &big[..]);
        assert_eq!(found[1].end, c.len());
        assert!(top_level_custom(&c[..c.len() - 1]).is_err());
        assert!(
            top_level_custom(b"\0asm\x01\0\0\0").is_err(),
            "a core module"
        );
    }
}
