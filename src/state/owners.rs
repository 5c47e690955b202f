//! Which live session owns which name. Pairing codes and relay peer ids share this one namespace: a name
//! owned by a session, as either, cannot be bound by another, and pushes for a name go to its owner.
//!
//! A pairing code whose session ended stays reserved for a while for the public key it was registered
//! with: the same client, reconnecting, gets its code back, and nobody else can take it in between (and
//! so receive what its contacts send to it).

use std::collections::HashMap;

use super::Recipient;
use crate::clock::Millis;
use crate::peer::SessionId;
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::push::PushSender;
use crate::registry::deadlines::{DeadlineKey, Deadlines};

/// How a session holds a name. One session may hold the same name both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    PairingCode,
    RelayId,
}

#[derive(Debug)]
struct Holder {
    session: SessionId,
    pushes: PushSender,
    as_code: bool,
    as_relay_id: bool,
    /// The public key registered with the pairing code.
    code_key: Option<PairingKey>,
}

/// The name is held by another live session, or reserved for another key.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken;

/// A released pairing code kept for the key it was registered with.
#[derive(Debug)]
struct Reservation {
    key: PairingKey,
    until: Millis,
    deadline: DeadlineKey,
}

#[derive(Debug, Default)]
pub struct NameOwners {
    holders: HashMap<Name, Holder>,
    /// How long a released pairing code stays reserved.
    reserve_for: Millis,
    reserved: HashMap<Name, Reservation>,
    reservations_ending: Deadlines<Name>,
    /// Names held as pairing codes, and as relay ids (a session holds at most one of each).
    codes: usize,
    relay_ids: usize,
}

impl NameOwners {
    pub fn new(reserve_for: Millis) -> Self {
        Self {
            reserve_for,
            ..Self::default()
        }
    }

    /// Fails when `name` is held by a session other than `session`, or reserved at `now` for a key
    /// other than `key` (a session binding it without a key never passes a reservation).
    pub fn check_free(
        &self,
        name: &Name,
        session: SessionId,
        key: Option<&PairingKey>,
        now: Millis,
    ) -> Result<(), Taken> {
        if self
            .holders
            .get(name)
            .is_some_and(|holder| holder.session != session)
        {
            return Err(Taken);
        }
        match self.reserved.get(name) {
            Some(reservation) if now < reservation.until && Some(&reservation.key) != key => {
                Err(Taken)
            }
            _ => Ok(()),
        }
    }

    /// Binds `name` to `session` in `role` (a pairing code with its `key`), if
    /// [`check_free`](Self::check_free) allows; binding a name the session already holds is a no-op. A
    /// reservation it passes is used up.
    pub fn bind(
        &mut self,
        name: &Name,
        session: &Recipient,
        role: Role,
        key: Option<&PairingKey>,
        now: Millis,
    ) -> Result<(), Taken> {
        self.check_free(name, session.id, key, now)?;
        if let Some(reservation) = self.reserved.remove(name) {
            self.reservations_ending.remove(reservation.deadline);
        }
        let holder = self.holders.entry(name.clone()).or_insert_with(|| Holder {
            session: session.id,
            pushes: session.pushes.clone(),
            as_code: false,
            as_relay_id: false,
            code_key: None,
        });
        if holder.session != session.id {
            return Err(Taken);
        }
        let (held, count) = match role {
            Role::PairingCode => (&mut holder.as_code, &mut self.codes),
            Role::RelayId => (&mut holder.as_relay_id, &mut self.relay_ids),
        };
        if !*held {
            *held = true;
            *count += 1;
        }
        Ok(())
    }

    /// Frees `name` in `role` if `session` holds it so; the name is free once neither role remains.
    pub fn release(&mut self, name: &str, session: SessionId, role: Role) {
        let Some(holder) = self.holders.get_mut(name) else {
            return;
        };
        if holder.session != session {
            return;
        }
        if role == Role::PairingCode {
            holder.code_key = None;
        }
        let (held, count) = match role {
            Role::PairingCode => (&mut holder.as_code, &mut self.codes),
            Role::RelayId => (&mut holder.as_relay_id, &mut self.relay_ids),
        };
        if *held {
            *held = false;
            *count -= 1;
        }
        if !holder.as_code && !holder.as_relay_id {
            self.holders.remove(name);
        }
    }

    /// Keeps a released pairing code for `key` from `now` on, for the reservation time.
    pub fn reserve(&mut self, code: &Name, key: PairingKey, now: Millis) {
        if self.reserve_for == 0 || self.holders.contains_key(code) {
            return;
        }
        let until = now.saturating_add(self.reserve_for);
        if let Some(earlier) = self.reserved.remove(code) {
            self.reservations_ending.remove(earlier.deadline);
        }
        let deadline = self.reservations_ending.insert(until, code.clone());
        self.reserved.insert(
            code.clone(),
            Reservation {
                key,
                until,
                deadline,
            },
        );
    }

    /// Forgets the reservations that ended by `now`.
    pub fn end_reservations(&mut self, now: Millis) {
        while let Some(code) = self.reservations_ending.pop_due(now) {
            self.reserved.remove(&code);
        }
    }

    /// Queues a push for whichever live session holds `name`. Returns false when none does.
    pub fn push(&self, name: &str, message: ServerMessage) -> bool {
        match self.holders.get(name) {
            Some(holder) => {
                // The server's own pushes are small; none is refused for its size.
                let _ = holder.pushes.push(&message);
                true
            }
            None => false,
        }
    }

    /// Closes the session holding `name`.
    pub fn close_holder(&self, name: &str) {
        if let Some(holder) = self.holders.get(name) {
            holder.pushes.close_session();
        }
    }

    /// Where pushes for the session holding `code` as its pairing code go.
    pub fn pushes_of_code(&self, code: &str) -> Option<&PushSender> {
        self.holders
            .get(code)
            .filter(|holder| holder.as_code)
            .map(|holder| &holder.pushes)
    }

    /// Where pushes for `session` go, if it holds `code` as its pairing code.
    pub fn pushes_of_code_held_by(&self, code: &str, session: SessionId) -> Option<&PushSender> {
        self.holders
            .get(code)
            .filter(|holder| holder.as_code && holder.session == session)
            .map(|holder| &holder.pushes)
    }

    /// The live session holding `code` as its pairing code.
    pub fn code_holder(&self, code: &str) -> Option<SessionId> {
        self.holders
            .get(code)
            .filter(|holder| holder.as_code)
            .map(|holder| holder.session)
    }

    /// Records the public key of a pairing code that `session` holds.
    pub fn set_code_key(&mut self, code: &str, session: SessionId, key: PairingKey) {
        if let Some(holder) = self.holders.get_mut(code)
            && holder.session == session
            && holder.as_code
        {
            holder.code_key = Some(key);
        }
    }

    /// The public key of a pairing code held by a live session.
    pub fn code_key(&self, code: &str) -> Option<&PairingKey> {
        self.holders
            .get(code)
            .filter(|holder| holder.as_code)
            .and_then(|holder| holder.code_key.as_ref())
    }

    /// Queues a push for the live session holding `code` as its pairing code. Returns false when none
    /// does (a relay id of the same spelling is not a pairing code).
    pub fn push_to_code(&self, code: &str, message: ServerMessage) -> bool {
        match self.holders.get(code) {
            Some(holder) if holder.as_code => {
                let _ = holder.pushes.push(&message);
                true
            }
            _ => false,
        }
    }

    /// Names held by live sessions.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Names held as pairing codes: one per session holding one.
    pub fn codes(&self) -> usize {
        self.codes
    }

    /// Names held as relay ids: one per session holding one.
    pub fn relay_ids(&self) -> usize {
        self.relay_ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::push_queue;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    fn recipient(id: SessionId) -> (Recipient, crate::push::PushReceiver) {
        let buffers = crate::buffers::BufferBudget::new(usize::MAX).open_account(id);
        let (pushes, receiver) = push_queue(
            4,
            1 << 20,
            crate::protocol::codec::Encoding::Json,
            buffers,
            std::sync::Arc::default(),
        );
        let address = crate::peer::AddressGroup::from(std::net::IpAddr::from([127, 0, 0, 1]));
        (
            Recipient {
                id,
                address,
                pushes,
            },
            receiver,
        )
    }

    #[test]
    fn a_name_belongs_to_one_session_in_either_role() {
        let mut owners = NameOwners::default();
        let (session_1, _rx1) = recipient(1);
        let (session_2, _rx2) = recipient(2);
        owners
            .bind(&name("ABC234"), &session_1, Role::PairingCode, None, 0)
            .unwrap();
        assert_eq!(
            owners.bind(&name("ABC234"), &session_2, Role::RelayId, None, 0),
            Err(Taken)
        );
        owners
            .bind(&name("ABC234"), &session_1, Role::RelayId, None, 0)
            .unwrap();
        // Binding again counts nothing twice.
        owners
            .bind(&name("ABC234"), &session_1, Role::RelayId, None, 0)
            .unwrap();
        assert_eq!((owners.codes(), owners.relay_ids()), (1, 1));
        owners.release("ABC234", 1, Role::PairingCode);
        assert_eq!((owners.codes(), owners.relay_ids()), (0, 1));
        assert_eq!(
            owners.bind(&name("ABC234"), &session_2, Role::PairingCode, None, 0),
            Err(Taken),
            "still held as a relay id"
        );
        owners.release("ABC234", 2, Role::RelayId);
        assert_eq!(owners.relay_ids(), 1, "not released by another session");
        owners.release("ABC234", 1, Role::RelayId);
        owners.release("ABC234", 1, Role::RelayId);
        assert_eq!(
            (owners.len(), owners.codes(), owners.relay_ids()),
            (0, 0, 0)
        );
        owners
            .bind(&name("ABC234"), &session_2, Role::PairingCode, None, 0)
            .unwrap();
    }

    #[tokio::test]
    async fn pushes_reach_the_holder() {
        let mut owners = NameOwners::default();
        let (session, mut receiver) = recipient(1);
        owners
            .bind(&name("peer"), &session, Role::RelayId, None, 0)
            .unwrap();
        assert!(owners.push("peer", ServerMessage::Pong));
        assert!(!owners.push("nobody", ServerMessage::Pong));
        assert_eq!(
            receiver.recv().await.map(|push| push.bytes),
            Some(br#"{"type":"pong"}"#.to_vec())
        );
    }

    fn key(byte: u8) -> PairingKey {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        PairingKey::try_from(text).unwrap()
    }

    #[test]
    fn a_released_code_is_kept_for_its_key_for_a_while() {
        let mut owners = NameOwners::new(120_000);
        let (phone, _rx1) = recipient(1);
        let (thief, _rx2) = recipient(2);
        let (phone_again, _rx3) = recipient(3);
        let code = name("PHONE2");
        owners
            .bind(&code, &phone, Role::PairingCode, Some(&key(1)), 0)
            .unwrap();
        owners.release("PHONE2", 1, Role::PairingCode);
        owners.reserve(&code, key(1), 1_000);
        assert_eq!(
            owners.bind(&code, &thief, Role::PairingCode, Some(&key(2)), 2_000),
            Err(Taken),
            "another key"
        );
        assert_eq!(
            owners.bind(&code, &thief, Role::RelayId, None, 2_000),
            Err(Taken),
            "no key at all"
        );
        owners
            .bind(
                &code,
                &phone_again,
                Role::PairingCode,
                Some(&key(1)),
                60_000,
            )
            .expect("the same key gets its code back");
        owners.release("PHONE2", 3, Role::PairingCode);
        owners.reserve(&code, key(1), 60_000);
        owners.end_reservations(180_000);
        owners
            .bind(&code, &thief, Role::PairingCode, Some(&key(2)), 180_000)
            .expect("free once the reservation ended");
        assert!(owners.reserved.is_empty() && owners.reservations_ending.is_empty());
    }
}
