//! The provided-buffer ring that multishot receives fill: one block of
//! buffers, and the ring of slots through which they are handed to the
//! kernel.

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

use super::{BGID, RECV_BUF};

/// A ring of provided receive buffers, registered with one io_uring.
pub(super) struct BufRing {
    /// `entries` ring slots, page-aligned, shared with the kernel.
    slots: *mut types::BufRingEntry,
    /// `entries * RECV_BUF` bytes of buffers.
    data: *mut u8,
    entries: u16,
    tail: u16,
    /// The kernel may still use the memory: never free it.
    leaked: bool,
}

impl BufRing {
    fn slots_layout(entries: u16) -> Layout {
        let size = usize::from(entries) * std::mem::size_of::<types::BufRingEntry>();
        Layout::from_size_align(size.max(4096), 4096).expect("valid layout")
    }

    fn data_layout(entries: u16) -> Layout {
        Layout::from_size_align(usize::from(entries) * RECV_BUF, 64).expect("valid layout")
    }

    pub(super) fn new(ring: &IoUring, entries: u16) -> io::Result<Self> {
        // SAFETY: both layouts have a non-zero size.
        let (slots, data) = unsafe {
            (
                alloc::alloc_zeroed(Self::slots_layout(entries)).cast::<types::BufRingEntry>(),
                alloc::alloc_zeroed(Self::data_layout(entries)),
            )
        };
        if slots.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut me = Self {
            slots,
            data,
            entries,
            tail: 0,
            leaked: false,
        };
        // SAFETY: `slots` is page-aligned, zeroed memory for `entries` slots
        // that stays allocated until `drop`, which runs after the owning
        // Ring unregistered the group.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(slots as u64, entries, BGID, 0)?
        };
        for b in 0..entries {
            me.give_back(b);
        }
        Ok(me)
    }

    /// The bytes of buffer `buf`.
    pub(super) fn bytes(&self, buf: u16) -> &[u8] {
        let buf = usize::from(buf % self.entries);
        // SAFETY: buffer `buf` lies within `data`, and the kernel reported it
        // filled (a completion selected it), so it is not being written.
        unsafe { std::slice::from_raw_parts(self.data.add(buf * RECV_BUF), RECV_BUF) }
    }

    /// Hands buffer `buf` (back) to the kernel.
    pub(super) fn give_back(&mut self, buf: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let buf = buf % self.entries;
        // SAFETY: `slot` < `entries`, so the entry lies within `slots`; the
        // kernel reads a slot only after the tail store below publishes it.
        unsafe {
            let e = &mut *self.slots.add(slot);
            e.set_addr(self.data.add(usize::from(buf) * RECV_BUF) as u64);
            e.set_len(RECV_BUF as u32);
            e.set_bid(buf);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the first slot's reserved bytes,
        // is 2-byte aligned, and is shared with the kernel, hence atomic.
        unsafe {
            let tail = types::BufRingEntry::tail(self.slots).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}

impl BufRing {
    /// Keeps the memory for good (it could not be unregistered).
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: both blocks came from `alloc_zeroed` with these layouts.
        unsafe {
            alloc::dealloc(self.slots.cast(), Self::slots_layout(self.entries));
            alloc::dealloc(self.data, Self::data_layout(self.entries));
        }
    }
}
