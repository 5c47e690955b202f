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
use crate::peer::AddressGroup;
use crate::protocol::Name;
use crate::protocol::names::PairingKey;

/// Why a request was refused. The protocol answers all of these with one generic text, so that pairing
/// codes cannot be enumerated.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestRefused {
    ToSelf,
    TargetFull,
    /// The requester's address has as many requests waiting for this target, or in all, as it may.
    AddressFull,
}

/// A web client's request to attach to a phone, waiting for the phone's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingLink {
    pub web_client: Name,
    pub web_client_key: PairingKey,
    pub device_name: Option<String>,
}

/// Why a link request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkRefused {
    /// The phone has a pending link request from another web client.
    Busy,
    /// The web client's address has as many requests waiting as it may.
    AddressFull,
}

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

/// A pairing request's two timers, and where it came from.
#[derive(Debug)]
struct Pending {
    warning: DeadlineKey,
    expiry: DeadlineKey,
    address: AddressGroup,
}

/// A link request waiting for the phone, with its timer and where it came from.
#[derive(Debug)]
struct WaitingLink {
    link: PendingLink,
    timer: DeadlineKey,
    address: AddressGroup,
}

#[derive(Debug)]
pub struct PairingRegistry {
    /// From a request to its timeout.
    expiry: Millis,
    /// How long before the timeout both sides of a pairing request are warned.
    warning: Millis,
    max_pending_per_target: usize,
    max_pending_per_address: usize,
    max_pending_per_target_from_address: usize,
    /// Link requests by phone.
    links: HashMap<Name, WaitingLink>,
    /// The phones each web client has asked to attach to.
    links_by_web_client: HashMap<Name, HashSet<Name>>,
    pending: HashMap<(Name, Name), Pending>,
    by_target: HashMap<Name, HashSet<Name>>,
    by_requester: HashMap<Name, HashSet<Name>>,
    /// Pending pairing and link requests per requesting address.
    per_address: HashMap<AddressGroup, usize>,
    /// Pending pairing requests per target and requesting address.
    per_target_and_address: HashMap<(Name, AddressGroup), usize>,
    timers: Deadlines<Timer>,
}

impl PairingRegistry {
    pub fn new(config: &PairingConfig) -> Self {
        Self {
            expiry: config.expiry(),
            warning: config.warning(),
            max_pending_per_target: config.max_pending_pairs,
            max_pending_per_address: config.max_pending_requests_per_ip,
            max_pending_per_target_from_address: config.max_pending_pairs_per_ip_per_code,
            links: HashMap::new(),
            links_by_web_client: HashMap::new(),
            pending: HashMap::new(),
            by_target: HashMap::new(),
            by_requester: HashMap::new(),
            per_address: HashMap::new(),
            per_target_and_address: HashMap::new(),
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

    /// Records a request from `requester` (at `address`) to `target`, replacing an earlier one between
    /// the same two.
    pub fn request(
        &mut self,
        now: Millis,
        requester: &Name,
        target: &Name,
        address: AddressGroup,
    ) -> Result<(), RequestRefused> {
        if requester == target {
            return Err(RequestRefused::ToSelf);
        }
        let key = (requester.clone(), target.clone());
        match self.pending.get(&key) {
            // A replacement takes the place it frees, wherever it comes from now.
            Some(_) => {
                self.remove(requester, target);
            }
            None => {
                let waiting = self.by_target.get(target).map_or(0, HashSet::len);
                if waiting >= self.max_pending_per_target {
                    return Err(RequestRefused::TargetFull);
                }
                let from_address = count(&self.per_target_and_address, &(target.clone(), address));
                if from_address >= self.max_pending_per_target_from_address
                    || count(&self.per_address, &address) >= self.max_pending_per_address
                {
                    return Err(RequestRefused::AddressFull);
                }
            }
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
        self.pending.insert(
            key,
            Pending {
                warning,
                expiry,
                address,
            },
        );
        *self.per_address.entry(address).or_default() += 1;
        *self
            .per_target_and_address
            .entry((target.clone(), address))
            .or_default() += 1;
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

    /// The codes `requester` has requests waiting for.
    pub fn targets_of(&self, requester: &Name) -> Vec<Name> {
        self.by_requester
            .get(requester)
            .map(|targets| targets.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The phones `web_client` asked to attach to, waiting for their answer.
    pub fn phones_of(&self, web_client: &Name) -> Vec<Name> {
        self.links_by_web_client
            .get(web_client)
            .map(|phones| phones.iter().cloned().collect())
            .unwrap_or_default()
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
        address: AddressGroup,
    ) -> Result<(), LinkRefused> {
        match self.links.get(phone) {
            Some(waiting) if waiting.link.web_client != link.web_client => {
                return Err(LinkRefused::Busy);
            }
            Some(_) => {
                self.take_link(phone);
            }
            None if count(&self.per_address, &address) >= self.max_pending_per_address => {
                return Err(LinkRefused::AddressFull);
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
        self.links.insert(
            phone.clone(),
            WaitingLink {
                link,
                timer,
                address,
            },
        );
        *self.per_address.entry(address).or_default() += 1;
        Ok(())
    }

    /// Takes the pending link request to `phone`, if any (the phone answered it).
    pub fn take_link(&mut self, phone: &Name) -> Option<PendingLink> {
        let waiting = self.links.remove(phone)?;
        self.timers.remove(waiting.timer);
        self.forget_link(phone, &waiting);
        Some(waiting.link)
    }

    /// Removes a link request taken out of `links` from the other indexes.
    fn forget_link(&mut self, phone: &Name, waiting: &WaitingLink) {
        remove_from(
            &mut self.links_by_web_client,
            &waiting.link.web_client,
            phone,
        );
        uncount(&mut self.per_address, &waiting.address);
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
                    if let Some(waiting) = self.links.remove(&phone) {
                        self.forget_link(&phone, &waiting);
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

    /// Pending pairing requests.
    pub fn pending_pairs(&self) -> usize {
        self.pending.len()
    }

    /// Pending link requests.
    pub fn pending_links(&self) -> usize {
        self.links.len()
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
        uncount(&mut self.per_address, &pending.address);
        uncount(
            &mut self.per_target_and_address,
            &(target.clone(), pending.address),
        );
        true
    }
}

fn count<K: std::hash::Hash + Eq>(counts: &HashMap<K, usize>, key: &K) -> usize {
    counts.get(key).copied().unwrap_or(0)
}

fn uncount<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
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

    const HOME: AddressGroup = AddressGroup::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

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
            .request_link(0, &name("PHONE3"), link("WEBWEB"), HOME)
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
            .request_link(0, &name("PHONE3"), link("WEBONE"), HOME)
            .unwrap();
        assert_eq!(
            registry.request_link(10, &name("PHONE3"), link("WEBTWO"), HOME),
            Err(LinkRefused::Busy),
            "another web client cannot take the place of the one the phone was shown"
        );
        registry
            .request_link(60_000, &name("PHONE3"), link("WEBONE"), HOME)
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
            .request_link(0, &name("PHONE3"), link("WEBWEB"), HOME)
            .unwrap();
        let events = registry.remove_code(&name("WEBWEB"));
        assert_eq!(events.len(), 1);
        registry
            .request_link(0, &name("PHONE3"), link("WEBWEB"), HOME)
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

    const HOME: AddressGroup = AddressGroup::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    const START: Millis = 1_000_000;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    #[test]
    fn a_request_warns_at_90_seconds_and_times_out_at_120() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"), HOME)
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
            .request(START, &name("AAAAAA"), &name("BBBBBB"), HOME)
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
            .request(START, &name("AAAAAA"), &name("BBBBBB"), HOME)
            .unwrap();
        registry
            .request(START + 60_000, &name("AAAAAA"), &name("BBBBBB"), HOME)
            .unwrap();
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.timers.len(), 2);
        assert!(registry.due_events(START + 120_000).is_empty(), "restarted");
        assert_eq!(registry.due_events(START + 180_000).len(), 2);
    }

    fn address(last: u8) -> AddressGroup {
        AddressGroup::V4(std::net::Ipv4Addr::new(198, 51, 100, last))
    }

    #[test]
    fn one_address_holds_few_of_a_targets_slots_and_few_in_all() {
        let config = PairingConfig {
            max_pending_requests_per_ip: 3,
            ..PairingConfig::default()
        };
        let mut registry = PairingRegistry::new(&config);
        let target = name("TARGET");
        for requester in ["AAAAAA", "BBBBBB"] {
            registry
                .request(START, &name(requester), &target, HOME)
                .unwrap();
        }
        assert_eq!(
            registry.request(START, &name("CCCCCC"), &target, HOME),
            Err(RequestRefused::AddressFull),
            "a third code from the same address"
        );
        registry
            .request(START, &name("CCCCCC"), &target, address(9))
            .expect("the target's other slots are for others");
        registry
            .request(START, &name("CCCCCC"), &name("OTHER2"), HOME)
            .unwrap();
        assert_eq!(
            registry.request(START, &name("DDDDDD"), &name("OTHER3"), HOME),
            Err(RequestRefused::AddressFull),
            "three pending from the address in all"
        );
        let link = PendingLink {
            web_client: name("DDDDDD"),
            web_client_key: PairingKey::try_from(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
            )
            .unwrap(),
            device_name: None,
        };
        assert_eq!(
            registry.request_link(START, &name("PHONE2"), link.clone(), HOME),
            Err(LinkRefused::AddressFull),
            "link requests count too"
        );
        assert!(registry.take(&name("AAAAAA"), &target));
        registry
            .request_link(START, &name("PHONE2"), link, HOME)
            .expect("an answered request gives its place back");
        assert_eq!(
            registry.due_events(START + 120_000).len(),
            7,
            "three warnings, three timeouts, one link timeout"
        );
        assert!(registry.per_address.is_empty(), "timeouts give places back");
        assert!(registry.per_target_and_address.is_empty());
    }

    #[test]
    fn a_target_takes_at_most_ten_pending_requests_and_never_its_own() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        let target = name("TARGET");
        for i in 0..10 {
            registry
                .request(START, &name(&format!("REQ{i}")), &target, address(i))
                .unwrap();
        }
        assert_eq!(
            registry.request(START, &name("REQX"), &target, address(10)),
            Err(RequestRefused::TargetFull)
        );
        assert!(
            registry
                .request(START, &name("REQ3"), &target, address(3))
                .is_ok(),
            "a replacement is not a new request"
        );
        assert_eq!(
            registry.request(START, &target, &target, HOME),
            Err(RequestRefused::ToSelf)
        );
    }

    #[test]
    fn removing_a_code_removes_its_requests_both_ways() {
        let mut registry = PairingRegistry::new(&PairingConfig::default());
        registry
            .request(START, &name("AAAAAA"), &name("BBBBBB"), HOME)
            .unwrap();
        registry
            .request(START, &name("CCCCCC"), &name("AAAAAA"), HOME)
            .unwrap();
        registry
            .request(START, &name("CCCCCC"), &name("DDDDDD"), HOME)
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
