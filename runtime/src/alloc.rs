//! The allocator of the `tensorlet` binary: mimalloc for ordinary blocks,
//! the system's for large ones.
//!
//! A served request allocates and frees hundreds of small blocks (stores,
//! instances, tensors, JSON), and glibc's malloc spent about a seventh of the
//! serving time on them; mimalloc is faster there. But mimalloc keeps freed
//! large blocks in its segments until the thread that owns them allocates
//! again, so after a burst of large host tensors (a model hoarding memory up
//! to its budget) a server could stay at its peak resident size while idle.
//! Blocks of [`LARGE`] and more go to the system allocator instead, with
//! glibc told to map each one on its own ([`return_large_blocks`]), so
//! freeing one returns it to the system at once (`bench/memory.sh`).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large come from the system allocator.
pub const LARGE: usize = 1 << 20;

pub struct Allocator;

fn large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: each block is allocated and freed by the same allocator, chosen
// by its size, which `dealloc` and `realloc` are given with the layout.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if large(layout.size()) {
                System.alloc(layout)
            } else {
                mimalloc::MiMalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the allocator its size picks.
        unsafe {
            if large(layout.size()) {
                System.dealloc(ptr, layout)
            } else {
                mimalloc::MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from the allocator its size picks; a block that
        // moves between them is copied and freed by its own.
        unsafe {
            match (large(layout.size()), large(new_size)) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => mimalloc::MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new = Layout::from_size_align_unchecked(new_size, layout.align());
                    let moved = self.alloc(new);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

/// Tells glibc to map every block of [`LARGE`] and more on its own, so that
/// freeing it unmaps it: by default glibc raises that threshold as blocks
/// are freed and then keeps them in its heap.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a setting of glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as libc::c_int);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_bytes_when_they_grow_or_shrink_across_the_threshold() {
        let a = Allocator;
        unsafe {
            let small = Layout::from_size_align(64, 8).unwrap();
            let p = a.alloc(small);
            for i in 0..64 {
                *p.add(i) = i as u8;
            }
            let p = a.realloc(p, small, 2 * LARGE);
            assert!((0..64).all(|i| *p.add(i) == i as u8));
            let big = Layout::from_size_align(2 * LARGE, 8).unwrap();
            *p.add(2 * LARGE - 1) = 7;
            let p = a.realloc(p, big, 32);
            assert!((0..32).all(|i| *p.add(i) == i as u8));
            a.dealloc(p, Layout::from_size_align(32, 8).unwrap());
            let z = a.alloc_zeroed(big);
            assert!((0..2 * LARGE).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, big);
        }
    }
}
