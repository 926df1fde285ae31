//! Fault injection for the in-memory stores: make chosen operations fail with a transient
//! error, as a full disk or a lost quorum would.

use crate::error::{StoreError, Transient};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A store operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Append,
    Read,
    Bounds,
    OffsetAtIngestTime,
    ScanTime,
    Remove,
    Get,
    List,
    Put,
    Delete,
    Watch,
}

/// How an injected failure behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails and changes nothing.
    Fail,
    /// The operation takes effect, then reports failure (a write whose acknowledgement
    /// was lost: the caller cannot tell it happened). Reads treat it as [`Fault::Fail`].
    ApplyThenFail,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    fault: Fault,
    /// Calls left to fail; `None` until [`Faults::heal`].
    remaining: Option<u32>,
}

/// The faults pending on one store (or on several: share it with `Arc`).
#[derive(Debug, Default)]
pub struct Faults {
    pending: Mutex<HashMap<Op, Pending>>,
}

impl Faults {
    /// The next `n` calls of `op` fail with `fault` (replacing what was pending for `op`).
    pub fn fail_next(&self, op: Op, n: u32, fault: Fault) {
        self.set(
            op,
            Pending {
                fault,
                remaining: Some(n),
            },
        );
    }

    /// Every call of `op` fails with `fault` until [`Faults::heal`].
    pub fn fail_until_healed(&self, op: Op, fault: Fault) {
        self.set(
            op,
            Pending {
                fault,
                remaining: None,
            },
        );
    }

    /// Removes every pending fault.
    pub fn heal(&self) {
        self.lock().clear();
    }

    fn set(&self, op: Op, p: Pending) {
        self.lock().insert(op, p);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Op, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes one pending fault of `op`, if any.
    pub(crate) fn take(&self, op: Op) -> Option<Fault> {
        let mut pending = self.lock();
        let p = pending.get_mut(&op)?;
        let fault = p.fault;
        match &mut p.remaining {
            None => {}
            Some(0) => {
                pending.remove(&op);
                return None;
            }
            Some(1) => {
                pending.remove(&op);
            }
            Some(n) => *n -= 1,
        }
        Some(fault)
    }

    /// For reads: fails if a fault of `op` is pending.
    pub(crate) fn check(&self, op: Op) -> Result<(), StoreError> {
        match self.take(op) {
            Some(_) => Err(injected(op)),
            None => Ok(()),
        }
    }

    /// For writes: runs `apply` unless a [`Fault::Fail`] is pending, and reports an
    /// injected failure instead of its result when a fault was pending.
    pub(crate) fn write<T>(
        &self,
        op: Op,
        apply: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.take(op) {
            None => apply(),
            Some(Fault::Fail) => Err(injected(op)),
            Some(Fault::ApplyThenFail) => {
                apply()?;
                Err(injected(op))
            }
        }
    }
}

/// The transient error an injected fault produces.
pub(crate) fn injected(op: Op) -> StoreError {
    StoreError::unavailable(format!("{op:?}"), Transient::Injected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_heals_itself() {
        let f = Faults::default();
        f.fail_next(Op::Put, 2, Fault::Fail);
        assert_eq!(f.take(Op::Get), None);
        assert_eq!(f.take(Op::Put), Some(Fault::Fail));
        assert_eq!(f.take(Op::Put), Some(Fault::Fail));
        assert_eq!(f.take(Op::Put), None);
        f.fail_next(Op::Put, 0, Fault::Fail);
        assert_eq!(f.take(Op::Put), None);
    }

    #[test]
    fn sticky_until_healed() {
        let f = Faults::default();
        f.fail_until_healed(Op::Append, Fault::ApplyThenFail);
        for _ in 0..5 {
            assert_eq!(f.take(Op::Append), Some(Fault::ApplyThenFail));
        }
        f.heal();
        assert_eq!(f.take(Op::Append), None);
    }

    /// Runs one write through `f` with `fault` pending: (its result was an error, it applied).
    fn one_write(f: &Faults, fault: Fault) -> (bool, bool) {
        f.fail_next(Op::Put, 1, fault);
        let mut applied = false;
        let failed = f
            .write(Op::Put, || {
                applied = true;
                Ok(())
            })
            .is_err();
        (failed, applied)
    }

    #[test]
    fn apply_then_fail_applies() {
        let f = Faults::default();
        assert_eq!(one_write(&f, Fault::ApplyThenFail), (true, true));
        assert_eq!(one_write(&f, Fault::Fail), (true, false));
    }
}
