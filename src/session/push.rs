//! The bounded queue of pushes for one session. Senders never wait: a session whose client stops reading
//! fills its queue and is then closed as too slow, rather than buffering without limit.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::protocol::ServerMessage;

#[derive(Clone, Debug)]
pub struct PushSender {
    queue: mpsc::Sender<ServerMessage>,
    overflowed: Arc<Notify>,
}

#[derive(Debug)]
pub struct PushReceiver {
    queue: mpsc::Receiver<ServerMessage>,
    overflowed: Arc<Notify>,
}

pub fn push_queue(capacity: usize) -> (PushSender, PushReceiver) {
    let (sender, receiver) = mpsc::channel(capacity);
    let overflowed = Arc::new(Notify::new());
    (
        PushSender {
            queue: sender,
            overflowed: overflowed.clone(),
        },
        PushReceiver {
            queue: receiver,
            overflowed,
        },
    )
}

impl PushSender {
    /// Queues a push without waiting. A full queue signals the session's transport to close it.
    pub fn push(&self, message: ServerMessage) {
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.overflowed.notify_one(),
            // The session is ending; its pushes have nowhere to go.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl PushReceiver {
    /// The next push, in the order they were queued.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        self.queue.recv().await
    }

    /// The next push if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ServerMessage> {
        self.queue.try_recv().ok()
    }

    /// Completes once the queue has overflowed: the transport must then close the session.
    pub fn overflow_signal(&self) -> Arc<Notify> {
        self.overflowed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushes_arrive_in_order_and_overflow_is_signalled() {
        let (sender, mut receiver) = push_queue(2);
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
