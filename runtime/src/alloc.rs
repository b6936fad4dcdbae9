//! The allocator of the `tensorlet` binary, and giving memory back after a
//! burst.
//!
//! mimalloc rather than glibc's malloc: a served request allocates and frees
//! hundreds of small blocks (stores, instances, tensors, JSON), and glibc's
//! malloc spent about a seventh of the serving time on them; mimalloc also
//! hands a freed tensor's block to the next one of its size, where a block
//! mapped on its own would be faulted in afresh each time (the CPU backend's
//! 512² matmul lost a third of its speed that way).
//!
//! But mimalloc keeps a thread's freed large blocks until that thread
//! allocates again, so after a burst of large host tensors (a model
//! hoarding memory up to its budget) an idle server could stay at its peak
//! resident size. [`release_idle_memory`], run by each worker thread of the
//! server as it goes idle, returns it (`bench/memory.sh`).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The process allocator.
pub use mimalloc::MiMalloc as Allocator;

/// How often one thread gives its free memory back, at most.
const EVERY: Duration = Duration::from_secs(1);

/// Returns the calling thread's free memory to the system, at most once a
/// second per thread: for a thread about to wait for work
/// (`tokio::runtime::Builder::on_thread_park`). Cheap when it is not due.
pub fn release_idle_memory() {
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    let now = Instant::now();
    let due = LAST.with(|last| {
        let due = last.get().is_none_or(|t| now.duration_since(t) >= EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: mi_collect only frees memory that no block occupies.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasing_is_rate_limited_per_thread_and_harmless() {
        let kept: Vec<Vec<u8>> = (0..4).map(|i| vec![i; 4 << 20]).collect();
        release_idle_memory();
        release_idle_memory();
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, v)| v[v.len() - 1] == i as u8)
        );
        std::thread::spawn(release_idle_memory).join().unwrap();
    }
}
