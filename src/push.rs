//! The bounded queue of pushes for one session. A push is encoded when it is queued, in the encoding the
//! session's client reads, so that the queue holds exactly the bytes that will be written and is bounded
//! by them: in messages, in bytes per session, and through the session's buffer account in bytes across
//! all sessions. Senders never wait: a session whose client stops reading fills its queue and is then
//! closed as too slow, rather than buffering without limit.
//!
//! The queue is a `VecDeque` that allocates only when something is queued, not a channel: a tokio
//! channel allocates a block of 32 slots when it is made, 1.4 KB kept by every session however idle
//! (docs/performance.md).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::buffers::SessionBuffers;
use crate::metrics::{Metrics, PushDropped};
use crate::protocol::ServerMessage;
use crate::protocol::codec::{self, Encoding};

/// One push, encoded, as it will be written.
#[derive(Debug, PartialEq)]
pub struct Push {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
}

/// Why a forwarded message was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardRefused {
    #[error(transparent)]
    TooLarge(#[from] PushTooLarge),
    /// The receiver's queue has no room now; the receiver is left alone.
    #[error("the receiver's queue is full")]
    QueueFull,
}

/// The message encodes to more bytes than the session's queue may ever hold.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the message would be {size} bytes for its receiver, over its limit of {max}")]
pub struct PushTooLarge {
    pub size: usize,
    pub max: usize,
}

/// A queue with room for this many pushes keeps its room once emptied; a larger one gives it back.
const KEPT_SLOTS: usize = 4;

#[derive(Debug)]
pub struct PushSender {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub struct PushReceiver {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the receiver when a push is queued or the last sender goes.
    queued: Notify,
    capacity: usize,
    /// Whether the client reads CBOR (else JSON); WebSocket clients may change it with each request.
    cbor: AtomicBool,
    max_bytes: usize,
    buffers: Arc<SessionBuffers>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Queue {
    pushes: VecDeque<Push>,
    /// Bytes of the pushes queued.
    bytes: usize,
    senders: usize,
    receiver_gone: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere cannot leave the queue half-changed: every change is one call on it.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next push, its bytes no longer counted as queued.
    fn pop(&self) -> Option<Push> {
        let mut queue = self.queue();
        let push = queue.pushes.pop_front()?;
        queue.bytes -= push.bytes.len();
        if queue.pushes.is_empty() && queue.pushes.capacity() > KEPT_SLOTS {
            queue.pushes = VecDeque::new();
        }
        drop(queue);
        self.buffers.release(push.bytes.len());
        self.metrics.push_sent();
        Some(push)
    }

    fn encoding(&self) -> Encoding {
        if self.cbor.load(Ordering::Relaxed) {
            Encoding::Cbor
        } else {
            Encoding::Json
        }
    }
}

/// A queue of at most `capacity` pushes and `max_bytes` bytes, encoded in `encoding` until the receiver
/// says otherwise, counted on `buffers` and in `metrics`.
pub fn push_queue(
    capacity: usize,
    max_bytes: usize,
    encoding: Encoding,
    buffers: Arc<SessionBuffers>,
    metrics: Arc<Metrics>,
) -> (PushSender, PushReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            senders: 1,
            ..Queue::default()
        }),
        queued: Notify::new(),
        capacity,
        cbor: AtomicBool::new(encoding == Encoding::Cbor),
        max_bytes,
        buffers,
        metrics,
    });
    (
        PushSender {
            shared: shared.clone(),
        },
        PushReceiver { shared },
    )
}

impl Clone for PushSender {
    fn clone(&self) -> Self {
        self.shared.queue().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for PushSender {
    fn drop(&mut self) {
        let mut queue = self.shared.queue();
        queue.senders -= 1;
        if queue.senders == 0 {
            drop(queue);
            self.shared.queued.notify_one();
        }
    }
}

impl PushSender {
    /// Queues one of the server's own pushes without waiting. A full queue (in messages or bytes) tells
    /// the session's transport to close it as too slow. A message that could never fit is refused.
    pub fn push(&self, message: &ServerMessage) -> Result<(), PushTooLarge> {
        match self.enqueue(message) {
            Ok(()) => Ok(()),
            Err(ForwardRefused::TooLarge(err)) => Err(err),
            Err(ForwardRefused::QueueFull) => {
                self.shared.buffers.close();
                Ok(())
            }
        }
    }

    /// Closes the session, as one too slow to read its pushes is.
    pub fn close_session(&self) {
        self.shared.buffers.close();
    }

    /// Queues a message another client sends this session. When the queue has no room, the sender is
    /// refused and this session is left alone: a sender cannot get its receiver closed.
    pub fn forward(&self, message: &ServerMessage) -> Result<(), ForwardRefused> {
        self.enqueue(message)
    }

    fn enqueue(&self, message: &ServerMessage) -> Result<(), ForwardRefused> {
        let queued = self.try_enqueue(message);
        let metrics = &self.shared.metrics;
        match queued {
            Ok(true) => metrics.push_queued(),
            // The session is ending; its pushes have nowhere to go.
            Ok(false) => {}
            Err(ForwardRefused::QueueFull) => metrics.push_dropped(PushDropped::QueueFull),
            Err(ForwardRefused::TooLarge(_)) => metrics.push_dropped(PushDropped::TooLarge),
        }
        queued.map(|_| ())
    }

    /// Queues the message unless refused; `false` if the receiver is gone and nothing was queued.
    fn try_enqueue(&self, message: &ServerMessage) -> Result<bool, ForwardRefused> {
        let shared = &self.shared;
        let encoding = shared.encoding();
        let bytes = codec::encode(message, None, encoding);
        let size = bytes.len();
        if size > shared.max_bytes {
            return Err(PushTooLarge {
                size,
                max: shared.max_bytes,
            }
            .into());
        }
        let mut queue = shared.queue();
        if queue.receiver_gone {
            return Ok(false);
        }
        if queue.pushes.len() >= shared.capacity || queue.bytes + size > shared.max_bytes {
            return Err(ForwardRefused::QueueFull);
        }
        // Counted before it can be received (and given back), so that the counts never go below zero.
        queue.bytes += size;
        shared.buffers.hold(size);
        queue.pushes.push_back(Push { encoding, bytes });
        drop(queue);
        shared.queued.notify_one();
        Ok(true)
    }
}

impl PushReceiver {
    /// The next push, in the order they were queued.
    /// `None` once nothing is queued and every sender is gone.
    pub async fn recv(&mut self) -> Option<Push> {
        loop {
            if let Some(push) = self.shared.pop() {
                return Some(push);
            }
            if self.shared.queue().senders == 0 {
                return None;
            }
            // A push queued since the check above left a permit: this returns at once.
            self.shared.queued.notified().await;
        }
    }

    /// The next push if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Push> {
        self.shared.pop()
    }

    /// Pushes queued from now on are encoded in `encoding`.
    pub fn follow_encoding(&self, encoding: Encoding) {
        self.shared
            .cbor
            .store(encoding == Encoding::Cbor, Ordering::Relaxed);
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        // What is still queued goes with the session.
        let bytes = {
            let mut queue = self.shared.queue();
            queue.receiver_gone = true;
            queue.pushes = VecDeque::new();
            std::mem::take(&mut queue.bytes)
        };
        self.shared.buffers.release(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::BufferBudget;
    use crate::protocol::message::Forwarded;
    use std::time::Duration;

    fn queue(capacity: usize, max_bytes: usize) -> (PushSender, PushReceiver, Arc<SessionBuffers>) {
        let buffers = BufferBudget::new(usize::MAX).open_account(1);
        let (sender, receiver) = push_queue(
            capacity,
            max_bytes,
            Encoding::Json,
            buffers.clone(),
            Arc::default(),
        );
        (sender, receiver, buffers)
    }

    fn offer(chars: usize) -> ServerMessage {
        ServerMessage::Forwarded(Forwarded {
            kind: "offer",
            from: crate::protocol::Name::try_from("AAAAAA").unwrap(),
            payload: serde_json::Value::String("x".repeat(chars)),
        })
    }

    #[tokio::test]
    async fn pushes_are_counted_by_their_encoded_size() {
        let (sender, mut receiver, buffers) = queue(100, 64 * 1024);
        sender.push(&offer(40 * 1024)).unwrap();
        let held = buffers.held();
        assert!((40 * 1024..41 * 1024).contains(&held), "{held}");
        sender.push(&offer(40 * 1024)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), buffers.must_close())
            .await
            .expect("over its bytes, the session is told to close");
        let push = receiver.recv().await.unwrap();
        assert_eq!(push.encoding, Encoding::Json);
        assert_eq!(
            push.bytes,
            codec::encode(&offer(40 * 1024), None, Encoding::Json)
        );
        assert_eq!(buffers.held(), 0);
    }

    #[test]
    fn a_push_that_could_never_fit_is_refused_and_the_session_untouched() {
        let (sender, mut receiver, buffers) = queue(100, 64 * 1024);
        let refused = sender.push(&offer(70 * 1024)).unwrap_err();
        assert!(refused.size > 70 * 1024 && refused.max == 64 * 1024);
        assert_eq!(buffers.held(), 0);
        assert!(receiver.try_recv().is_none());
        assert!(!buffers.closing(), "nothing to close for");
    }

    #[test]
    fn a_forwarded_message_without_room_is_refused_and_the_receiver_left_alone() {
        let (sender, mut receiver, buffers) = queue(100, 64 * 1024);
        sender.forward(&offer(40 * 1024)).unwrap();
        assert_eq!(
            sender.forward(&offer(40 * 1024)),
            Err(ForwardRefused::QueueFull)
        );
        assert!(
            !buffers.closing(),
            "the receiver is not closed for what others send"
        );
        assert!(receiver.try_recv().is_some());
        sender
            .forward(&offer(40 * 1024))
            .expect("room again once read");
    }

    #[tokio::test]
    async fn pushes_arrive_in_order_in_the_encoding_the_client_reads() {
        let (sender, mut receiver, buffers) = queue(2, 1 << 20);
        sender.push(&ServerMessage::Pong).unwrap();
        receiver.follow_encoding(Encoding::Cbor);
        sender
            .push(&ServerMessage::HeartbeatAck { timestamp: 1 })
            .unwrap();
        sender
            .push(&ServerMessage::HeartbeatAck { timestamp: 2 })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), buffers.must_close())
            .await
            .expect("a third push overflows a queue of two");
        assert_eq!(receiver.recv().await.unwrap().bytes, br#"{"type":"pong"}"#);
        let second = receiver.recv().await.unwrap();
        assert_eq!(second.encoding, Encoding::Cbor);
        assert_eq!(
            second.bytes,
            codec::encode(
                &ServerMessage::HeartbeatAck { timestamp: 1 },
                None,
                Encoding::Cbor
            )
        );
    }

    #[tokio::test]
    async fn the_receiver_waits_for_pushes_and_ends_after_the_last_sender() {
        let (sender, mut receiver, _buffers) = queue(10, 1 << 20);
        let waiting = tokio::spawn(async move {
            let first = receiver.recv().await;
            (receiver, first)
        });
        tokio::task::yield_now().await;
        sender.push(&ServerMessage::Pong).unwrap();
        let (mut receiver, first) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the push, its sender still there")
            .unwrap();
        assert_eq!(first.unwrap().bytes, br#"{"type":"pong"}"#);

        let second_sender = sender.clone();
        drop(sender);
        second_sender
            .push(&ServerMessage::HeartbeatAck { timestamp: 1 })
            .unwrap();
        assert!(receiver.recv().await.is_some(), "queued by the clone");
        let waiting = tokio::spawn(async move { receiver.recv().await });
        tokio::task::yield_now().await;
        drop(second_sender);
        let end = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when the last sender goes")
            .unwrap();
        assert!(end.is_none(), "nothing more can come");
    }

    #[test]
    fn what_is_queued_is_given_back_when_the_receiver_goes() {
        let (sender, receiver, buffers) = queue(10, 1 << 20);
        sender.push(&offer(1000)).unwrap();
        assert!(buffers.held() > 1000);
        drop(receiver);
        assert_eq!(buffers.held(), 0);
        sender.push(&offer(1000)).unwrap();
        assert_eq!(
            buffers.held(),
            0,
            "nothing is kept for a session that is gone"
        );
    }
}
