//! Requests whose `:authority` is not a valid URI authority are served, as grpc-go serves them.
//!
//! etcd 3.4's clients dial the client URLs of `MemberList` as they are, so `etcdctl endpoint
//! status --cluster` (and `health`, `hashkv`) sends `:authority: http://127.0.0.1:2379`, scheme
//! included. etcd's server ignores the authority; the `h2` crate under tonic refuses the
//! request with `RST_STREAM(PROTOCOL_ERROR)` before t4 sees it, and has no setting to accept
//! it. [`AuthorityRepair`] reads the client's HTTP/2 frames on their way to `h2` and, in a
//! HEADERS frame whose `:authority` field is invalid, replaces each character outside
//! `[A-Za-z0-9.-]` with `-` (`http---127.0.0.1-2379`): a valid authority of the same length,
//! so that the HPACK dynamic table both ends keep stays the same size. t4 never reads the
//! authority, so nothing else changes. Every other byte passes through untouched.
//!
//! Only the first fragment of a header block is looked at (pseudo-header fields come first),
//! and only a literal `:authority` field; one the client sends by reference to an earlier,
//! repaired field is already valid in `h2`'s copy of the table. gRPC clients send one
//! authority for every request of a connection, so a connection whose first request needs no
//! repair is not looked at any further and costs nothing more.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes in an HTTP/2 frame header.
const FRAME_HEADER_LEN: usize = 9;

/// The HEADERS frame type.
const HEADERS: u8 = 0x1;

/// HEADERS flags: padding, and stream priority fields before the header block.
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The largest frame the server accepts (HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`, which
/// tonic's server keeps): a repaired frame must still fit.
const MAX_FRAME_LEN: usize = 16_384;

/// The `:authority` entry of HPACK's static table.
const AUTHORITY_INDEX: usize = 1;

/// How many bytes of the inner connection one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// Where the client's byte stream is.
#[derive(Debug)]
enum State {
    /// Within the connection preface, this many bytes into it.
    Preface(usize),
    /// At a frame header (collecting it into `held` if it came in pieces).
    Header,
    /// Passing this many bytes of a frame's payload through.
    Payload(usize),
    /// Collecting a whole HEADERS frame (header included) of this many bytes into `held`.
    Headers(usize),
    /// Not HTTP/2 as expected: everything passes through.
    Off,
}

/// Rewrites invalid `:authority` fields in a client's HTTP/2 byte stream (module docs). Pure:
/// bytes in, bytes out.
#[derive(Debug)]
pub struct Repairer {
    state: State,
    /// A frame header or HEADERS frame being collected.
    held: Vec<u8>,
    /// Whether a field was repaired on this connection: the client may send it literally
    /// again once its HPACK encoder has evicted it, so every request is looked at from then
    /// on. A connection whose first request needs nothing is left alone after it.
    repaired: bool,
}

impl Default for Repairer {
    fn default() -> Self {
        Repairer {
            state: State::Preface(0),
            held: Vec::new(),
            repaired: false,
        }
    }
}

impl Repairer {
    /// Whether bytes are held back: [`Repairer::feed`] must see the next ones.
    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The state after a whole HEADERS frame: the next frame header, or nothing more to look
    /// at on a connection that needed no repair.
    fn after_headers(&self) -> State {
        if self.repaired {
            State::Header
        } else {
            State::Off
        }
    }

    /// Passes the longest prefix of `input` that needs no change and no holding back: returns
    /// its length, the state having moved past it. It stops at a frame header cut short, at a
    /// HEADERS frame cut short, and at one to repair; [`Repairer::feed`] takes it from there.
    /// Only when nothing is held.
    pub fn pass(&mut self, input: &[u8]) -> usize {
        debug_assert!(!self.holding());
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            match self.state {
                State::Off => return input.len(),
                State::Preface(seen) => {
                    let n = rest.len().min(PREFACE.len() - seen);
                    self.state = if rest[..n] != PREFACE[seen..seen + n] {
                        State::Off
                    } else if seen + n == PREFACE.len() {
                        State::Header
                    } else {
                        State::Preface(seen + n)
                    };
                    at += n;
                }
                State::Payload(left) => {
                    let n = rest.len().min(left);
                    self.state = if n == left {
                        State::Header
                    } else {
                        State::Payload(left - n)
                    };
                    at += n;
                }
                State::Header => {
                    let Some(header) = rest.get(..FRAME_HEADER_LEN) else {
                        return at;
                    };
                    let len = frame_len(header);
                    if is_checked_headers(header) {
                        let Some(frame) = rest.get(..FRAME_HEADER_LEN + len) else {
                            return at;
                        };
                        if needs_repair(frame).is_some() {
                            return at;
                        }
                        at += frame.len();
                        self.state = self.after_headers();
                    } else {
                        self.state = payload(len);
                        at += FRAME_HEADER_LEN;
                    }
                }
                State::Headers(_) => unreachable!("a HEADERS frame is collected only by feed"),
            }
        }
        at
    }

    /// Consumes `input` and appends what may go on to `out`: the same bytes, except a HEADERS
    /// frame, which is held until it is whole and then appended repaired.
    pub fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while !input.is_empty() {
            if !self.holding() {
                let n = self.pass(input);
                out.extend_from_slice(&input[..n]);
                input = &input[n..];
                if input.is_empty() {
                    return;
                }
            }
            match self.state {
                State::Header => {
                    let n = input.len().min(FRAME_HEADER_LEN - self.held.len());
                    self.held.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.held.len() == FRAME_HEADER_LEN {
                        let len = frame_len(&self.held);
                        if is_checked_headers(&self.held) {
                            self.state = State::Headers(FRAME_HEADER_LEN + len);
                        } else {
                            out.extend_from_slice(&self.held);
                            self.held.clear();
                            self.state = payload(len);
                        }
                    }
                }
                State::Headers(total) => {
                    let n = input.len().min(total - self.held.len());
                    self.held.extend_from_slice(&input[..n]);
                    input = &input[n..];
                }
                // `pass` takes every byte in these states.
                State::Preface(_) | State::Payload(_) | State::Off => {}
            }
            if let State::Headers(total) = self.state
                && self.held.len() == total
            {
                let mut frame = std::mem::take(&mut self.held);
                if let Some(invalid) = needs_repair(&frame) {
                    repair(&mut frame, invalid);
                    self.repaired = true;
                }
                out.extend_from_slice(&frame);
                frame.clear();
                self.held = frame;
                self.state = self.after_headers();
            }
        }
    }

    /// Whatever is held, as it is: the stream ended in the middle of a frame.
    fn flush(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.held);
        self.held.clear();
        self.state = State::Off;
    }
}

/// The state after a frame header whose payload is `len` bytes and not looked into.
fn payload(len: usize) -> State {
    if len == 0 {
        State::Header
    } else {
        State::Payload(len)
    }
}

/// A literal `:authority` field's value that is not a valid authority: the byte range of its
/// string literal in the frame, and the value decoded.
struct Invalid {
    start: usize,
    end: usize,
    value: Vec<u8>,
}

/// In one whole HEADERS frame (header included), the literal `:authority` value to repair, if
/// it is invalid. One that does not decode is left alone: `h2` judges the block itself.
fn needs_repair(frame: &[u8]) -> Option<Invalid> {
    let (start, end) = literal_authority(frame)?;
    let (value, _) = get_string(frame, start)?;
    http::uri::Authority::try_from(value.as_slice())
        .is_err()
        .then_some(Invalid { start, end, value })
}

/// The payload length in a frame header.
fn frame_len(header: &[u8]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// Whether a frame header starts a HEADERS frame this module looks into.
fn is_checked_headers(header: &[u8]) -> bool {
    header[3] == HEADERS && frame_len(header) <= MAX_FRAME_LEN
}

/// In one whole HEADERS frame (header included), the byte range of the first literal
/// `:authority` field's value, if the first header block fragment has one.
fn literal_authority(frame: &[u8]) -> Option<(usize, usize)> {
    let flags = frame[4];
    let mut pos = FRAME_HEADER_LEN;
    let mut end = frame.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*frame.get(pos)?);
        pos += 1;
        end = end.checked_sub(pad)?;
    }
    if flags & PRIORITY != 0 {
        pos += 5;
    }
    let block = frame.get(pos..end)?;
    let (start, value_end) = find_literal_authority(block)?;
    Some((pos + start, pos + value_end))
}

/// Replaces the invalid authority's string literal with a valid authority of the same decoded
/// length, as a plain literal, and fixes the frame's length; leaves the frame as it is if that
/// is not possible.
fn repair(frame: &mut Vec<u8>, Invalid { start, end, value }: Invalid) {
    let repaired: Vec<u8> = value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                b
            } else {
                b'-'
            }
        })
        .collect();
    if http::uri::Authority::try_from(repaired.as_slice()).is_err() {
        return;
    }
    let mut literal = Vec::with_capacity(repaired.len() + 4);
    put_int(&mut literal, 0x00, 7, repaired.len());
    literal.extend_from_slice(&repaired);
    let new_len = frame.len() - FRAME_HEADER_LEN - (end - start) + literal.len();
    if new_len > MAX_FRAME_LEN {
        return;
    }
    frame.splice(start..end, literal);
    frame[0] = (new_len >> 16) as u8;
    frame[1] = (new_len >> 8) as u8;
    frame[2] = new_len as u8;
}

/// In one header block fragment, the first literal `:authority` field: the byte range of its
/// value's string literal. `None` when there is none, or the fragment ends or is malformed
/// before it (`h2` then judges the block itself).
fn find_literal_authority(block: &[u8]) -> Option<(usize, usize)> {
    let mut pos = 0;
    while pos < block.len() {
        let first = block[pos];
        if first & 0x80 != 0 {
            // Indexed field.
            (_, pos) = get_int(block, pos, 7)?;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            (_, pos) = get_int(block, pos, 5)?;
            continue;
        }
        // A literal field: with incremental indexing (6-bit index), or without indexing /
        // never indexed (4-bit index).
        let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
        let (index, next) = get_int(block, pos, prefix)?;
        pos = next;
        let is_authority = if index == 0 {
            let (name, next) = get_string(block, pos)?;
            pos = next;
            name == b":authority"
        } else {
            index == AUTHORITY_INDEX
        };
        let end = skip_string(block, pos)?;
        if is_authority {
            return Some((pos, end));
        }
        pos = end;
    }
    None
}

/// An HPACK integer with an `n`-bit prefix at `pos`: its value and the position after it.
fn get_int(block: &[u8], mut pos: usize, n: u32) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*block.get(pos)?) & max;
    pos += 1;
    if value < max {
        return Some((value, pos));
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(pos)?;
        pos += 1;
        if shift > 28 {
            return None;
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some((value, pos));
        }
    }
}

/// The position after the HPACK string literal at `pos`.
fn skip_string(block: &[u8], pos: usize) -> Option<usize> {
    let (len, start) = get_int(block, pos, 7)?;
    let end = start.checked_add(len)?;
    (end <= block.len()).then_some(end)
}

/// An HPACK string literal at `pos`, decoded: its bytes and the position after it.
fn get_string(block: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    let huffman = *block.get(pos)? & 0x80 != 0;
    let end = skip_string(block, pos)?;
    let (_, start) = get_int(block, pos, 7)?;
    let raw = &block[start..end];
    let decoded = if huffman {
        let mut out = Vec::with_capacity(raw.len() * 8 / 5);
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits).ok()?;
        out
    } else {
        raw.to_vec()
    };
    Some((decoded, end))
}

/// Appends `value` as an HPACK integer with an `n`-bit prefix, the prefix byte's other bits
/// being `flags`.
fn put_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A client connection whose invalid `:authority` fields are repaired on the way in (module
/// docs); writes pass straight through. Bytes that need no change are read straight into the
/// reader's buffer; only a frame cut short or one to repair goes through a buffer of its own.
#[derive(Debug)]
pub struct AuthorityRepair<S> {
    inner: S,
    repairer: Repairer,
    /// Bytes ready for the reader that were not read into its buffer.
    ready: BytesMut,
    /// The inner connection's bytes, while the repairer holds some back.
    scratch: Vec<u8>,
}

impl<S> AuthorityRepair<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> AuthorityRepair<S> {
        AuthorityRepair {
            inner,
            repairer: Repairer::default(),
            ready: BytesMut::new(),
            scratch: Vec::new(),
        }
    }
}

impl<S: Connected> Connected for AuthorityRepair<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ready.is_empty() && !this.repairer.holding() {
            // Straight into the reader's buffer; what must not go on as it is moves out.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let got = buf.filled().len() - before;
            if got == 0 {
                return Poll::Ready(Ok(()));
            }
            let passed = this.repairer.pass(&buf.filled()[before..]);
            if passed < got {
                let rest = buf.filled()[before + passed..].to_vec();
                buf.set_filled(before + passed);
                this.repairer.feed(&rest, &mut this.ready);
            }
            if passed > 0 {
                return Poll::Ready(Ok(()));
            }
        }
        // A held HEADERS frame yields nothing until it is whole: read until there is
        // something to hand over, the connection ends, or it would block.
        while this.ready.is_empty() {
            if this.scratch.is_empty() {
                this.scratch.resize(READ_CHUNK, 0);
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.repairer.flush(&mut this.ready);
                break;
            }
            this.repairer.feed(read.filled(), &mut this.ready);
        }
        let n = this.ready.len().min(buf.remaining());
        buf.put_slice(&this.ready[..n]);
        this.ready.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    const PATH: &str = "/etcdserverpb.Maintenance/Status";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn string(out: &mut Vec<u8>, value: &str, huffman: bool) {
        if huffman {
            let mut coded = Vec::new();
            httlib_huffman::encode(value.as_bytes(), &mut coded).unwrap();
            put_int(out, 0x80, 7, coded.len());
            out.extend_from_slice(&coded);
        } else {
            put_int(out, 0x00, 7, value.len());
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// A request's header block as grpc-go sends the first one on a connection: `:method`
    /// POST and `:scheme` http from the static table, then `:path`, `:authority` and
    /// `content-type` as literals added to the dynamic table.
    fn first_block(authority: &str, huffman: bool) -> Vec<u8> {
        let mut b = vec![0x83, 0x86, 0x44];
        string(&mut b, PATH, huffman);
        b.push(0x41);
        string(&mut b, authority, huffman);
        b.push(0x5f);
        string(&mut b, "application/grpc", huffman);
        b
    }

    /// The next request's block: the same fields, by their dynamic table indexes (newest
    /// first: content-type 62, authority 63, path 64).
    const SECOND_BLOCK: [u8; 5] = [0x83, 0x86, 0xc0, 0xbf, 0xbe];

    /// END_STREAM | END_HEADERS.
    const WHOLE: u8 = 0x5;

    fn client_bytes(blocks: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        for (stream, block) in blocks {
            bytes.extend(frame(HEADERS, WHOLE, *stream, block));
        }
        bytes
    }

    /// What the repair makes of a whole connection's `input` read in pieces of `chunk` bytes,
    /// the connection ending after it.
    fn repaired(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut r = Repairer::default();
        let mut out = BytesMut::new();
        for piece in input.chunks(chunk) {
            r.feed(piece, &mut out);
        }
        r.flush(&mut out);
        out.to_vec()
    }

    /// Serves HTTP/2 with the `h2` crate (what tonic uses) on `io`; reports each request's
    /// path and authority.
    fn serve<S>(io: S) -> tokio::sync::mpsc::UnboundedReceiver<(String, Option<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(io).await.unwrap();
            while let Some(Ok((req, _respond))) = conn.accept().await {
                let _ = tx.send((
                    req.uri().path().to_string(),
                    req.uri().authority().map(|a| a.to_string()),
                ));
            }
        });
        rx
    }

    /// Reads frames the server sends until a RST_STREAM for `stream`, or `None` after a while.
    async fn reset_of(client: &mut DuplexStream, stream: u32) -> Option<u32> {
        let read = async {
            loop {
                let mut header = [0u8; FRAME_HEADER_LEN];
                client.read_exact(&mut header).await.ok()?;
                let len = usize::from(header[0]) << 16
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]);
                let mut payload = vec![0u8; len];
                client.read_exact(&mut payload).await.ok()?;
                let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
                if header[3] == 0x3 && id == stream {
                    return Some(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn h2_alone_refuses_a_scheme_in_the_authority() {
        let (mut client, server) = duplex(1 << 16);
        let _requests = serve(server);
        let bytes = client_bytes(&[(1, first_block("http://127.0.0.1:2379", true))]);
        client.write_all(&bytes).await.unwrap();
        // PROTOCOL_ERROR: why this module exists.
        assert_eq!(reset_of(&mut client, 1).await, Some(0x1));
    }

    #[tokio::test]
    async fn a_scheme_in_the_authority_is_served_and_the_table_stays_in_step() {
        for huffman in [true, false] {
            let (mut client, server) = duplex(1 << 16);
            let mut requests = serve(AuthorityRepair::new(server));
            let bytes = client_bytes(&[
                (1, first_block("http://127.0.0.1:2379", huffman)),
                (3, SECOND_BLOCK.to_vec()),
            ]);
            // In small pieces, so that frames arrive split, or all at once.
            for piece in bytes.chunks(if huffman { 7 } else { bytes.len() }) {
                client.write_all(piece).await.unwrap();
            }
            for _ in 0..2 {
                let (path, authority) = requests.recv().await.unwrap();
                assert_eq!(path, PATH);
                assert_eq!(authority.as_deref(), Some("http---127.0.0.1-2379"));
            }
        }
    }

    #[test]
    fn valid_authorities_and_other_frames_pass_unchanged() {
        let mut bytes = client_bytes(&[
            (1, first_block("127.0.0.1:2379", true)),
            (3, SECOND_BLOCK.to_vec()),
        ]);
        // A DATA frame, and a padded HEADERS frame with a priority, on another stream.
        bytes.extend(frame(0x0, 0x1, 3, b"\0\0\0\0\x05hello"));
        let mut padded = vec![2, 0, 0, 0, 0, 16];
        padded.extend(first_block("localhost", false));
        padded.extend([0, 0]);
        bytes.extend(frame(HEADERS, WHOLE | PADDED | PRIORITY, 5, &padded));
        for chunk in [1, 5, 9, 64, bytes.len()] {
            assert_eq!(repaired(&bytes, chunk), bytes, "in pieces of {chunk}");
        }
    }

    #[test]
    fn a_padded_prioritised_headers_frame_is_repaired_within_its_padding() {
        let mut payload = vec![3, 0, 0, 0, 0, 16];
        payload.extend(first_block("http://db:2379", true));
        payload.extend([0, 0, 0]);
        let input = [
            PREFACE.to_vec(),
            frame(HEADERS, WHOLE | PADDED | PRIORITY, 1, &payload),
        ]
        .concat();
        let out = repaired(&input, 3);
        let f = &out[PREFACE.len()..];
        let len = usize::from(f[0]) << 16 | usize::from(f[1]) << 8 | usize::from(f[2]);
        assert_eq!(
            len,
            f.len() - FRAME_HEADER_LEN,
            "the frame length follows the change"
        );
        let block = &f[FRAME_HEADER_LEN + 6..f.len() - 3];
        let (start, _) = find_literal_authority(block).unwrap();
        let (authority, _) = get_string(block, start).unwrap();
        assert_eq!(authority, b"http---db-2379");
        assert_eq!(&f[f.len() - 3..], &[0, 0, 0], "the padding is kept");
    }

    #[test]
    fn whole_frames_that_need_no_change_pass_without_holding_anything_back() {
        let bytes = client_bytes(&[
            (1, first_block("127.0.0.1:2379", true)),
            (3, SECOND_BLOCK.to_vec()),
        ]);
        let mut r = Repairer::default();
        assert_eq!(r.pass(&bytes), bytes.len());
        // The first HEADERS frame cut short stops the pass at its start.
        let first_end = bytes.len() - FRAME_HEADER_LEN - SECOND_BLOCK.len();
        let headers_start = PREFACE.len() + FRAME_HEADER_LEN;
        let mut r = Repairer::default();
        assert_eq!(r.pass(&bytes[..first_end - 1]), headers_start);
        // So does one to repair.
        let bad = client_bytes(&[(1, first_block("http://x:1", true))]);
        let mut r = Repairer::default();
        assert_eq!(r.pass(&bad), headers_start);
    }

    /// The `:authority` values of the literal fields in a client stream's whole HEADERS
    /// frames, in order, each `None` if its string does not decode, and the index of the first
    /// HEADERS frame's among them (`None` if that frame has none).
    fn literal_authorities(stream: &[u8]) -> (Vec<Option<String>>, Option<usize>) {
        let mut found = Vec::new();
        let mut first = None;
        let mut seen_headers = false;
        let mut at = PREFACE.len();
        while let Some(header) = stream.get(at..at + FRAME_HEADER_LEN) {
            let Some(f) = stream.get(at..at + FRAME_HEADER_LEN + frame_len(header)) else {
                break;
            };
            if f[3] == HEADERS {
                if let Some((start, _)) = literal_authority(f) {
                    if !seen_headers {
                        first = Some(found.len());
                    }
                    let value = get_string(f, start).map(|(v, _)| v);
                    found.push(value.map(|v| String::from_utf8_lossy(&v).into_owned()));
                }
                seen_headers = true;
            }
            at += f.len();
        }
        (found, first)
    }

    #[test]
    fn after_a_repair_every_request_is_looked_at() {
        let bytes = client_bytes(&[
            (1, first_block("http://a:1", true)),
            (3, SECOND_BLOCK.to_vec()),
            (5, first_block("http://a:1", false)),
        ]);
        for chunk in [1, 10, bytes.len()] {
            let (found, first) = literal_authorities(&repaired(&bytes, chunk));
            assert_eq!(
                found,
                [Some("http---a-1".into()), Some("http---a-1".into())]
            );
            assert_eq!(first, Some(0));
        }
    }

    #[test]
    fn a_connection_whose_first_request_needs_nothing_is_left_alone() {
        let bytes = client_bytes(&[
            (1, first_block("a:1", true)),
            (3, first_block("http://a:1", true)),
        ]);
        assert_eq!(repaired(&bytes, 5), bytes);
        assert_eq!(Repairer::default().pass(&bytes), bytes.len());
    }

    #[test]
    fn a_stream_that_is_not_http2_passes_unchanged() {
        let bytes = b"GET / HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(repaired(&bytes, 4), bytes);
    }

    /// A client stream of arbitrary frames: HEADERS frames holding arbitrary blocks (some
    /// with an `:authority` literal, valid or not), other frames with arbitrary payloads.
    fn any_stream() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let authority = prop_oneof![
            Just("127.0.0.1:2379"),
            Just("http://127.0.0.1:2379"),
            Just("/var/run/t4.sock"),
            Just(""),
        ];
        let block = prop_oneof![
            (authority, any::<bool>()).prop_map(|(a, h)| first_block(a, h)),
            Just(SECOND_BLOCK.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        let frame = prop_oneof![
            (block, any::<u8>(), 1u32..9).prop_map(|(b, flags, id)| frame(HEADERS, flags, id, &b)),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(kind, p)| frame(kind, 0, 1, &p)),
        ];
        proptest::collection::vec(frame, 0..6).prop_map(|frames| {
            let mut bytes = PREFACE.to_vec();
            frames.into_iter().for_each(|f| bytes.extend(f));
            bytes
        })
    }

    proptest::proptest! {
        /// Whatever a client sends, the repair does not panic, gives the same bytes however
        /// they are cut into reads, and changes nothing on a connection whose first HEADERS
        /// frame needs nothing.
        #[test]
        fn any_input_is_handled_the_same_in_any_pieces(
            bytes in any_stream(),
            chunk in 1usize..64,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30),
        ) {
            let mut input = bytes;
            input.extend(tail);
            let whole = repaired(&input, input.len().max(1));
            proptest::prop_assert_eq!(&repaired(&input, chunk), &whole);
            // The first HEADERS frame needs nothing: no literal authority, one h2 would not
            // decode either, or a valid one.
            let (found, first) = literal_authorities(&input);
            let needs_nothing = first.and_then(|i| found[i].as_ref()).is_none_or(|a| {
                http::uri::Authority::try_from(a.as_str()).is_ok()
            });
            if needs_nothing {
                proptest::prop_assert_eq!(&whole, &input);
            }
        }

        /// Read through the connection wrapper, in whatever pieces the peer writes and the
        /// reader asks for, the bytes are the repair's.
        #[test]
        fn the_connection_reads_what_the_repair_gives(
            bytes in any_stream(),
            write_chunk in 1usize..64,
            read_len in 1usize..64,
        ) {
            let expected = repaired(&bytes, bytes.len());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = runtime.block_on(async {
                let (mut client, server) = duplex(64);
                let writer = async move {
                    for piece in bytes.chunks(write_chunk) {
                        client.write_all(piece).await.unwrap();
                    }
                };
                let reader = async move {
                    let mut conn = AuthorityRepair::new(server);
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; read_len];
                    loop {
                        let n = conn.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return got;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                };
                tokio::join!(writer, reader).1
            });
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn hpack_integers_round_trip() {
        for (n, value) in [
            (7, 0),
            (7, 126),
            (7, 127),
            (7, 128),
            (5, 31),
            (4, 1000),
            (6, 70_000),
        ] {
            let mut out = Vec::new();
            put_int(&mut out, 0, n, value);
            assert_eq!(
                get_int(&out, 0, n),
                Some((value, out.len())),
                "{n}-bit {value}"
            );
        }
    }
}
