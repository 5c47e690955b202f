//! The device-link tunnel (PROTOCOL 2.8): once a phone accepts a web client's link, the signals either
//! sends without a target go to the other, for as long as both sessions live.
//!
//! A tunnel is kept by the node of each of its ends, for that end's session, and names the other end's
//! session, not only its pairing code: when either session ends, the tunnel ends, even if the same code
//! is taken again (by the same client reconnecting, or by anyone once its reservation is over).

use std::collections::HashMap;

use super::cluster::names::SessionAt;
use super::{Registries, SharedState, StateFailed, Undelivered};
use crate::peer::SessionId;
use crate::protocol::{Name, ServerMessage};
use crate::push::PushSender;

/// The other end of a session's tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEnd {
    /// The pairing code the other end's session holds.
    pub code: Name,
    pub session: SessionId,
    /// In cluster mode, the other end's node when it is not this one.
    pub node: Option<String>,
}

impl TunnelEnd {
    /// The end at `at`, as seen from `this_node`.
    pub fn at(code: Name, at: SessionAt, this_node: &str) -> Self {
        Self {
            code,
            session: at.session,
            node: (at.node != this_node).then_some(at.node),
        }
    }
}

/// Each session's tunnel, by its session.
#[derive(Debug, Default)]
pub struct Tunnels {
    by_session: HashMap<SessionId, TunnelEnd>,
}

impl Tunnels {
    /// Sets `session`'s tunnel to `end`; a newer link replaces the older.
    pub fn open(&mut self, session: SessionId, end: TunnelEnd) {
        self.by_session.insert(session, end);
    }

    /// Ends `session`'s side of its tunnel (the other side ends when it next finds this session gone).
    pub fn close(&mut self, session: SessionId) {
        self.by_session.remove(&session);
    }

    fn end_of(&self, session: SessionId) -> Option<&TunnelEnd> {
        self.by_session.get(&session)
    }
}

/// Where a signal into a tunnel goes.
enum Route {
    Here(PushSender),
    /// An end on another node, which is `node`.
    There {
        end: TunnelEnd,
        node: String,
    },
}

impl SharedState {
    /// Forwards `message`, which `session` sent without a target, to the other end of its tunnel.
    /// [`Undelivered::NoSuchPeer`]: the session has no live tunnel.
    pub async fn forward_in_tunnel(
        &self,
        session: SessionId,
        message: &ServerMessage,
    ) -> Result<Result<(), Undelivered>, StateFailed> {
        let route = self
            .run(move |registries, _| registries.tunnel_route(session))
            .await?;
        let (end, node) = match route {
            None => return Ok(Err(Undelivered::NoSuchPeer)),
            Some(Route::Here(pushes)) => {
                return Ok(pushes.forward(message).map_err(Undelivered::Refused));
            }
            Some(Route::There { end, node }) => (end, node),
        };
        let cluster = self
            .cluster()
            .expect("tunnels reach other nodes in cluster mode only");
        let at = SessionAt {
            node,
            session: end.session,
        };
        if cluster
            .forward_to_session(end.code.as_str(), &at, message)
            .await?
        {
            return Ok(Ok(()));
        }
        self.tell(move |registries, _| {
            if registries.tunnels.end_of(session) == Some(&end) {
                registries.tunnels.close(session);
            }
        });
        Ok(Err(Undelivered::NoSuchPeer))
    }
}

impl Registries {
    /// Where `session`'s tunnel leads, if it is live as far as this node knows: an end on this node is
    /// checked here, another node's end only where it is.
    fn tunnel_route(&mut self, session: SessionId) -> Option<Route> {
        let end = self.tunnels.end_of(session)?;
        if let Some(node) = end.node.clone() {
            return Some(Route::There {
                end: end.clone(),
                node,
            });
        }
        match self
            .owners
            .pushes_of_code_held_by(end.code.as_str(), end.session)
        {
            Some(pushes) => Some(Route::Here(pushes.clone())),
            None => {
                self.tunnels.close(session);
                None
            }
        }
    }
}
