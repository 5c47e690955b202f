//! Pending requests between pairing codes, with their timers: pairing requests (one per requester and
//! target) and device-link requests (one per phone: a web client asking to attach to it).
//!
//! A request waits for the target's answer for a fixed time; for pairing, a warning is due some time
//! before the end.
//! Every timer (warning, expiry, link expiry) lives in one index ordered by due time, driven by the clock like the rest of the
//! registries: whoever calls `due_events` with the current time gets what fell due, and nothing is
//! scheduled per request.

use std::collections::{HashMap, HashSet};

use super::deadlines::{DeadlineKey, Deadlines};
use crate::clock::Millis;
use crate::config::PairingConfig;
use crate::protocol::Name;
use crate::protocol::names::PairingKey;

/// Why a request was refused. The protocol answers all of these with one generic text, so that pairing
/// codes cannot be enumerated.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestRefused {
    ToSelf,
    TargetFull,
}

/// A web client's request to attach to a phone, waiting for the phone's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingLink {
    pub web_client: Name,
    pub web_client_key: PairingKey,
    pub device_name: Option<String>,
}

/// The phone already has a pending link request from another web client.
#[derive(Debug, PartialEq, Eq)]
pub struct LinkBusy;

/// Something that happened to pending requests, for the server to tell the sessions concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum PairingEvent {
    /// The request from `requester` to `target` ends soon: both are warned.
    Expiring { requester: Name, target: Name },
    /// The request from `requester` to `target` ended unanswered: the requester is told.
    TimedOut { requester: Name, target: Name },
    /// The link request from `web_client` to `phone` ended unanswered (its time ran out, or one side's
    /// session ended): both are told.
    LinkTimedOut { phone: Name, web_client: Name },
}

/// What falls due for a request, and between whom.
#[derive(Debug)]
enum Timer {
    Warning { requester: Name, target: Name },
    Expiry { requester: Name, target: Name },
    LinkExpiry { web_client: Name, phone: Name },
}

/// A pairing request's two timers.
#[derive(Debug)]
struct Pending {
    warning: DeadlineKey,
    expiry: DeadlineKey,
}

#[derive(Debug)]
pub struct PairingRegistry {
    /// From a request to its timeout.
    expiry: Millis,
    /// How long before the timeout both sides of a pairing request are warned.
    warning: Millis,
    max_pending_per_target: usize,
    /// Link requests by phone, with their expiry timer.
    links: HashMap<Name, (PendingLink, DeadlineKey)>,
    /// The phones each web client has asked to attach to.
    links_by_web_client: HashMap<Name, HashSet<Name>>,
    pending: HashMap<(Name, Name), Pending>,
    by_target: HashMap<Name, HashSet<Name>>,
    by_requester: HashMap<Name, HashSet<Name>>,
    timers: Deadlines<Timer>,
}

impl PairingRegistry {
    pub fn new(config: &PairingConfig) -> Self {
        Self {
            expiry: config.expiry(),
            warning: config.warning(),
            max_pending_per_target: config.max_pending_pairs,
            links: HashMap::new(),
            links_by_web_client: HashMap::new(),
            pending: HashMap::new(),
            by_target: HashMap::new(),
            by_requester: HashMap::new(),
            timers: Deadlines::default(),
        }
    }

    /// How long a request waits for its answer.
    pub fn expiry(&self) -> Millis {
        self.expiry
    }

    /// How long before its timeout a pairing request's sides are warned.
    pub fn warning(&self) -> Millis {
        self.warning
    }

    /// Records a request from `requester` to `target`, replacing an earlier one between the same two.
    pub fn request(
        &mut self,
        now: Millis,
        requester: &Name,
        target: &Name,
    ) -> Result<(), RequestRefused> {
        if requester == target {
            return Err(RequestRefused::ToSelf);
        }
        let key = (requester.clone(), target.clone());
        let replacing = self.pending.contains_key(&key);
        let waiting = self.by_target.get(target).map_or(0, HashSet::len);
        if !replacing && waiting >= self.max_pending_per_target {
            return Err(RequestRefused::TargetFull);
        }
        if replacing {
            self.remove(requester, target);
        }
        let expires = now.saturating_add(self.expiry);
        let warning = self.timers.insert(
            expires.saturating_sub(self.warning),
            Timer::Warning {
                requester: requester.clone(),
                target: target.clone(),
            },
        );
        let expiry = self.timers.insert(
            expires,
            Timer::Expiry {
                requester: requester.clone(),
                target: target.clone(),
            },
        );
        self.pending.insert(key, Pending { warning, expiry });
        self.by_target
            .entry(target.clone())
            .or_default()
            .insert(requester.clone());
        self.by_requester
            .entry(requester.clone())
            .or_default()
            .insert(target.clone());
        Ok(())
    }

    /// Takes the pending request from `requester` to `target`, if there is one (the target answered
    /// it).
    pub fn take(&mut self, requester: &Name, target: &Name) -> bool {
        self.remove(requester, target)
    }

    /// Records a web client's request to attach to `phone`. A phone has one pending link request at a
    /// time: the same web client asking again restarts it, another web client is refused until it is
    /// answered or expires (so that the phone's answer always goes to the request it was shown).
    pub fn request_link(
        &mut self,
        now: Millis,
        phone: &Name,
        link: PendingLink,
    ) -> Result<(), LinkBusy> {
        match self.links.get(phone) {
            Some((pending, _)) if pending.web_client != link.web_client => return Err(LinkBusy),
            Some(_) => {
                self.take_link(phone);
            }
            None => {}
        }
        let timer = self.timers.insert(
            now.saturating_add(self.expiry),
            Timer::LinkExpiry {
                web_client: link.web_client.clone(),
                phone: phone.clone(),
            },
        );
        self.links_by_web_client
            .entry(link.web_client.clone())
            .or_default()
            .insert(phone.clone());
        self.links.insert(phone.clone(), (link, timer));
        Ok(())
    }

    /// Takes the pending link request to `phone`, if any (the phone answered it).
    pub fn take_link(&mut self, phone: &Name) -> Option<PendingLink> {
        let (link, timer) = self.links.remove(phone)?;
        self.timers.remove(timer);
        remove_from(&mut self.links_by_web_client, &link.web_client, phone);
        Some(link)
    }

    /// Removes every request from or to `code` (its session ended, or it changed its code), with the
    /// events that tell the other sides: requesters waiting for `code` time out at once, and so do
    /// link requests either way. (A target whose requester left learns it when it answers.)
    pub fn remove_code(&mut self, code: &Name) -> Vec<PairingEvent> {
        for target in self.by_requester.get(code).cloned().unwrap_or_default() {
            self.remove(code, &target);
        }
        let mut events = Vec::new();
        for requester in self.by_target.get(code).cloned().unwrap_or_default() {
            if self.remove(&requester, code) {
                events.push(PairingEvent::TimedOut {
                    requester,
                    target: code.clone(),
                });
            }
        }
        events.extend(self.remove_link(code));
        for phone in self
            .links_by_web_client
            .get(code)
            .cloned()
            .unwrap_or_default()
        {
            events.extend(self.remove_link(&phone));
        }
        events
    }

    fn remove_link(&mut self, phone: &Name) -> Option<PairingEvent> {
        let link = self.take_link(phone)?;
        Some(PairingEvent::LinkTimedOut {
            phone: phone.clone(),
            web_client: link.web_client,
        })
    }

    /// What fell due by `now`, in time order: warnings, and timeouts (whose requests are gone).
    pub fn due_events(&mut self, now: Millis) -> Vec<PairingEvent> {
        let mut events = Vec::new();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::LinkExpiry { web_client, phone } => {
                    if let Some((link, _)) = self.links.remove(&phone) {
                        remove_from(&mut self.links_by_web_client, &link.web_client, &phone);
                    }
                    events.push(PairingEvent::LinkTimedOut { phone, web_client });
                }
                Timer::Warning { requester, target } => {
                    events.push(PairingEvent::Expiring { requester, target })
                }
                Timer::Expiry { requester, target } => {
                    self.remove(&requester, &target);
                    events.push(PairingEvent::TimedOut { requester, target });
                }
            }
        }
        events
    }

    /// Pending requests, pairing and link.
    pub fn len(&self) -> usize {
        self.pending.len() + self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&mut self, requester: &Name, target: &Name) -> bool {
        let Some(pending) = self.pending.remove(&(requester.clone(), target.clone())) else {
            return false;
        };
        self.timers.remove(pending.warning);
        self.timers.remove(pending.expiry);
        remove_from(&mut self.by_target, target, requester);
        remove_from(&mut self.by_requester, requester, target);
        true
    }
}

fn remove_from(index: &mut HashMap<Name, HashSet<Name>>, key: &Name, member: &Name) {
    if let Some(members) = index.get_mut(key) {
        members.remove(member);
        if members.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    fn link(web_client: &str) -> PendingLink {
        PendingLink {
            web_client: name(web_client),
            web_client_key: PairingKey::try_from(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
            )
            .unwrap(),
            device_name: Some("Firefox".into()),
        }
    }

    #[test]
    fn a_link_request_times_out_after_its_expiry() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request_link(0, &name("PHONE3"), link("WEBWEB"))
            .unwrap();
        assert!(
            registry.due_events(119_999).is_empty(),
            "links have no warning"
        );
        assert_eq!(
            registry.due_events(120_000),
            [PairingEvent::LinkTimedOut {
                phone: name("PHONE3"),
                web_client: name("WEBWEB")
            }]
        );
        assert!(registry.is_empty());
        assert!(registry.links_by_web_client.is_empty());
    }

    #[test]
    fn a_phone_takes_one_link_request_at_a_time() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request_link(0, &name("PHONE3"), link("WEBONE"))
            .unwrap();
        assert_eq!(
            registry.request_link(10, &name("PHONE3"), link("WEBTWO")),
            Err(LinkBusy),
            "another web client cannot take the place of the one the phone was shown"
        );
        registry
            .request_link(60_000, &name("PHONE3"), link("WEBONE"))
            .unwrap();
        assert_eq!(registry.timers.len(), 1);
        assert!(
            registry.due_events(120_000).is_empty(),
            "the retry restarted the timer"
        );
        assert_eq!(registry.take_link(&name("PHONE3")), Some(link("WEBONE")));
        assert!(registry.timers.is_empty());
    }

    #[test]
    fn either_side_ending_ends_the_link_request() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request_link(0, &name("PHONE3"), link("WEBWEB"))
            .unwrap();
        let events = registry.remove_code(&name("WEBWEB"));
        assert_eq!(events.len(), 1);
        registry
            .request_link(0, &name("PHONE3"), link("WEBWEB"))
            .unwrap();
        let events = registry.remove_code(&name("PHONE3"));
        assert_eq!(events.len(), 1);
        assert!(registry.is_empty());
        assert!(registry.timers.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Millis = 1_000_000;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    #[test]
    fn a_request_warns_at_90_seconds_and_times_out_at_120() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"))
            .unwrap();
        assert!(registry.due_events(START + 89_999).is_empty());
        assert_eq!(
            registry.due_events(START + 90_000),
            [PairingEvent::Expiring {
                requester: name("AAAAAA"),
                target: name("BBBBBB")
            }]
        );
        assert!(registry.due_events(START + 119_999).is_empty());
        assert_eq!(
            registry.due_events(START + 120_000),
            [PairingEvent::TimedOut {
                requester: name("AAAAAA"),
                target: name("BBBBBB")
            }]
        );
        assert!(registry.is_empty());
        assert!(registry.timers.is_empty());
    }

    #[test]
    fn an_answered_request_leaves_no_timers() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"))
            .unwrap();
        assert!(registry.take(&name("AAAAAA"), &name("BBBBBB")));
        assert!(!registry.take(&name("AAAAAA"), &name("BBBBBB")));
        assert!(registry.timers.is_empty());
        assert!(registry.due_events(START + 200_000).is_empty());
    }

    #[test]
    fn a_repeated_request_replaces_the_earlier_one_and_restarts_its_timers() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"))
            .unwrap();
        registry
            .request(START + 60_000, &name("AAAAAA"), &name("BBBBBB"))
            .unwrap();
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.timers.len(), 2);
        assert!(registry.due_events(START + 120_000).is_empty(), "restarted");
        assert_eq!(registry.due_events(START + 180_000).len(), 2);
    }

    #[test]
    fn a_target_takes_at_most_ten_pending_requests_and_never_its_own() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        let target = name("TARGET");
        for i in 0..10 {
            registry
                .request(START, &name(&format!("REQ{i}")), &target)
                .unwrap();
        }
        assert_eq!(
            registry.request(START, &name("REQX"), &target),
            Err(RequestRefused::TargetFull)
        );
        assert!(
            registry.request(START, &name("REQ3"), &target).is_ok(),
            "a replacement is not a new request"
        );
        assert_eq!(
            registry.request(START, &target, &target),
            Err(RequestRefused::ToSelf)
        );
    }

    #[test]
    fn removing_a_code_removes_its_requests_both_ways() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"))
            .unwrap();
        registry
            .request(START, &name("CCCCCC"), &name("AAAAAA"))
            .unwrap();
        registry
            .request(START, &name("CCCCCC"), &name("DDDDDD"))
            .unwrap();
        assert_eq!(
            registry.remove_code(&name("AAAAAA")),
            [PairingEvent::TimedOut {
                requester: name("CCCCCC"),
                target: name("AAAAAA")
            }],
            "the requester waiting for the code that left is told"
        );
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.timers.len(), 2);
        assert!(!registry.by_target.contains_key("AAAAAA"));
        assert!(!registry.by_requester.contains_key("AAAAAA"));
    }
}
