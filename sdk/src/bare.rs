//! Runtime support for plugins built for `wasm32-unknown-unknown` ("bare"
//! plugins, without WASI): an allocator that starts in the memory the module
//! already has, and a panic hook that writes the panic message to stderr.
//!
//! A bare plugin imports only `tensorlet:ml/tensor` (and `wasi:cli/stderr`
//! for panic messages), so the host instantiates it faster than a
//! `wasm32-wasip2` one, whose standard library links the WASI CLI world. That
//! matters because the host creates a fresh instance for every call.

use std::sync::atomic::{AtomicBool, Ordering};

/// The global allocator (the default `allocator` feature): dlmalloc, as in the
/// standard library, but starting in the initial memory.
#[cfg(feature = "allocator")]
mod allocator {
    use std::alloc::{GlobalAlloc, Layout};
    use std::arch::wasm32;
    use std::cell::{Cell, UnsafeCell};

    /// The size of a WebAssembly page.
    const WASM_PAGE: usize = 64 << 10;

    /// How much dlmalloc asks of the system at a time. Smaller than a page, so
    /// that the first requests fit in the free tail of the initial memory
    /// instead of growing it (each growth is a system call on the host).
    const GRANULARITY: usize = 4 << 10;

    unsafe extern "C" {
        /// The first byte past the data segments, defined by the linker.
        static __heap_base: u8;
    }

    /// dlmalloc's system allocator: hands out the free tail of the initial memory
    /// first (from `__heap_base` to the current end), growing memory only for
    /// what does not fit; later requests grow memory. Consecutive regions are
    /// contiguous, so dlmalloc merges them into one segment.
    struct HeapFirst {
        claimed: Cell<bool>,
    }

    // SAFETY: without the `atomics` target feature a wasm32 module runs on one
    // thread, so the `Cell` is never shared.
    unsafe impl Send for HeapFirst {}

    unsafe impl dlmalloc::Allocator for HeapFirst {
        fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
            let end = wasm32::memory_size(0) * WASM_PAGE;
            let start = if self.claimed.replace(true) {
                end
            } else {
                let base = (&raw const __heap_base) as usize;
                base.next_multiple_of(16).min(end)
            };
            let free = end - start;
            let pages = size.saturating_sub(free).div_ceil(WASM_PAGE);
            if pages > 0 && wasm32::memory_grow(0, pages) == usize::MAX {
                return (std::ptr::null_mut(), 0, 0);
            }
            (start as *mut u8, free + pages * WASM_PAGE, 0)
        }

        fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
            std::ptr::null_mut()
        }

        fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
            false
        }

        fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
            false
        }

        fn can_release_part(&self, _flags: u32) -> bool {
            false
        }

        fn allocates_zeros(&self) -> bool {
            // Memory past the data segments, and memory from `memory.grow`, is zero.
            true
        }

        fn page_size(&self) -> usize {
            WASM_PAGE
        }
    }

    /// The global allocator of a bare plugin.
    struct Allocator(UnsafeCell<dlmalloc::Dlmalloc<HeapFirst>>);

    // SAFETY: a wasm32 module without the `atomics` feature is single-threaded.
    unsafe impl Sync for Allocator {}

    impl Allocator {
        const fn new() -> Self {
            let mut d = dlmalloc::Dlmalloc::new_with_allocator(HeapFirst {
                claimed: Cell::new(false),
            });
            assert!(d.set_granularity(GRANULARITY));
            Allocator(UnsafeCell::new(d))
        }

        #[allow(clippy::mut_from_ref, reason = "single-threaded; see `Sync`")]
        fn get(&self) -> &mut dlmalloc::Dlmalloc<HeapFirst> {
            // SAFETY: single-threaded, and no allocator call re-enters another.
            unsafe { &mut *self.0.get() }
        }
    }

    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
            unsafe { self.get().malloc(layout.size(), layout.align()) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract of `GlobalAlloc::alloc_zeroed`.
            unsafe { self.get().calloc(layout.size(), layout.align()) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
            unsafe { self.get().free(ptr, layout.size(), layout.align()) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
            unsafe {
                self.get()
                    .realloc(ptr, layout.size(), layout.align(), new_size)
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator::new();
}

/// Sends panic messages to `wasi:cli/stderr`, where the host keeps them for
/// the error it reports (the standard library of this target has no stderr).
/// Called on entry to every export; installs the hook once.
pub(crate) fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = format!("{info}\n");
        let stderr = wasip2::cli::stderr::get_stderr();
        // blocking-write-and-flush takes at most 4096 bytes at a time.
        for chunk in message.as_bytes().chunks(4096) {
            if stderr.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }));
}
