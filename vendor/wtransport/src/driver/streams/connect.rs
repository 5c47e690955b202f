use tracing::debug;
use wtransport_proto::bytes::BytesWriter;
use wtransport_proto::bytes::IoReadError;
use wtransport_proto::capsule::capsules;
use wtransport_proto::capsule::Capsule;
use wtransport_proto::capsule::{self};
use wtransport_proto::error::ErrorCode;
use wtransport_proto::frame::Frame;
use wtransport_proto::frame::FrameKind;
use wtransport_proto::varint::VarInt;

use super::session::StreamSession;
use super::ProtoReadError;
use crate::driver::DriverError;
use crate::error::ApplicationClose;
use std::future::pending;
use tokio::sync::oneshot;

// zajel-signal patch (vendor/wtransport/PATCHED.md): the capsule's type, private in wtransport-proto.
const CLOSE_WEBTRANSPORT_SESSION: VarInt = VarInt::from_u32(0x2843);
/// The longest reason a CLOSE_WEBTRANSPORT_SESSION capsule may carry, in bytes.
pub const MAX_CLOSE_REASON_LEN: usize = 1024;

// zajel-signal patch (vendor/wtransport/PATCHED.md).
/// A request to close the session from this side; `sent` is told once the capsule is written.
#[derive(Debug)]
pub struct CloseRequest {
    pub error_code: u32,
    pub reason: Box<str>,
    pub sent: oneshot::Sender<()>,
}

pub struct ConnectStream {
    stream: Option<StreamSession>,
    // zajel-signal patch (vendor/wtransport/PATCHED.md).
    closed_here: bool,
}

impl ConnectStream {
    pub fn empty() -> Self {
        Self {
            stream: None,
            closed_here: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stream.is_none()
    }

    pub fn set_stream(&mut self, stream: StreamSession) {
        self.stream = Some(stream);
    }

    // zajel-signal patch (vendor/wtransport/PATCHED.md).
    /// Closes the session from this side: writes a CLOSE_WEBTRANSPORT_SESSION capsule (in a DATA
    /// frame) and then FIN. From then on `run` no longer reads the stream: the peer's answer (its own
    /// capsule or FIN) must not end the driver, which would close the QUIC connection at once, and
    /// Chromium, when the connection closes before it has handled the capsule, reports the session
    /// as lost instead of closed. The peer closes the connection, or the caller does.
    pub async fn close(&mut self, error_code: u32, reason: &str) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let mut reason_len = reason.len().min(MAX_CLOSE_REASON_LEN);
        while !reason.is_char_boundary(reason_len) {
            reason_len -= 1;
        }
        let reason = &reason.as_bytes()[..reason_len];
        let mut capsule = Vec::with_capacity(16 + reason.len());
        let length = VarInt::from_u32(4 + reason_len as u32);
        capsule
            .put_varint(CLOSE_WEBTRANSPORT_SESSION)
            .and_then(|()| capsule.put_varint(length))
            .and_then(|()| capsule.put_bytes(&error_code.to_be_bytes()))
            .and_then(|()| capsule.put_bytes(reason))
            .expect("a Vec grows");
        self.closed_here = true;
        match stream.write_frame(Frame::new_data(capsule.into())).await {
            Ok(()) => stream.finish_without_waiting(),
            Err(error) => debug!("CLOSE_WEBTRANSPORT_SESSION not sent: {error:?}"),
        }
    }

    pub async fn run(&mut self) -> DriverError {
        let stream = match self.stream.as_mut() {
            // zajel-signal patch (vendor/wtransport/PATCHED.md): see `close`.
            Some(_) if self.closed_here => pending().await,
            Some(stream) => stream,
            None => pending().await,
        };

        loop {
            return match stream.read_frame().await {
                Ok(frame) => {
                    if !matches!(frame.kind(), FrameKind::Data) {
                        debug!("Skipping non-data frame of kind {:?}", frame.kind());
                        continue;
                    }

                    let capsule = match Capsule::with_frame(&frame) {
                        Some(capsule)
                            if matches!(
                                capsule.kind(),
                                capsule::CapsuleKind::CloseWebTransportSession
                            ) =>
                        {
                            capsule
                        }
                        // Unknown capsule, skip it
                        _ => {
                            debug!(
                                "Unknown capsule of kind {:?} of {}B",
                                frame.kind(),
                                frame.payload().len()
                            );

                            continue;
                        }
                    };

                    let close_session =
                        match capsules::CloseWebTransportSession::with_capsule(&capsule) {
                            Ok(close_session) => close_session,
                            Err(error_code) => return DriverError::Proto(error_code),
                        };

                    // reset right away to avoid receiving additional data which requires resetting with ErrorCode::Message.
                    self.stream
                        .take()
                        .unwrap()
                        .reset(ErrorCode::NoError.to_code());

                    DriverError::ApplicationClosed(ApplicationClose::new(
                        close_session.error_code(),
                        close_session
                            .reason()
                            .as_bytes()
                            .to_vec()
                            .into_boxed_slice(),
                    ))
                }
                Err(ProtoReadError::H3(error_code)) => DriverError::Proto(error_code),
                Err(ProtoReadError::IO(io_error)) => match io_error {
                    // Cleanly terminating a CONNECT stream without a CLOSE_WEBTRANSPORT_SESSION
                    // capsule SHALL be semantically equivalent to terminating it with a
                    // CLOSE_WEBTRANSPORT_SESSION capsule that has an error code of 0 and an empty error string.
                    IoReadError::ImmediateFin => DriverError::ApplicationClosed(
                        ApplicationClose::new(VarInt::from_u32(0), Box::new([])),
                    ),
                    IoReadError::UnexpectedFin | IoReadError::Reset => {
                        DriverError::Proto(ErrorCode::ClosedCriticalStream)
                    }
                    IoReadError::NotConnected => DriverError::NotConnected,
                },
            };
        }
    }
}
