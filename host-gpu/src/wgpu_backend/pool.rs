//! A pool of GPU buffers with a cap on what it keeps.
//!
//! Buffers are handed out by size class (powers of two up to 64 KiB, then eight
//! classes per octave, so at most 12.5 % is wasted) and come back to the pool
//! when the tensor that held them is dropped. Free buffers are kept up to the
//! cap; past it they are released to the driver. Reuse is safe without waiting
//! for the GPU: every use goes through the one queue, in order. While a batch
//! of commands is being recorded, buffers given back are held apart until the
//! batch is submitted, because `Queue::write_buffer` into a reused buffer would
//! land before the batch's earlier commands had read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a pooled buffer is for; each kind has its own free lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Tensor data and index lists: STORAGE | COPY_SRC | COPY_DST.
    Storage,
    /// Kernel parameters: UNIFORM | COPY_DST.
    Uniform,
    /// Readback: MAP_READ | COPY_DST.
    Staging,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            Kind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            Kind::Uniform => U::UNIFORM | U::COPY_DST,
            Kind::Staging => U::MAP_READ | U::COPY_DST,
        }
    }
}

/// Counters of the pool, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created from the driver.
    pub created: u64,
    /// Requests served by a free buffer.
    pub reused: u64,
    /// Bytes in buffers currently handed out.
    pub live_bytes: u64,
    /// Bytes in free buffers kept for reuse.
    pub free_bytes: u64,
    /// The most `free_bytes` may reach.
    pub cap_bytes: u64,
}

/// The smallest buffer handed out: small enough for parameters, and never zero
/// (a zero-sized binding is invalid).
const MIN_BYTES: u64 = 256;

/// The size class that serves a request of `bytes`.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    let p = b.next_power_of_two();
    if p <= 64 << 10 {
        p
    } else {
        // Eight classes between p / 2 and p.
        let step = p / 16;
        b.div_ceil(step) * step
    }
}

pub(crate) struct Pool {
    free: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    /// Given back while a batch was being recorded; free once it is submitted.
    deferred: Vec<(Kind, wgpu::Buffer)>,
    deferred_bytes: u64,
    /// Whether commands are being recorded that have not been submitted.
    pub(crate) recording: bool,
    stats: PoolStats,
}

impl Pool {
    pub(crate) fn new(cap_bytes: u64) -> Self {
        Pool {
            free: HashMap::new(),
            deferred: Vec::new(),
            deferred_bytes: 0,
            recording: false,
            stats: PoolStats {
                cap_bytes,
                ..PoolStats::default()
            },
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }

    fn take(&mut self, device: &wgpu::Device, kind: Kind, bytes: u64) -> wgpu::Buffer {
        let class = size_class(bytes);
        self.stats.live_bytes += class;
        if let Some(buf) = self.free.get_mut(&(kind, class)).and_then(Vec::pop) {
            self.stats.free_bytes -= class;
            self.stats.reused += 1;
            return buf;
        }
        self.stats.created += 1;
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensorlet pooled buffer"),
            size: class,
            usage: kind.usage(),
            mapped_at_creation: false,
        })
    }

    fn give_back(&mut self, kind: Kind, buf: wgpu::Buffer) {
        let class = buf.size();
        self.stats.live_bytes -= class;
        if self.recording {
            self.deferred_bytes += class;
            self.deferred.push((kind, buf));
            return;
        }
        self.keep(kind, buf);
    }

    fn keep(&mut self, kind: Kind, buf: wgpu::Buffer) {
        let class = buf.size();
        if self.stats.free_bytes + class > self.stats.cap_bytes {
            // Over the cap: let the driver have it back (wgpu frees it once the
            // GPU is done with it).
            return;
        }
        self.stats.free_bytes += class;
        self.free.entry((kind, class)).or_default().push(buf);
    }

    /// Bytes given back during the batch being recorded.
    pub(crate) fn deferred_bytes(&self) -> u64 {
        self.deferred_bytes
    }

    /// The batch was submitted: what it gave back may be reused.
    pub(crate) fn submitted(&mut self) {
        self.recording = false;
        self.deferred_bytes = 0;
        for (kind, buf) in std::mem::take(&mut self.deferred) {
            self.keep(kind, buf);
        }
    }

    /// Releases every free buffer.
    pub(crate) fn trim(&mut self) {
        self.free.clear();
        self.stats.free_bytes = 0;
    }
}

/// The pool and the device it allocates from, shared by the buffers it lends.
pub(crate) struct Allocator {
    pub(crate) device: wgpu::Device,
    pub(crate) pool: Mutex<Pool>,
}

impl Allocator {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding the lock leaves the counters at worst stale.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.lock().stats()
    }

    pub(crate) fn trim(&self) {
        self.lock().trim();
    }
}

/// A buffer lent by the pool; it goes back when dropped.
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    kind: Kind,
    alloc: Arc<Allocator>,
}

impl PooledBuffer {
    pub(crate) fn new(alloc: &Arc<Allocator>, kind: Kind, bytes: u64) -> Self {
        let buf = alloc.lock().take(&alloc.device, kind, bytes);
        PooledBuffer {
            buf: Some(buf),
            kind,
            alloc: alloc.clone(),
        }
    }

    /// The wgpu buffer (at least as large as requested).
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop")
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PooledBuffer({:?}, {} bytes)",
            self.kind,
            self.buffer().size()
        )
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.alloc.lock().give_back(self.kind, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_requests_with_little_waste() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(4), 256);
        assert_eq!(size_class(257), 512);
        assert_eq!(size_class(64 << 10), 64 << 10);
        assert_eq!(size_class((64 << 10) + 1), 72 << 10);
        for bytes in [1u64, 1000, 65_537, 1 << 20, 3_000_001, 64 << 20] {
            let c = size_class(bytes);
            assert!(c >= bytes);
            if bytes > 64 << 10 {
                assert!(c - bytes <= c / 8, "{bytes} -> {c}");
            }
        }
    }
}
