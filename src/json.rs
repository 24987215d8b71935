//! Writing JSON by hand where it is on a hot path (payload batches, audit lines, error bodies):
//! the one string escaper. A leaf: it imports nothing.

/// Writes a JSON string literal, escaping what RFC 8259 requires.
pub fn write_json_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // The common case (names, ids, metadata keys) needs no escape: one branch-free pass over
    // the bytes, then one copy.
    let needs_escape = bytes.iter().fold(false, |any, &byte| {
        any | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    // Runs of bytes that need no escape are copied whole.
    let mut run = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..at]);
        out.extend_from_slice(escape);
        run = at + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_json_reads_them() {
        let mut texts: Vec<String> = (0u8..0x80)
            .map(|b| format!("a{}b", char::from(b)))
            .collect();
        texts.extend(
            [
                "",
                "plain",
                "\"quoted\"",
                "back\\slash",
                "ünïcødé ✓ 🔑",
                "\u{7f}\u{1f}\n\r\t",
            ]
            .map(str::to_owned),
        );
        for text in texts {
            let mut out = Vec::new();
            write_json_string(&text, &mut out);
            let back: String = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            assert_eq!(back, text);
            assert!(
                out.iter().all(|b| *b >= 0x20),
                "raw control byte in {out:?}"
            );
        }
    }
}
