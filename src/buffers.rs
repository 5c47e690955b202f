//! One budget for the bytes all sessions buffer: pushes queued for clients that do not read, messages
//! arriving in pieces, request frames being read. Each session's bytes are counted on its account and
//! all accounts add up against one bound; past it, the sessions holding the most are told to close, the
//! heaviest first, until the total is well under the bound again. A session's account gives back what it
//! held when the session goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use crate::peer::SessionId;

/// After closing sessions for being over the budget, the total aimed for, as a fraction of it.
const RELIEVED_NUMERATOR: usize = 3;
const RELIEVED_DENOMINATOR: usize = 4;

#[derive(Debug)]
pub struct BufferBudget {
    max_bytes: usize,
    used: AtomicUsize,
    accounts: Mutex<HashMap<SessionId, Weak<SessionBuffers>>>,
    /// Set while one caller chooses sessions to close, so that a burst of pushes over the budget closes
    /// each session once.
    relieving: AtomicBool,
}

/// What one session holds, and how it is told to close.
#[derive(Debug)]
pub struct SessionBuffers {
    id: SessionId,
    held: AtomicUsize,
    closing: AtomicBool,
    close: Notify,
    budget: Arc<BufferBudget>,
}

impl BufferBudget {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            used: AtomicUsize::new(0),
            accounts: Mutex::new(HashMap::new()),
            relieving: AtomicBool::new(false),
        })
    }

    /// Opens the account of session `id`.
    pub fn open_account(self: &Arc<Self>, id: SessionId) -> Arc<SessionBuffers> {
        let account = Arc::new(SessionBuffers {
            id,
            held: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            budget: self.clone(),
        });
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::downgrade(&account));
        account
    }

    /// Bytes held by all sessions together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Tells the heaviest sessions to close until what is left is under three quarters of the budget.
    /// Their bytes come back as they go.
    fn relieve(&self) {
        if self.relieving.swap(true, Ordering::Acquire) {
            return;
        }
        let accounts: Vec<Arc<SessionBuffers>> = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        // Sessions told to close earlier give their bytes back soon: they count as gone already.
        let (closing, mut heaviest): (Vec<_>, Vec<_>) = accounts
            .into_iter()
            .partition(|account| account.closing.load(Ordering::Relaxed));
        let leaving: usize = closing.iter().map(|account| account.held()).sum();
        heaviest.sort_by_key(|account| std::cmp::Reverse(account.held()));
        let target = self.max_bytes / RELIEVED_DENOMINATOR * RELIEVED_NUMERATOR;
        let mut remaining = self.used().saturating_sub(leaving);
        for account in heaviest {
            if remaining <= target {
                break;
            }
            remaining = remaining.saturating_sub(account.held());
            tracing::warn!(
                session = account.id,
                held = account.held(),
                "closing a session: all sessions together buffer more than the budget"
            );
            account.close();
        }
        self.relieving.store(false, Ordering::Release);
    }
}

impl SessionBuffers {
    /// Counts `bytes` more held by this session.
    pub fn hold(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        let used = self.budget.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.budget.max_bytes {
            self.budget.relieve();
        }
    }

    /// Counts `bytes` held until the returned guard is dropped.
    pub fn hold_while(&self, bytes: usize) -> HeldBytes<'_> {
        self.hold(bytes);
        HeldBytes {
            account: self,
            bytes,
        }
    }

    /// Counts `bytes` given back.
    pub fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the session was told to close.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Tells the session's transport to close it: it holds too much, or its client does not read.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        // A stored permit: the transport sees it even if it is not waiting yet.
        self.close.notify_one();
    }

    /// Completes once the session must close.
    pub async fn must_close(&self) {
        self.close.notified().await;
    }
}

/// Bytes a session holds for as long as this lives.
#[derive(Debug)]
pub struct HeldBytes<'a> {
    account: &'a SessionBuffers,
    bytes: usize,
}

impl HeldBytes<'_> {
    /// Counts `bytes` more for as long as this lives.
    pub fn grow(&mut self, bytes: usize) {
        self.account.hold(bytes);
        self.bytes += bytes;
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.account.release(self.bytes);
    }
}

impl Drop for SessionBuffers {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(*self.held.get_mut(), Ordering::Relaxed);
        self.budget
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sessions_already_closing_count_as_gone() {
        let budget = BufferBudget::new(1000);
        let sessions: Vec<_> = (0..4).map(|id| budget.open_account(id)).collect();
        for session in &sessions {
            session.hold(300);
        }
        // 1200 over 1000: closing one leaves 900, over the 750 aimed for, so a second closes too.
        let closing = sessions.iter().filter(|s| s.closing()).count();
        assert_eq!(closing, 2);
        // More bytes before those two have gone close nobody else while what stays is under the aim.
        sessions[3].hold(100);
        sessions[2].hold(50);
        let still_open: Vec<_> = sessions.iter().filter(|s| !s.closing()).collect();
        assert_eq!(still_open.len(), 2, "{still_open:?}");
    }

    #[tokio::test]
    async fn over_the_budget_the_heaviest_sessions_close_first() {
        let budget = BufferBudget::new(1000);
        let light = budget.open_account(1);
        let heavy = budget.open_account(2);
        let heavier = budget.open_account(3);
        light.hold(100);
        heavy.hold(300);
        heavier.hold(550);
        assert_eq!(budget.used(), 950);
        heavy.hold(200);
        // 1150 over 1000: closing the heaviest (550) leaves 600, under 750.
        tokio::time::timeout(Duration::from_secs(5), heavier.must_close())
            .await
            .expect("the heaviest is told to close");
        assert!(heavy.held() == 500 && !heavy.closing.load(Ordering::Relaxed));
        assert!(!light.closing.load(Ordering::Relaxed));
        drop(heavier);
        assert_eq!(budget.used(), 600, "a closed session's bytes come back");
        heavy.release(500);
        drop((light, heavy));
        assert_eq!(budget.used(), 0);
        assert!(budget.accounts.lock().unwrap().is_empty());
    }
}
