//! Accepts any HTTP/2 `:authority` on the pod-local Unix socket.
//!
//! gRPC clients built on grpc-core (Python's grpcio, C++, Ruby) send the percent-encoded socket
//! path as `:authority` for a `unix:` target (`%2Fvar%2Frun%2Fkmscodec%2Fcodec.sock`). That is not
//! a valid URI authority, and the HTTP/2 server refuses such a stream with `RST_STREAM`
//! `PROTOCOL_ERROR`, so every call from a client with default settings failed. On a Unix socket
//! the authority means nothing (there is one server behind the socket), so this adapter sits
//! between the socket and the HTTP/2 server and replaces an invalid `:authority` with
//! `localhost`.
//!
//! It reads the client's frames (RFC 9113, section 4): after the 24-byte connection preface,
//! every frame passes through unchanged except header blocks (`HEADERS` plus any
//! `CONTINUATION`s), which are decoded with the client's HPACK state (RFC 7541) and written
//! again as literal fields without indexing, so the server's HPACK decoder never depends on a
//! table this adapter would have to mirror. Padding is dropped; priority fields are kept. What
//! the server writes passes through untouched. A stream that is not HTTP/2 passes through
//! unchanged. It must never be used on a TCP listener, where `:authority` is checked by the
//! request pipeline (`Host` checks).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The HTTP/2 connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header's length.
const FRAME_HEADER: usize = 9;
/// Largest frame payload a peer may send (RFC 9113, section 4.2: 2^24 - 1).
const MAX_FRAME: usize = (1 << 24) - 1;
/// Largest header block gathered across `CONTINUATION` frames.
const MAX_BLOCK: usize = 1 << 20;
/// Largest frame payload written to the server: the HTTP/2 default `SETTINGS_MAX_FRAME_SIZE`,
/// which the server always accepts.
const OUT_FRAME: usize = 16_384;
/// The client's HPACK dynamic table may not grow past the server's default
/// `SETTINGS_HEADER_TABLE_SIZE`.
const TABLE_SIZE: usize = 4096;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// What the adapter expects next from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preface,
    Frames,
    /// Not HTTP/2: everything passes through.
    Passthrough,
}

/// A header block being gathered.
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// A Unix socket stream whose client header blocks get a valid `:authority`.
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// Bytes read from the client, not yet handed on.
    input: Vec<u8>,
    /// Bytes ready for the server.
    output: Vec<u8>,
    /// How much of `output` has been handed on.
    handed: usize,
    decoder: fluke_hpack::Decoder<'static>,
    block: Option<Block>,
}

impl<S> std::fmt::Debug for AuthorityFix<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFix")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted Unix socket stream.
    pub fn new(inner: S) -> Self {
        let mut decoder = fluke_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            inner,
            state: State::Preface,
            input: Vec::new(),
            output: Vec::new(),
            handed: 0,
            decoder,
            block: None,
        }
    }

    /// Moves what can be moved from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Passthrough => {
                    self.output.append(&mut self.input);
                    return Ok(());
                }
                State::Preface => {
                    let seen = self.input.len().min(PREFACE.len());
                    if self.input[..seen] != PREFACE[..seen] {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if seen < PREFACE.len() {
                        return Ok(());
                    }
                    self.output.extend(self.input.drain(..PREFACE.len()));
                    self.state = State::Frames;
                }
                State::Frames => {
                    if self.input.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let length = usize::from(self.input[0]) << 16
                        | usize::from(self.input[1]) << 8
                        | usize::from(self.input[2]);
                    if length > MAX_FRAME {
                        return Err(invalid("frame too large"));
                    }
                    if self.input.len() < FRAME_HEADER + length {
                        return Ok(());
                    }
                    let frame: Vec<u8> = self.input.drain(..FRAME_HEADER + length).collect();
                    self.frame(&frame)?;
                }
            }
        }
    }

    /// Handles one whole frame.
    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&frame[5..FRAME_HEADER]);
        let payload = &frame[FRAME_HEADER..];
        match (kind, &mut self.block) {
            (HEADERS, None) => {
                let mut rest = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    let (&length, after) = rest.split_first().ok_or_else(|| invalid("padding"))?;
                    pad = usize::from(length);
                    rest = after;
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    let (fields, after) = rest
                        .split_at_checked(5)
                        .ok_or_else(|| invalid("priority"))?;
                    let mut copy = [0u8; 5];
                    copy.copy_from_slice(fields);
                    priority = Some(copy);
                    rest = after;
                }
                let fragment = rest
                    .get(
                        ..rest
                            .len()
                            .checked_sub(pad)
                            .ok_or_else(|| invalid("padding"))?,
                    )
                    .ok_or_else(|| invalid("padding"))?;
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                });
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                if block.fragment.len() + payload.len() > MAX_BLOCK {
                    return Err(invalid("header block too large"));
                }
                block.fragment.extend_from_slice(payload);
            }
            (_, Some(_)) => return Err(invalid("frame inside a header block")),
            (_, None) => {
                self.output.extend_from_slice(frame);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    /// Decodes the gathered block and writes it again, with a valid `:authority`.
    fn finish_block(&mut self) -> io::Result<()> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                let value: &[u8] = if &*name == b":authority"
                    && http::uri::Authority::try_from(&*value).is_err()
                {
                    b"localhost"
                } else {
                    &value
                };
                // Literal header field without indexing, new name (RFC 7541, section 6.2.2).
                encoded.push(0x00);
                write_string(&name, &mut encoded);
                write_string(value, &mut encoded);
            })
            .map_err(|error| invalid(&format!("HPACK: {error:?}")))?;
        let priority_len = block.priority.map_or(0, |_| 5);
        let mut rest = &encoded[..];
        let mut first = true;
        loop {
            let room = if first {
                OUT_FRAME - priority_len
            } else {
                OUT_FRAME
            };
            let (chunk, after) = rest.split_at(rest.len().min(room));
            rest = after;
            let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
            let (kind, extra) = if first {
                if block.end_stream {
                    flags |= END_STREAM;
                }
                if block.priority.is_some() {
                    flags |= PRIORITY;
                }
                (HEADERS, priority_len)
            } else {
                (CONTINUATION, 0)
            };
            let length = chunk.len() + extra;
            self.output.extend_from_slice(&[
                (length >> 16) as u8,
                (length >> 8) as u8,
                length as u8,
                kind,
                flags,
            ]);
            self.output.extend_from_slice(&block.stream);
            if first && let Some(priority) = block.priority {
                self.output.extend_from_slice(&priority);
            }
            self.output.extend_from_slice(chunk);
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}

/// An HPACK string literal without Huffman coding (RFC 7541, section 5.2).
fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    // The length as an integer with a 7-bit prefix (section 5.1).
    let mut length = bytes.len();
    if length < 127 {
        out.push(length as u8);
    } else {
        out.push(127);
        length -= 127;
        while length >= 128 {
            out.push((length % 128) as u8 | 0x80);
            length /= 128;
        }
        out.push(length as u8);
    }
    out.extend_from_slice(bytes);
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 on the Unix socket: {what}"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.handed < this.output.len() {
                let ready = &this.output[this.handed..];
                let take = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..take]);
                this.handed += take;
                if this.handed == this.output.len() {
                    this.output.clear();
                    this.handed = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 << 10];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        // End of stream: whatever is still gathered was never complete.
                        return Poll::Ready(Ok(()));
                    }
                    if this.input.len() + read.filled().len() > MAX_FRAME + FRAME_HEADER {
                        return Poll::Ready(Err(invalid("frame too large")));
                    }
                    this.input.extend_from_slice(read.filled());
                    this.process()?;
                }
                other => return other,
            }
        }
    }
}

super::timed::forward_async_write!(AuthorityFix);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = payload.len();
        let mut out = vec![
            (length >> 16) as u8,
            (length >> 8) as u8,
            length as u8,
            kind,
            flags,
        ];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A header block as a client encodes it: `:authority` with the socket path, indexed into
    /// the dynamic table, then referenced by index in the next block.
    fn client_blocks() -> (Vec<u8>, Vec<u8>) {
        let mut first = Vec::new();
        // :method POST (static index 3), :scheme http (6), :path (literal, name index 4)
        first.extend_from_slice(&[0x83, 0x86, 0x04]);
        write_string(b"/kmscodec.v1.Codec/Encode", &mut first);
        // :authority, literal with incremental indexing, name index 1.
        first.push(0x41);
        write_string(b"%2Ftmp%2Fcodec.sock", &mut first);
        // The second block reuses the dynamic table entry (index 62).
        let second = vec![0x83, 0x86, 0xbe];
        (first, second)
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        drop(client);
        let mut fixed = AuthorityFix::new(server);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        out
    }

    fn decode_blocks(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        assert_eq!(&bytes[..24], PREFACE);
        let mut rest = &bytes[24..];
        let mut decoder = fluke_hpack::Decoder::new();
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (frame, after) = rest.split_at(FRAME_HEADER + length);
            if frame[3] == HEADERS {
                blocks.push(decoder.decode(&frame[FRAME_HEADER..]).unwrap());
            }
            rest = after;
        }
        blocks
    }

    #[tokio::test]
    async fn an_invalid_authority_becomes_localhost_and_other_frames_pass_unchanged() {
        let (first, second) = client_blocks();
        let settings = frame(0x4, 0, 0, &[]);
        let data = frame(0x0, END_STREAM, 1, b"payload bytes");
        let mut input = PREFACE.to_vec();
        input.extend(&settings);
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        input.extend(&data);
        // The second block arrives split across a CONTINUATION, padded.
        let (a, b) = second.split_at(1);
        let mut padded = vec![3u8];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | END_STREAM, 3, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let out = through(input).await;
        assert!(out.windows(settings.len()).any(|w| w == settings));
        assert!(out.windows(data.len()).any(|w| w == data));
        let blocks = decode_blocks(&out);
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            let authority = block.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(authority.1, b"localhost");
            assert!(block.iter().any(|(n, v)| n == b":method" && v == b"POST"));
        }
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept_and_http1_passes_through() {
        let mut block = vec![0x83, 0x86, 0x84, 0x41];
        write_string(b"localhost:50051", &mut block);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let blocks = decode_blocks(&through(input).await);
        assert!(
            blocks[0]
                .iter()
                .any(|(n, v)| n == b":authority" && v == b"localhost:50051")
        );
        let http1 = b"POST /encode HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(http1.clone()).await, http1);
    }

    #[tokio::test]
    async fn hostile_frames_are_errors_not_panics() {
        for bad in [
            frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 1, 2]),
            frame(HEADERS, END_HEADERS | PRIORITY, 1, &[1, 2]),
            frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            [frame(HEADERS, 0, 1, &[0x83]), frame(0x0, 0, 1, b"x")].concat(),
        ] {
            let mut input = PREFACE.to_vec();
            input.extend(bad);
            let (mut client, server) = tokio::io::duplex(1 << 16);
            client.write_all(&input).await.unwrap();
            drop(client);
            let mut fixed = AuthorityFix::new(server);
            let mut out = Vec::new();
            let error = fixed.read_to_end(&mut out).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        }
    }

    #[test]
    fn long_strings_use_continuation_bytes_for_their_length() {
        let mut out = Vec::new();
        write_string(&[b'a'; 1337], &mut out);
        // 1337 = 127 + 1210; 1210 = 0x4ba -> 0xba, 0x09.
        assert_eq!(&out[..3], &[127, 0xba, 0x09]);
        assert_eq!(out.len(), 3 + 1337);
    }
}
