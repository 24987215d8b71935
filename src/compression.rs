//! Opt-in compression of a payload before it is sealed (zstd), and bounded decompression.
//!
//! Off by default. A namespace turns it on with `compression = "zstd"` (docs/configuration.md);
//! its data keys then write envelope format 3, whose header records, inside the authenticated
//! part, whether each payload's plaintext was compressed (docs/format.md). A payload below the
//! namespace's minimum size, or one that does not shrink, is sealed as it is.
//!
//! Compressing data an attacker influences next to secrets in the same payload leaks, through
//! the sealed length, whether the two share substrings (CRIME/BREACH): docs/threat-model.md.
//!
//! Decompression never produces more than a caller-given bound, whatever the frame claims: a
//! crafted frame cannot make kmscodec allocate or write more than that.

use std::fmt;

/// zstd's default level, and kmscodec's.
pub const DEFAULT_LEVEL: i32 = 3;
/// Payloads (serialized, metadata included) smaller than this are not compressed by default:
/// below a few KiB zstd saves little and its per-call setup costs more than the bytes saved.
pub const DEFAULT_MIN_SIZE: usize = 4096;
/// The highest level zstd accepts.
pub const MAX_LEVEL: i32 = 22;

/// A compression algorithm a sealed payload can record. The byte is the format-3 header's
/// `compression` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Stored as it is.
    None,
    /// A single zstd frame (RFC 8878) that records its content size.
    Zstd,
}

impl Algorithm {
    /// The header byte.
    pub const fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Zstd => 1,
        }
    }

    /// The algorithm a header byte names, if any.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// A namespace's compression settings (`compression`, `compression_level`,
/// `compression_min_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The zstd level, 1 to [`MAX_LEVEL`] (negative levels are zstd's fast modes).
    pub level: i32,
    /// Serialized payloads shorter than this are sealed uncompressed.
    pub min_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            level: DEFAULT_LEVEL,
            min_size: DEFAULT_MIN_SIZE,
        }
    }
}

/// Why decompression failed. Only reached after the payload authenticated, so the sealer wrote
/// the frame: a bug, a payload larger than this process accepts, or a forged data key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The frame would decompress to more than the bound.
    #[error("decompressed payload would exceed {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The bytes are not a valid zstd frame.
    #[error("compressed payload is not a valid zstd frame")]
    Invalid,
}

/// Compresses `input` with zstd at `level` into `out` (appended). Returns false, leaving `out`
/// as it was, when the frame would not be smaller than the input (or zstd failed): the caller
/// then stores the input as it is.
pub fn compress(input: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    match zstd::bulk::compress(input, level) {
        Ok(frame) if frame.len() < input.len() => {
            out.extend_from_slice(&frame);
            true
        }
        _ => false,
    }
}

/// Decompresses one zstd frame of at most `limit` bytes. A frame that records a larger content
/// size is refused before any output buffer is allocated; one that records none gets a buffer
/// of `limit` bytes at most, and zstd stops when it is full.
pub fn decompress(frame: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(frame)
        && size > limit as u64
    {
        return Err(DecompressError::TooLarge { limit });
    }
    zstd::bulk::decompress(frame, limit).map_err(|error| {
        if error.to_string().contains("too small") {
            DecompressError::TooLarge { limit }
        } else {
            DecompressError::Invalid
        }
    })
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Zstd => "zstd",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON like a workflow's input: an array of records with repeated keys and similar values.
    fn json(len: usize) -> Vec<u8> {
        let mut out = b"[".to_vec();
        let mut i = 0u64;
        while out.len() < len {
            let record = format!(
                r#"{{"orderId":"ord-{i:08}","customer":{{"id":{},"tier":"{}"}},"items":[{{"sku":"SKU-{}","qty":{}}}],"status":"PENDING","createdAt":"2026-12-04T19:{:02}:{:02}Z"}},"#,
                i * 7919 % 100_000,
                ["gold", "silver", "bronze"][(i % 3) as usize],
                i * 31 % 977,
                i % 5 + 1,
                i / 60 % 60,
                i % 60
            );
            out.extend_from_slice(record.as_bytes());
            i += 1;
        }
        out.truncate(len - 1);
        out.push(b']');
        out
    }

    #[test]
    fn json_of_64_kib_compresses_at_least_three_times_at_the_default_level() {
        let input = json(64 << 10);
        let mut out = Vec::new();
        assert!(compress(&input, DEFAULT_LEVEL, &mut out));
        let ratio = input.len() as f64 / out.len() as f64;
        assert!(ratio >= 3.0, "ratio {ratio:.2}");
        assert_eq!(decompress(&out, 64 << 10).unwrap(), input);
    }

    #[test]
    fn incompressible_input_is_left_alone() {
        // xorshift64: no structure zstd can use.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let input: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let mut out = b"keep".to_vec();
        assert!(!compress(&input, DEFAULT_LEVEL, &mut out));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn decompression_stops_at_the_bound() {
        // 64 MiB of zeros in a frame of a few KiB: refused from its recorded size, before any
        // buffer is allocated.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        assert_eq!(
            decompress(&bomb, 4 << 20),
            Err(DecompressError::TooLarge { limit: 4 << 20 })
        );
        // The same frame without its content size (a streaming encoder that was not told the
        // length): zstd stops when the bounded buffer is full.
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        }
        let unsized_bomb = encoder.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&unsized_bomb),
            Ok(None)
        ));
        assert_eq!(
            decompress(&unsized_bomb, 4 << 20),
            Err(DecompressError::TooLarge { limit: 4 << 20 })
        );
        assert_eq!(
            decompress(b"not zstd", 4 << 20),
            Err(DecompressError::Invalid)
        );
    }
}
