//! The rendezvous family: `register_rendezvous`, its reply, and the `rendezvous_match` pushes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, fields_of, invalid};
use super::{Failure, Session, check_acts_as};
use crate::config::SessionConfig;
use crate::protocol::{Name, ServerMessage};
use crate::registry::rendezvous::Refused;
use crate::state::{RendezvousRefused, RendezvousRegistration};

/// A registration of this many entries costs one more message token.
const ENTRIES_PER_MESSAGE: usize = 100;

#[derive(Debug, PartialEq)]
pub struct RegisterRendezvous(RendezvousRegistration);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RendezvousFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    #[serde(alias = "daily_points")]
    daily_points: Option<Vec<Name>>,
    #[serde(alias = "hourly_tokens")]
    hourly_tokens: Option<Vec<Name>>,
    #[serde(alias = "dead_drop")]
    dead_drop: Option<String>,
    #[serde(alias = "dead_drops")]
    dead_drops: Option<HashMap<String, String>>,
    #[serde(alias = "relay_id")]
    relay_id: Option<String>,
}

impl RegisterRendezvous {
    pub(super) fn parse(
        fields: Map<String, Value>,
        config: &SessionConfig,
    ) -> Result<Self, RequestError> {
        let fields: RendezvousFields = fields_of(fields)?;
        let daily_points = fields.daily_points.unwrap_or_default();
        let hourly_tokens = fields.hourly_tokens.unwrap_or_default();
        for (field, len) in [
            ("dailyPoints", daily_points.len()),
            ("hourlyTokens", hourly_tokens.len()),
        ] {
            if len > config.max_list_entries {
                return Err(invalid(format!(
                    "{field}: at most {} entries",
                    config.max_list_entries
                )));
            }
        }
        let check_payload =
            |field: &str, payload: String| -> Result<Option<Arc<str>>, RequestError> {
                if payload.chars().count() > config.max_dead_drop_chars {
                    return Err(invalid(format!(
                        "{field}: at most {} characters",
                        config.max_dead_drop_chars
                    )));
                }
                // An empty payload leaves no dead drop.
                Ok((!payload.is_empty()).then(|| payload.into()))
            };
        let legacy_drop = fields
            .dead_drop
            .map(|payload| check_payload("deadDrop", payload))
            .transpose()?
            .flatten();
        let mut per_point = HashMap::new();
        for (point, payload) in fields.dead_drops.unwrap_or_default() {
            let field = format!("deadDrops.{point}");
            let payload = check_payload(&field, payload)?;
            per_point.insert(point, payload);
        }
        let daily_points = daily_points
            .into_iter()
            .map(|point| {
                let drop = match per_point.get(point.as_str()) {
                    Some(payload) => payload.clone(),
                    None => legacy_drop.clone(),
                };
                (point, drop)
            })
            .collect();
        let relay_id = match fields.relay_id {
            None => Arc::from(""),
            Some(text) if text.is_empty() => Arc::from(""),
            Some(text) => {
                let name =
                    Name::try_from(text).map_err(|err| invalid(format!("relayId: {err}")))?;
                Arc::from(name.as_str())
            }
        };
        Ok(Self(RendezvousRegistration {
            peer_id: fields.peer_id,
            relay_id,
            daily_points,
            hourly_tokens,
        }))
    }
}

impl Session {
    pub(super) async fn register_rendezvous(
        &self,
        RegisterRendezvous(registration): RegisterRendezvous,
    ) -> Result<ServerMessage, Failure> {
        // A registration costs what it stores: message tokens of the session, and entries of its
        // address's budget, which all its sessions share.
        let entries = registration.daily_points.len() + registration.hourly_tokens.len();
        let extra_tokens = (entries / ENTRIES_PER_MESSAGE) as f64;
        if !self.take_tokens(extra_tokens) || !self.admission.spend_rendezvous_entries(entries) {
            return Err(Failure::RateLimited);
        }
        let mut names = self.names().await;
        let bound = names.is_bound();
        if bound {
            check_acts_as(&names, registration.peer_id.as_str())?;
        }
        let peer_id = registration.peer_id.clone();
        let found = self
            .state()
            .register_rendezvous(&self.recipient, !bound, registration)
            .await?
            .map_err(|refused| match refused {
                RendezvousRefused::NoRoom(Refused::RegistryFull) => Failure::RegistryFull,
                RendezvousRefused::NoRoom(Refused::AddressFull) => Failure::AddressFull,
                RendezvousRefused::PeerIdTaken => Failure::PeerIdTaken,
            })?;
        if !bound {
            names.relay_id = Some(peer_id);
        }
        Ok(ServerMessage::RendezvousResult {
            live_matches: found.live_matches,
            dead_drops: found.dead_drops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RegisterRendezvous;
    use crate::session::request::Request;
    use crate::session::request::tests::{invalid_message, parse};

    #[test]
    fn rendezvous_per_point_drops_win_over_the_legacy_drop() {
        let Request::RegisterRendezvous(RegisterRendezvous(request)) = parse(
            r#"{"type":"register_rendezvous","peer_id":"me","daily_points":["a","b","c"],
                "dead_drop":"legacy","dead_drops":{"b":"for-b","zz":"ignored","c":""}}"#,
        )
        .unwrap() else {
            panic!("not a rendezvous request")
        };
        let drops: Vec<_> = request
            .daily_points
            .iter()
            .map(|(point, drop)| (point.as_str(), drop.as_deref()))
            .collect();
        assert_eq!(
            drops,
            [("a", Some("legacy")), ("b", Some("for-b")), ("c", None)]
        );
        assert_eq!(&*request.relay_id, "");
    }

    #[test]
    fn rendezvous_limits_name_the_field() {
        let points: Vec<String> = (0..1001).map(|i| format!("\"p{i}\"")).collect();
        let message = invalid_message(&format!(
            r#"{{"type":"register_rendezvous","peerId":"me","hourlyTokens":[{}]}}"#,
            points.join(",")
        ));
        assert!(message.starts_with("hourlyTokens"), "{message}");
        let message = invalid_message(&format!(
            r#"{{"type":"register_rendezvous","peerId":"me","dailyPoints":["a"],"deadDrop":"{}"}}"#,
            "x".repeat(4097)
        ));
        assert!(message.starts_with("deadDrop"), "{message}");
        let message = invalid_message(
            r#"{"type":"register_rendezvous","peerId":"me","dailyPoints":["ok","not ok"]}"#,
        );
        assert!(message.starts_with("dailyPoints[1]"), "{message}");
        let message =
            invalid_message(r#"{"type":"register_rendezvous","peerId":"me","relayId":"a b"}"#);
        assert!(message.starts_with("relayId"), "{message}");
    }
}
