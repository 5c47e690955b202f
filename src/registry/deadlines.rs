//! One index of things due at a time, used by every registry that expires or times out what it holds.
//!
//! Items are ordered by their due time, then by the order they were filed in, so that two items due at
//! the same millisecond come out in the order they went in. Filing, removing by key and taking the first
//! due item are each O(log n); nothing is scheduled per item.

use std::collections::BTreeMap;

use crate::clock::Millis;

/// Where an item sits in the index; keep it to remove the item later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadlineKey {
    due: Millis,
    sequence: u64,
}

#[derive(Debug)]
pub struct Deadlines<T> {
    items: BTreeMap<DeadlineKey, T>,
    next_sequence: u64,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            next_sequence: 0,
        }
    }
}

impl<T> Deadlines<T> {
    /// Files `item` as due at `due`.
    pub fn insert(&mut self, due: Millis, item: T) -> DeadlineKey {
        self.next_sequence += 1;
        let key = DeadlineKey {
            due,
            sequence: self.next_sequence,
        };
        self.items.insert(key, item);
        key
    }

    pub fn remove(&mut self, key: DeadlineKey) -> Option<T> {
        self.items.remove(&key)
    }

    /// Takes the earliest item if it is due by `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<T> {
        let first = self.items.first_entry()?;
        (first.key().due <= now).then(|| first.remove())
    }

    /// Whether an item is due by `now`.
    pub fn any_due(&self, now: Millis) -> bool {
        self.items
            .first_key_value()
            .is_some_and(|(key, _)| key.due <= now)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_by_due_time_then_filing_order() {
        let mut deadlines = Deadlines::default();
        deadlines.insert(20, "late");
        deadlines.insert(10, "first at 10");
        deadlines.insert(10, "second at 10");
        assert_eq!(deadlines.pop_due(9), None);
        assert!(deadlines.any_due(10));
        assert_eq!(deadlines.pop_due(10), Some("first at 10"));
        assert_eq!(deadlines.pop_due(10), Some("second at 10"));
        assert_eq!(deadlines.pop_due(19), None);
        assert_eq!(deadlines.pop_due(u64::MAX), Some("late"));
        assert!(deadlines.is_empty());
    }

    #[test]
    fn removed_items_never_fall_due() {
        let mut deadlines = Deadlines::default();
        let kept = deadlines.insert(5, 'k');
        let removed = deadlines.insert(5, 'r');
        assert_eq!(deadlines.remove(removed), Some('r'));
        assert_eq!(deadlines.remove(removed), None);
        assert_eq!(kept.due, 5);
        assert_eq!(deadlines.pop_due(5), Some('k'));
        assert_eq!(deadlines.pop_due(5), None);
    }
}
