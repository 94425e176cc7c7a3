//! Bounded store of issued login tokens: a long-running sim must not grow without bound, so
//! the oldest token is forgotten once the cap is reached.

use std::collections::{HashSet, VecDeque};

pub const DEFAULT_TOKEN_CAP: usize = 10_000;

#[derive(Debug)]
pub struct TokenStore {
    cap: usize,
    order: VecDeque<String>,
    live: HashSet<String>,
}

impl TokenStore {
    pub fn new(cap: usize) -> Self {
        TokenStore {
            cap: cap.max(1),
            order: VecDeque::new(),
            live: HashSet::new(),
        }
    }

    /// Mints and remembers a fresh token, evicting the oldest past the cap.
    pub fn issue(&mut self) -> String {
        let token = uuid::Uuid::new_v4().to_string();
        while self.order.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.live.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(token.clone());
        self.live.insert(token.clone());
        token
    }

    pub fn is_valid(&self, token: &str) -> bool {
        self.live.contains(token)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_token_is_evicted_at_cap() {
        let mut store = TokenStore::new(2);
        let a = store.issue();
        let b = store.issue();
        let c = store.issue();
        assert_eq!(store.len(), 2);
        assert!(!store.is_valid(&a));
        assert!(store.is_valid(&b));
        assert!(store.is_valid(&c));
        assert!(!store.is_valid("not-a-token"));
    }
}
