//! Which live session owns which name. Pairing codes and relay peer ids share this one namespace: a name
//! owned by a session, as either, cannot be bound by another, and pushes for a name go to its owner.

use std::collections::HashMap;

use super::Recipient;
use crate::peer::SessionId;
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::push::PushSender;

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

/// The name is held by another live session.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken;

#[derive(Debug, Default)]
pub struct NameOwners {
    holders: HashMap<Name, Holder>,
}

impl NameOwners {
    /// Binds `name` to `session` in `role`; binding a name the session already holds is a no-op.
    pub fn bind(&mut self, name: &Name, session: &Recipient, role: Role) -> Result<(), Taken> {
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
        match role {
            Role::PairingCode => holder.as_code = true,
            Role::RelayId => holder.as_relay_id = true,
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
        match role {
            Role::PairingCode => {
                holder.as_code = false;
                holder.code_key = None;
            }
            Role::RelayId => holder.as_relay_id = false,
        }
        if !holder.as_code && !holder.as_relay_id {
            self.holders.remove(name);
        }
    }

    /// Whether a session other than `session` holds `name`.
    pub fn is_held_by_another(&self, name: &Name, session: SessionId) -> bool {
        self.holders
            .get(name)
            .is_some_and(|holder| holder.session != session)
    }

    /// Queues a push for whichever live session holds `name`. Returns false when none does.
    pub fn push(&self, name: &str, message: ServerMessage) -> bool {
        match self.holders.get(name) {
            Some(holder) => {
                holder.pushes.push(message);
                true
            }
            None => false,
        }
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
                holder.pushes.push(message);
                true
            }
            _ => false,
        }
    }

    /// Names held by live sessions.
    pub fn len(&self) -> usize {
        self.holders.len()
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
        let (pushes, receiver) = push_queue(4, 1 << 20);
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
            .bind(&name("ABC234"), &session_1, Role::PairingCode)
            .unwrap();
        assert_eq!(
            owners.bind(&name("ABC234"), &session_2, Role::RelayId),
            Err(Taken)
        );
        owners
            .bind(&name("ABC234"), &session_1, Role::RelayId)
            .unwrap();
        owners.release("ABC234", 1, Role::PairingCode);
        assert_eq!(
            owners.bind(&name("ABC234"), &session_2, Role::PairingCode),
            Err(Taken),
            "still held as a relay id"
        );
        owners.release("ABC234", 2, Role::RelayId);
        owners.release("ABC234", 1, Role::RelayId);
        assert_eq!(owners.len(), 0);
        owners
            .bind(&name("ABC234"), &session_2, Role::PairingCode)
            .unwrap();
    }

    #[tokio::test]
    async fn pushes_reach_the_holder() {
        let mut owners = NameOwners::default();
        let (session, mut receiver) = recipient(1);
        owners.bind(&name("peer"), &session, Role::RelayId).unwrap();
        assert!(owners.push("peer", ServerMessage::Pong));
        assert!(!owners.push("nobody", ServerMessage::Pong));
        assert_eq!(receiver.recv().await, Some(ServerMessage::Pong));
    }
}
