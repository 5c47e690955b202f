//! Frames on QUIC and WebTransport streams: a 4-byte big-endian length, then that many bytes of one CBOR
//! map.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const LENGTH_BYTES: usize = 4;
/// Room made for a frame's content at a time, as it arrives.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the next frame into `frame`. Returns `false` when the stream ended cleanly between frames.
/// The length is checked against `max_len` before any of the frame's content is read.
pub async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    max_len: usize,
    frame: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    match read_length(stream, max_len).await? {
        None => Ok(false),
        Some(length) => read_body(stream, length, frame).await.map(|()| true),
    }
}

/// Reads a frame's length; `None` when the stream ended cleanly between frames.
pub async fn read_length<R: AsyncRead + Unpin>(
    stream: &mut R,
    max_len: usize,
) -> Result<Option<u32>, FrameError> {
    let mut length = [0u8; LENGTH_BYTES];
    let mut filled = 0;
    while filled < LENGTH_BYTES {
        match stream.read(&mut length[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let length = u32::from_be_bytes(length);
    if length as usize > max_len {
        return Err(FrameError::TooLarge(u64::from(length)));
    }
    Ok(Some(length))
}

/// Reads a frame's `length` bytes of content into `frame`.
pub async fn read_body<R: AsyncRead + Unpin>(
    stream: &mut R,
    length: u32,
    frame: &mut Vec<u8>,
) -> Result<(), FrameError> {
    read_body_counted(stream, length, frame, |_| {}).await
}

/// Reads a frame's `length` bytes of content into `frame`, telling `on_read` how many bytes each read
/// added. The buffer grows as bytes arrive rather than trusting the announced length: a client that
/// announces a large frame and sends nothing then holds no memory for it.
pub async fn read_body_counted<R: AsyncRead + Unpin>(
    stream: &mut R,
    length: u32,
    frame: &mut Vec<u8>,
    mut on_read: impl FnMut(usize),
) -> Result<(), FrameError> {
    frame.clear();
    let mut content = (&mut *stream).take(u64::from(length));
    loop {
        frame.reserve(READ_CHUNK.min(length as usize - frame.len()));
        let read = content.read_buf(frame).await?;
        if read == 0 {
            break;
        }
        on_read(read);
    }
    if frame.len() < length as usize {
        return Err(FrameError::Truncated);
    }
    Ok(())
}

/// Writes one frame: its length, then `payload`, in one write.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    payload: &[u8],
) -> std::io::Result<()> {
    let length = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut bytes = Vec::with_capacity(LENGTH_BYTES + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(payload);
    stream.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, b"one").await.unwrap();
        write_frame(&mut bytes, b"").await.unwrap();
        write_frame(&mut bytes, b"three").await.unwrap();
        let mut reader = &bytes[..];
        let mut frame = Vec::new();
        for expected in [&b"one"[..], b"", b"three"] {
            assert!(read_frame(&mut reader, 100, &mut frame).await.unwrap());
            assert_eq!(frame, expected);
        }
        assert!(!read_frame(&mut reader, 100, &mut frame).await.unwrap());
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut frame = Vec::new();
        let huge = 1_000_000u32.to_be_bytes();
        let result = read_frame(&mut &huge[..], 1000, &mut frame).await;
        assert!(matches!(result, Err(FrameError::TooLarge(1_000_000))));
        let cut_length = [0u8, 0];
        let result = read_frame(&mut &cut_length[..], 1000, &mut frame).await;
        assert!(matches!(result, Err(FrameError::Truncated)));
        let cut_body = [0u8, 0, 0, 5, b'a'];
        let result = read_frame(&mut &cut_body[..], 1000, &mut frame).await;
        assert!(matches!(result, Err(FrameError::Truncated)));
    }
}
