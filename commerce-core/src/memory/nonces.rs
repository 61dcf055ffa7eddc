use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::clock::{Clock, Timestamp};
use crate::error::Result;
use crate::store::NonceStore;

/// The in-memory [`NonceStore`] (one process). Expired nonces are dropped whenever the
/// map has doubled since the last sweep, so memory stays proportional to the nonces
/// still live.
#[derive(Debug)]
pub struct MemoryNonces {
    clock: Arc<dyn Clock>,
    state: Mutex<Nonces>,
}

#[derive(Debug, Default)]
struct Nonces {
    until: HashMap<String, Timestamp>,
    sweep_at: usize,
}

impl MemoryNonces {
    /// An empty store reading "now" from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryNonces {
            clock,
            state: Mutex::new(Nonces {
                until: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    /// How many nonces are remembered (live or not yet swept).
    pub fn len(&self) -> usize {
        lock(&self.state).until.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl NonceStore for MemoryNonces {
    async fn use_once(&self, nonce: &str, until: Timestamp) -> Result<bool> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if state.until.len() >= state.sweep_at {
            state.until.retain(|_, t| *t > now);
            state.sweep_at = (state.until.len() * 2).max(1024);
        }
        match state.until.get(nonce) {
            Some(t) if *t > now => Ok(false),
            _ => {
                state.until.insert(nonce.to_owned(), until);
                Ok(true)
            }
        }
    }
}
