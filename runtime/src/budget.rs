//! Budgets of host tensor memory shared by many plugin calls: the process's
//! ([`Limits::max_total_host_tensor_bytes`](crate::Limits), `--max-memory`),
//! and, when serving, each model's share of it. A call charges what it holds
//! (its tensors and what its tape keeps) to every budget it runs under as it
//! grows, and gives it all back when it ends; a growth that would take a
//! budget past its limit is refused, so the call fails (a 503 when serving)
//! instead of the process overcommitting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Host tensor memory that calls share, up to a limit.
#[derive(Debug)]
pub struct MemoryBudget {
    /// What it is, for messages: "the process", "model `iris`".
    pub what: String,
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(what: impl Into<String>, limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            what: what.into(),
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit; what is held stays held.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held by running calls now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if that stays within the limit.
    fn take(&self, n: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The step in which a call takes room from the budgets.
const GRANULE: usize = 64 << 10;

/// A call's growth refused by a shared budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "that would take {what}'s budget of host tensors past {} (it is shared by every call \
     running)",
    crate::human_bytes(*.limit)
)]
pub struct OverBudget {
    /// Whose budget: "the process", "model `iris`".
    pub what: String,
    /// Its limit in bytes.
    pub limit: usize,
}

/// What one call holds against the budgets it runs under; dropping it gives
/// everything back.
#[derive(Debug)]
pub(crate) struct Charge {
    budgets: Arc<[Arc<MemoryBudget>]>,
    held: usize,
}

impl Charge {
    /// A call charging `budgets`.
    pub(crate) fn new(budgets: Arc<[Arc<MemoryBudget>]>) -> Self {
        Charge { budgets, held: 0 }
    }

    /// Makes the call hold `total` bytes: takes the growth from every budget,
    /// or nothing when one of them refuses. Growth is taken in steps of
    /// [`GRANULE`] where the budgets have room, so a call's many small
    /// tensors touch the shared counters once, not once per tensor op. A call
    /// that shrinks keeps its high-water mark until it ends.
    pub(crate) fn hold(&mut self, total: usize) -> Result<(), OverBudget> {
        if total <= self.held {
            return Ok(());
        }
        let ahead = total.next_multiple_of(GRANULE);
        if self.take_all(ahead - self.held).is_ok() {
            self.held = ahead;
            return Ok(());
        }
        self.take_all(total - self.held)?;
        self.held = total;
        Ok(())
    }

    /// Takes `more` from every budget, or from none.
    fn take_all(&self, more: usize) -> Result<(), OverBudget> {
        for (i, b) in self.budgets.iter().enumerate() {
            if !b.take(more) {
                for taken in &self.budgets[..i] {
                    taken.give_back(more);
                }
                return Err(OverBudget {
                    what: b.what.clone(),
                    limit: b.limit(),
                });
            }
        }
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.held > 0 {
            for b in self.budgets.iter() {
                b.give_back(self.held);
            }
        }
    }
}

pub use tensorlet_formats::limits::default_process_budget;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_holds_against_every_budget_and_gives_back_when_it_ends() {
        let process = MemoryBudget::new("the process", 100);
        let model = MemoryBudget::new("model `iris`", 60);
        let both: Arc<[Arc<MemoryBudget>]> = Arc::new([process.clone(), model.clone()]);
        let mut a = Charge::new(both.clone());
        // A limit too small for a whole step is taken from exactly.
        a.hold(40).unwrap();
        a.hold(20).unwrap(); // shrinking keeps the high-water mark
        assert_eq!((process.used(), model.used()), (40, 40));
        let mut b = Charge::new(both);
        let e = b.hold(30).unwrap_err();
        assert_eq!(e.what, "model `iris`");
        assert_eq!(
            e.to_string(),
            "that would take model `iris`'s budget of host tensors past 60 B (it is shared by \
             every call running)"
        );
        // The refused growth took nothing from the process either.
        assert_eq!(process.used(), 40);
        b.hold(20).unwrap();
        let mut other = Charge::new(Arc::new([process.clone()]));
        assert!(other.hold(41).is_err());
        other.hold(40).unwrap();
        assert_eq!(process.used(), 100);
        drop((a, b, other));
        assert_eq!((process.used(), model.used()), (0, 0));
        // Where there is room, small growths take one step.
        let roomy = MemoryBudget::new("the process", 1 << 20);
        let mut c = Charge::new(Arc::new([roomy.clone()]));
        c.hold(100).unwrap();
        c.hold(5000).unwrap();
        assert_eq!(roomy.used(), GRANULE);
        c.hold(GRANULE + 1).unwrap();
        assert_eq!(roomy.used(), 2 * GRANULE);
        drop(c);
        assert_eq!(roomy.used(), 0);
        model.set_limit(10);
        assert_eq!(model.limit(), 10);
    }
}
