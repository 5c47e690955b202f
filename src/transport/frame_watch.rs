//! Watches the bytes a WebSocket client sends, frame header by frame header (RFC 6455, section 5.2), for
//! two things the WebSocket layer behind it does not tell: the kind of the latest data message, so that a
//! message refused from its frame header (one over the size limit) can still be answered in its own
//! encoding (text frames carry JSON, binary frames CBOR); and the bytes of the message still arriving,
//! which the WebSocket layer holds until it is whole, counted on the session's buffer account. Only
//! headers are read here; the WebSocket layer parses and checks everything.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::buffers::SessionBuffers;
use crate::protocol::Encoding;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A client stream that remembers the kind of the latest data message whose header went through it, and
/// counts the bytes of the data message still arriving.
#[derive(Debug)]
pub struct FrameWatcher<S> {
    inner: S,
    header: [u8; MAX_HEADER],
    header_len: usize,
    payload_left: u64,
    latest: Option<Encoding>,
    /// Whether the frame whose payload is arriving belongs to a data message, and ends it.
    in_data_frame: bool,
    final_frame: bool,
    /// Bytes of the data message not yet whole, counted on `buffers`.
    unfinished: usize,
    buffers: Option<Arc<SessionBuffers>>,
}

impl<S> FrameWatcher<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            header: [0; MAX_HEADER],
            header_len: 0,
            payload_left: 0,
            latest: None,
            in_data_frame: false,
            final_frame: false,
            unfinished: 0,
            buffers: None,
        }
    }

    /// Counts the bytes of unfinished messages from now on on `buffers`.
    pub fn count_on(&mut self, buffers: Arc<SessionBuffers>) {
        // What arrived before is counted too, so that what is given back matches what was held.
        buffers.hold(self.unfinished);
        self.buffers = Some(buffers);
    }

    /// Bytes of the data message not yet whole.
    pub fn unfinished_bytes(&self) -> usize {
        self.unfinished
    }

    fn hold(&mut self, bytes: usize) {
        self.unfinished += bytes;
        if let Some(buffers) = &self.buffers {
            buffers.hold(bytes);
        }
    }

    /// The message is whole: the WebSocket layer hands it over and no longer holds it.
    fn message_done(&mut self) {
        if let Some(buffers) = &self.buffers {
            buffers.release(self.unfinished);
        }
        self.unfinished = 0;
    }

    /// The encoding of the latest data message the client started, if any.
    pub fn latest_message_encoding(&self) -> Option<Encoding> {
        self.latest
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skipped = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= skipped as u64;
                bytes = &bytes[skipped..];
                if self.in_data_frame {
                    self.hold(skipped);
                    if self.payload_left == 0 && self.final_frame {
                        self.message_done();
                    }
                }
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if let Some(payload_len) = self.complete_header() {
                let opcode = self.header[0] & 0x0f;
                match opcode {
                    OPCODE_TEXT => self.latest = Some(Encoding::Json),
                    OPCODE_BINARY => self.latest = Some(Encoding::Cbor),
                    // Continuations keep their message's kind; control frames carry none.
                    _ => {}
                }
                self.in_data_frame =
                    matches!(opcode, OPCODE_CONTINUATION | OPCODE_TEXT | OPCODE_BINARY);
                self.final_frame = self.header[0] & 0x80 != 0;
                self.header_len = 0;
                self.payload_left = payload_len;
                if payload_len == 0 && self.in_data_frame && self.final_frame {
                    self.message_done();
                }
            }
        }
    }

    /// The payload length, once the header read so far is complete.
    fn complete_header(&self) -> Option<u64> {
        if self.header_len < 2 {
            return None;
        }
        let mask_len = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        let (length_len, short_len) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            len => (0, Some(u64::from(len))),
        };
        if self.header_len < 2 + length_len + mask_len {
            return None;
        }
        Some(short_len.unwrap_or_else(|| {
            self.header[2..2 + length_len]
                .iter()
                .fold(0u64, |len, &byte| (len << 8) | u64::from(byte))
        }))
    }
}

impl<S> Drop for FrameWatcher<S> {
    fn drop(&mut self) {
        self.message_done();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatcher<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let this = &mut *self;
            this.observe(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatcher<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for `opcode` with `len` payload bytes, followed by the payload.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => bytes.push(0x80 | len as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend((len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend((len as u64).to_be_bytes());
            }
        }
        bytes.extend([1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(0xaa, len));
        bytes
    }

    fn tracker() -> FrameWatcher<()> {
        FrameWatcher::new(())
    }

    #[test]
    fn the_bytes_of_an_unfinished_message_are_counted_until_it_is_whole() {
        let budget = crate::buffers::BufferBudget::new(usize::MAX);
        let buffers = budget.open_account(1);
        let mut watcher = tracker();
        watcher.count_on(buffers.clone());
        let first = frame(false, OPCODE_TEXT, 1000);
        watcher.observe(&first[..500]);
        assert_eq!(
            buffers.held(),
            500 - 8,
            "the payload so far, not the header"
        );
        watcher.observe(&first[500..]);
        watcher.observe(&frame(true, 0x9, 4)); // a ping between fragments holds nothing
        assert_eq!(buffers.held(), 1000);
        let last = frame(true, OPCODE_CONTINUATION, 300);
        watcher.observe(&last[..100]);
        assert_eq!(watcher.unfinished_bytes(), 1000 + 100 - 8);
        watcher.observe(&last[100..]);
        assert_eq!(
            buffers.held(),
            0,
            "whole, it is the WebSocket layer's to hand over"
        );
        watcher.observe(&frame(false, OPCODE_BINARY, 50));
        assert_eq!(buffers.held(), 50);
        drop(watcher);
        assert_eq!(buffers.held(), 0, "given back when the connection goes");
    }

    #[test]
    fn data_frames_of_every_length_form_set_the_kind() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let mut tracker = tracker();
            tracker.observe(&frame(true, OPCODE_BINARY, len));
            assert_eq!(
                tracker.latest_message_encoding(),
                Some(Encoding::Cbor),
                "{len}"
            );
            tracker.observe(&frame(true, OPCODE_TEXT, len));
            assert_eq!(
                tracker.latest_message_encoding(),
                Some(Encoding::Json),
                "{len}"
            );
        }
    }

    #[test]
    fn control_frames_and_continuations_keep_the_kind() {
        let mut tracker = tracker();
        let mut stream = frame(false, OPCODE_BINARY, 10);
        stream.extend(frame(true, 0x9, 4)); // ping between fragments
        stream.extend(frame(true, 0x0, 10)); // continuation
        tracker.observe(&stream);
        assert_eq!(tracker.latest_message_encoding(), Some(Encoding::Cbor));
    }

    #[test]
    fn headers_split_across_reads_are_followed() {
        let mut stream = frame(true, OPCODE_TEXT, 300);
        stream.extend(frame(true, OPCODE_BINARY, 70_000));
        stream.extend(frame(true, OPCODE_TEXT, 1));
        let mut tracker = tracker();
        let mut seen = Vec::new();
        for chunk in stream.chunks(3) {
            tracker.observe(chunk);
            seen.push(tracker.latest_message_encoding());
        }
        seen.dedup();
        assert_eq!(
            seen,
            [
                None,
                Some(Encoding::Json),
                Some(Encoding::Cbor),
                Some(Encoding::Json)
            ]
        );
    }

    #[test]
    fn an_oversized_header_is_seen_before_its_payload() {
        let mut tracker = tracker();
        tracker.observe(&frame(true, OPCODE_TEXT, 3));
        // Only the header of a huge binary frame has arrived.
        tracker.observe(&[0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9]);
        assert_eq!(tracker.latest_message_encoding(), Some(Encoding::Cbor));
    }
}
