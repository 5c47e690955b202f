//! The bounded queue of pushes for one session, bounded in messages and in bytes. Senders never wait: a
//! session whose client stops reading fills its queue and is then closed as too slow, rather than
//! buffering without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::protocol::ServerMessage;

#[derive(Clone, Debug)]
pub struct PushSender {
    queue: mpsc::Sender<(ServerMessage, usize)>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub struct PushReceiver {
    queue: mpsc::Receiver<(ServerMessage, usize)>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    overflowed: Arc<Notify>,
    /// Approximate memory held by queued pushes.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
}

pub fn push_queue(capacity: usize, max_bytes: usize) -> (PushSender, PushReceiver) {
    let (sender, receiver) = mpsc::channel(capacity);
    let shared = Arc::new(Shared {
        overflowed: Arc::new(Notify::new()),
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
    });
    (
        PushSender {
            queue: sender,
            shared: shared.clone(),
        },
        PushReceiver {
            queue: receiver,
            shared,
        },
    )
}

impl PushSender {
    /// Queues a push without waiting. A full queue (in messages or bytes) signals the session's
    /// transport to close it.
    pub fn push(&self, message: ServerMessage) {
        let size = message.approximate_size();
        let before = self.shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.shared.max_bytes {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.shared.overflowed.notify_one();
            return;
        }
        match self.queue.try_send((message, size)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.shared.overflowed.notify_one();
            }
            // The session is ending; its pushes have nowhere to go.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            }
        }
    }
}

impl PushReceiver {
    /// The next push, in the order they were queued.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        let (message, size) = self.queue.recv().await?;
        self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(message)
    }

    /// The next push if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ServerMessage> {
        let (message, size) = self.queue.try_recv().ok()?;
        self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(message)
    }

    /// Completes once the queue has overflowed: the transport must then close the session.
    pub fn overflow_signal(&self) -> Arc<Notify> {
        self.shared.overflowed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_pushes_overflow_the_byte_bound() {
        use crate::protocol::message::Forwarded;
        let (sender, mut receiver) = push_queue(100, 64 * 1024);
        let overflowed = receiver.overflow_signal();
        let big = ServerMessage::Forwarded(Forwarded {
            kind: "offer",
            from: crate::protocol::Name::try_from("AAAAAA").unwrap(),
            payload: serde_json::Value::String("x".repeat(40 * 1024)),
        });
        sender.push(big.clone());
        sender.push(big.clone());
        tokio::time::timeout(std::time::Duration::from_secs(5), overflowed.notified())
            .await
            .expect("overflow signalled by size");
        assert_eq!(receiver.recv().await, Some(big.clone()));
        sender.push(big);
        assert!(receiver.try_recv().is_some(), "room again once read");
    }

    #[tokio::test]
    async fn pushes_arrive_in_order_and_overflow_is_signalled() {
        let (sender, mut receiver) = push_queue(2, 1 << 20);
        let overflowed = receiver.overflow_signal();
        sender.push(ServerMessage::Pong);
        sender.push(ServerMessage::HeartbeatAck { timestamp: 1 });
        sender.push(ServerMessage::HeartbeatAck { timestamp: 2 });
        // notify_one stores a permit, so the signal is seen even though nobody was waiting.
        tokio::time::timeout(std::time::Duration::from_secs(5), overflowed.notified())
            .await
            .expect("overflow signalled");
        assert_eq!(receiver.recv().await, Some(ServerMessage::Pong));
        assert_eq!(
            receiver.recv().await,
            Some(ServerMessage::HeartbeatAck { timestamp: 1 })
        );
    }
}
