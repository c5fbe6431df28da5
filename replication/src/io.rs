//! Frames over quinn streams.

use crate::protocol::{decode_body, encode_frame, frame_len, Message, LEN_PREFIX};
use crate::ReplError;

/// The most buffer allocated for a frame body before its bytes arrive;
/// beyond it the buffer grows with the bytes received.
const FIRST_ALLOCATION: usize = 64 << 10;

/// Reads one frame of at most `max` bytes (`MAX_CONTROL_FRAME` on a
/// control stream); `Ok(None)` when the peer finished the stream cleanly
/// between frames. The length is checked before anything is allocated, and
/// the body's buffer grows as its bytes arrive: a peer announcing a large
/// frame and sending nothing costs at most [`FIRST_ALLOCATION`].
pub(crate) async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Option<Message>, ReplError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame_len(prefix, max)?;
    let mut body = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ReplError::Connection(format!(
                    "the stream ended inside a frame ({} of {len} bytes)",
                    body.len()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(decode_body(&body)?))
}

/// Writes one frame.
pub(crate) async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), ReplError> {
    send.write_all(&encode_frame(msg)).await?;
    Ok(())
}

/// Application close codes.
pub(crate) mod code {
    /// Orderly shutdown.
    pub const SHUTDOWN: u32 = 0;
    /// The peer sent a malformed or unexpected frame.
    pub const PROTOCOL: u32 = 1;
    /// The follower must reconnect (it left the ring, or the history changed).
    pub const RESYNC: u32 = 2;
    /// The handshake was refused.
    pub const REJECTED: u32 = 3;
    /// The primary serves `max_followers` connections already.
    pub const TOO_MANY_FOLLOWERS: u32 = 4;
    /// The follower cannot take the primary's stream (its limits; the
    /// reason names them): it halts instead of reconnecting.
    pub const INCOMPATIBLE: u32 = 5;
}

/// Reads frames on a task of its own and hands them over a small channel:
/// reading a frame is not cancellation-safe (a frame read half-way inside
/// a `select!` that picks another branch would lose its place), receiving
/// from a channel is. The channel holds at most two frames, so a slow
/// consumer still pushes back on the sender through QUIC flow control.
pub(crate) fn frame_reader(
    mut recv: quinn::RecvStream,
    max: usize,
) -> tokio::sync::mpsc::Receiver<Result<Message, ReplError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut recv, max).await;
            let end = !matches!(frame, Ok(Some(_)));
            let item = match frame {
                Ok(Some(m)) => Ok(m),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
    });
    rx
}

/// Finishes a stream and waits (briefly) until the peer has read it, so a
/// last message (a refusal, a resync reason) is not lost to the connection
/// close that follows.
pub(crate) async fn finish_and_wait(send: &mut quinn::SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send.stopped()).await;
    }
}
