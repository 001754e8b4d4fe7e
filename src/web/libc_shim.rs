//! C allocator shim for WebAssembly: the pure-Rust JPEG 2000 decoder (`openjp2`, a c2rust port
//! of OpenJPEG) calls `malloc`, `calloc`, `realloc`, `free` and `strcpy`, which
//! `wasm32-unknown-unknown` has no libc to provide (the module would import them from "env"
//! and fail to load). These definitions route them to Rust's allocator. Native builds use libc.
//! It also installs the global allocator, which tolerates openjp2's null deallocations.

use std::alloc::{GlobalAlloc, Layout, System, alloc, alloc_zeroed, dealloc, realloc as grow};

/// The global allocator: the system one (dlmalloc on wasm32), except that deallocating a null
/// pointer does nothing. openjp2 0.6.1 (`opj_tcd_code_block_dec_deallocate`) calls Rust's
/// `dealloc` on the null data pointer of code blocks it never decoded; glibc's `free(NULL)`
/// hides that natively, but dlmalloc reads the chunk header in front of address 0 and traps
/// ("memory access out of bounds"), which killed the module on every JPEG 2000 DICOM.
struct NullTolerant;

// SAFETY: every call is forwarded to `System` with the caller's guarantees, except a null
// `dealloc`, which frees nothing and so has nothing to forward.
unsafe impl GlobalAlloc for NullTolerant {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ptr.is_null() {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: NullTolerant = NullTolerant;

/// Every block starts with a header holding its size; it also keeps the 16-byte alignment
/// that C's allocator guarantees.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// # Safety
/// C `malloc` semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    let Some(l) = layout(size) else { return std::ptr::null_mut() };
    // SAFETY: `l` has a non-zero size; the header is written inside the block.
    unsafe {
        let p = alloc(l);
        if p.is_null() {
            return p;
        }
        (p as *mut usize).write(size);
        p.add(HEADER)
    }
}

/// # Safety
/// C `calloc` semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else { return std::ptr::null_mut() };
    let Some(l) = layout(total) else { return std::ptr::null_mut() };
    // SAFETY: as in `malloc`, zero-initialised.
    unsafe {
        let p = alloc_zeroed(l);
        if p.is_null() {
            return p;
        }
        (p as *mut usize).write(total);
        p.add(HEADER)
    }
}

/// # Safety
/// C `free` semantics: `ptr` is null or came from these functions.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `malloc`/`calloc`/`realloc`, so its header precedes it.
    unsafe {
        let base = ptr.sub(HEADER);
        let size = (base as *const usize).read();
        if let Some(l) = layout(size) {
            dealloc(base, l);
        }
    }
}

/// # Safety
/// C `realloc` semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: C semantics; a non-null `ptr` came from these functions.
    unsafe {
        if ptr.is_null() {
            return malloc(size);
        }
        let base = ptr.sub(HEADER);
        let old = (base as *const usize).read();
        let (Some(l), Some(new_total)) = (layout(old), size.checked_add(HEADER)) else { return std::ptr::null_mut() };
        let p = grow(base, l, new_total);
        if p.is_null() {
            return p;
        }
        (p as *mut usize).write(size);
        p.add(HEADER)
    }
}

/// # Safety
/// C `strcpy` semantics (only the JPEG 2000 encoder's comment path uses it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcpy(dst: *mut u8, src: *const u8) -> *mut u8 {
    // SAFETY: C semantics: `src` is NUL-terminated and `dst` large enough.
    unsafe {
        let mut i = 0;
        loop {
            let c = src.add(i).read();
            dst.add(i).write(c);
            if c == 0 {
                return dst;
            }
            i += 1;
        }
    }
}
