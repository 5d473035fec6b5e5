//! The io_uring backend: one ring per thread, registered buffers, fixed files.
//!
//! Each [`Ring`] belongs to the thread that made it (`IORING_SETUP_SINGLE_ISSUER`, with
//! `DEFER_TASKRUN` so completions are processed only when that thread asks). Its buffers are
//! registered once (`ReadFixed`/`WriteFixed`, and `SendZc` with a fixed buffer index), and
//! sockets and files are registered in a sparse fixed-file table (`types::Fixed`), so the
//! kernel neither pins pages nor looks up descriptors per operation. Operations that can run
//! together are submitted together in one `io_uring_enter` (a ping's send and its receive; a
//! file chunk's send and the next chunk's read). Writes to one socket are either one at a time
//! or a linked chain, so the byte stream stays in order. Short reads and writes are
//! resubmitted for the rest (a chain's cancelled links are requeued in order), `EAGAIN` is
//! retried behind a linked poll, and `SendZc` falls back to a plain send (noted in
//! [`Client::notes`]) when the kernel refuses it. Waiting busy-polls for up to
//! `Config::busy_poll_ns` (with `TASKRUN_FLAG`: no interrupts, no wake-ups, a non-blocking
//! enter only when the kernel has queued completion work), yielding the CPU meanwhile.
//!
//! Servers accept with a multishot `Accept` on their own ring and run each connection on a
//! thread with its own ring. Stopping writes an eventfd the listener ring waits on, and shuts
//! the live sockets down so their pending receives complete.

use std::alloc::{self, Layout};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use sha2::{Digest, Sha256};

use crate::client::{
    check_ack, echo_mismatch, finish, layout_frames, pattern, stamp, stamp_frames, unexpected,
    Batching, FileSent, PingConfig, PingReport, StreamConfig, StreamReport, FILE_CHUNK_BYTES,
    RECV_CHUNK_BYTES,
};
use crate::error::TransportError;
use crate::frame::{
    self, encode_hello, Header, Kind, Mode, StreamAck, TransferHeader, TransferReply,
    TransferStatus, CONTROL_BYTES_MAX, HEADER_BYTES,
};
use crate::server::{FileSink, ServeConfig};
use crate::session::{error_frame, ServerSession, Step};
use crate::{socket, Config, TransportKind, ZeroCopy};

/// Submission queue entries per ring (a few operations are ever in flight).
const RING_ENTRIES: u32 = 64;
/// Fixed-file slots per ring.
const FIXED_FILES: u32 = 4;
/// Fixed-file slot of a connection's socket (and of a server's listener).
const SLOT_SOCKET: u32 = 0;
/// Fixed-file slot of the file a transfer reads or writes (and of a server's eventfd).
const SLOT_FILE: u32 = 1;
/// Bytes of the buffer for control frames.
const CONTROL_BUF_BYTES: usize = HEADER_BYTES + CONTROL_BYTES_MAX;
/// Operations submitted together at most.
const OPS_MAX: usize = 8;
/// A stream submits linked writes of up to this many bytes in all per `io_uring_enter`.
const CHAIN_BYTES: usize = 1 << 20;
/// A wait with nothing completing for this long fails the operation.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Alignment of registered buffers (a page).
const BUF_ALIGN: usize = 4096;
/// Most notes a client keeps.
const NOTES_MAX: usize = 8;

// Kernel ABI values `io-uring` keeps private (include/uapi/linux/io_uring.h).
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// `user_data` layout: generation (bits 40..), tag (bits 32..40), operation index (bits 0..32).
const TAG_OP: u64 = 0;
const TAG_POLL: u64 = 1;
const TAG_CANCEL: u64 = 2;

/// Whether io_uring works here: a small ring can be set up.
pub(crate) fn probe() -> Result<(), TransportError> {
    IoUring::new(8)
        .map(|_| ())
        .map_err(|e| TransportError::Unavailable {
            kind: TransportKind::IoUring,
            reason: format!("cannot set up a ring: {e}"),
        })
}

/// Page-aligned memory that is registered with a ring and never moves.
struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by one ring; access is coordinated by that ring.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// At least `len` bytes, rounded up to whole pages (the kernel refuses empty buffers).
    fn new(len: usize) -> AlignedBuf {
        let len = len.max(1).next_multiple_of(BUF_ALIGN);
        let layout = Layout::from_size_align(len, BUF_ALIGN).expect("buffer layout");
        // SAFETY: the layout has a nonzero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, BUF_ALIGN).expect("buffer layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// What one operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    /// Send all of it on the socket.
    Send,
    /// Receive into it from the socket: all of it (`exact`) or whatever arrives first.
    Recv { exact: bool },
    /// Read all of it from the file at `offset`.
    ReadFile { offset: u64 },
    /// Write all of it to the file at `offset`.
    WriteFile { offset: u64 },
}

/// One operation on a region of a registered buffer.
#[derive(Debug)]
struct Op {
    kind: OpKind,
    /// Fixed-file slot.
    file: u32,
    /// Registered buffer index.
    buf: u16,
    /// Start of the region, inside buffer `buf`.
    ptr: *mut u8,
    len: usize,
    /// Bytes transferred so far.
    done: usize,
    /// The last completion arrived (all bytes, end of stream, or the first receive).
    io_done: bool,
    /// Zero-copy notifications still to come (the buffer is busy until they do).
    notifs: u32,
    /// The peer closed, or the file ended, before `len` bytes.
    eof: bool,
    /// An entry for it is in the kernel (its completion has not arrived).
    in_flight: bool,
    /// The rest must be submitted again (a short transfer, a cancelled link, `EAGAIN`).
    resubmit: bool,
    /// Wait for readiness before the resubmission (it failed with `EAGAIN`).
    poll_first: bool,
}

impl Op {
    fn new(kind: OpKind, file: u32, buf: u16, ptr: *mut u8, len: usize) -> Op {
        Op {
            kind,
            file,
            buf,
            ptr,
            len,
            done: 0,
            io_done: len == 0,
            notifs: 0,
            eof: false,
            in_flight: false,
            resubmit: false,
            poll_first: false,
        }
    }

    fn finished(&self) -> bool {
        self.io_done && self.notifs == 0
    }

    fn verb(&self) -> &'static str {
        match self.kind {
            OpKind::Send => "send to",
            OpKind::Recv { .. } => "recv from",
            OpKind::ReadFile { .. } => "read file for",
            OpKind::WriteFile { .. } => "write file from",
        }
    }
}

/// A ring, its registered buffers and its fixed-file table; used by one thread.
struct Ring {
    ring: IoUring,
    bufs: Vec<AlignedBuf>,
    /// The configured policy.
    zero_copy: ZeroCopy,
    /// For the current connection: frames of at least this many bytes use `SendZc`.
    zero_copy_from: Option<usize>,
    /// The kernel refused `SendZc` once: never again on this ring.
    zero_copy_refused: bool,
    /// Zero-copy notifications that said the kernel copied after all (e.g. on loopback).
    zc_copied: u64,
    zc_sent: u64,
    /// Short transfers resubmitted, and linked entries cancelled behind one and requeued.
    short_transfers: u64,
    relinked: u64,
    notes: Vec<String>,
    spin: Duration,
    generation: u64,
    /// Operations may still be in flight after a failed cancel: never free the buffers.
    poisoned: bool,
    owner: ThreadId,
}

impl Ring {
    fn new(config: &Config) -> Result<Ring, TransportError> {
        let unavailable = |e: io::Error| TransportError::Unavailable {
            kind: TransportKind::IoUring,
            reason: format!("cannot set up a ring: {e}"),
        };
        // DEFER_TASKRUN runs completion work only when this thread asks (entering the kernel),
        // never through an interrupt; TASKRUN_FLAG tells a spinning thread when to ask.
        let mut builder = IoUring::builder();
        builder.setup_single_issuer().setup_defer_taskrun();
        if config.busy_poll_ns > 0 {
            builder.setup_taskrun_flag();
        }
        let ring = match builder.build(RING_ENTRIES) {
            Ok(ring) => ring,
            // Kernels before 6.1 know neither flag: a plain ring works the same, a bit slower.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                IoUring::new(RING_ENTRIES).map_err(unavailable)?
            }
            Err(e) => return Err(unavailable(e)),
        };
        ring.submitter()
            .register_files_sparse(FIXED_FILES)
            .map_err(|e| TransportError::io("io_uring: register fixed files", e))?;
        Ok(Ring {
            ring,
            bufs: Vec::new(),
            zero_copy: config.zero_copy,
            zero_copy_from: None,
            zero_copy_refused: false,
            zc_copied: 0,
            zc_sent: 0,
            short_transfers: 0,
            relinked: 0,
            notes: Vec::new(),
            spin: Duration::from_nanos(config.busy_poll_ns),
            generation: 0,
            poisoned: false,
            owner: thread::current().id(),
        })
    }

    fn note(&mut self, note: String) {
        if self.notes.len() < NOTES_MAX && !self.notes.contains(&note) {
            tracing::warn!("{note}");
            self.notes.push(note);
        }
    }

    /// Makes sure buffers of at least these sizes are registered, reallocating all of them
    /// when one is too small (never while operations are in flight: `run` drains them).
    fn ensure_buffers(&mut self, sizes: &[usize]) -> Result<(), TransportError> {
        let fits =
            self.bufs.len() == sizes.len() && self.bufs.iter().zip(sizes).all(|(b, &s)| b.len >= s);
        if fits {
            return Ok(());
        }
        assert!(
            !self.poisoned,
            "reallocating buffers operations may still use"
        );
        if !self.bufs.is_empty() {
            self.ring
                .submitter()
                .unregister_buffers()
                .map_err(|e| TransportError::io("io_uring: unregister buffers", e))?;
        }
        let sizes: Vec<usize> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| s.max(self.bufs.get(i).map_or(0, |b| b.len)))
            .collect();
        self.bufs = sizes.iter().map(|&s| AlignedBuf::new(s)).collect();
        let iovecs: Vec<libc::iovec> = self
            .bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.ptr.as_ptr().cast(),
                iov_len: b.len,
            })
            .collect();
        // SAFETY: the buffers live in `self.bufs` until they are unregistered or the ring is
        // dropped (after its operations are drained).
        unsafe { self.ring.submitter().register_buffers(&iovecs) }.map_err(|e| {
            let mib = sizes.iter().sum::<usize>() >> 20;
            TransportError::io(
                format!("io_uring: register {mib} MiB of buffers (is RLIMIT_MEMLOCK too low?)"),
                e,
            )
        })
    }

    fn buf_ptr(&self, idx: usize) -> *mut u8 {
        self.bufs[idx].ptr.as_ptr()
    }

    /// Buffer `idx` as a mutable slice. No operation may be using it.
    fn buf_mut(&mut self, idx: usize, len: usize) -> &mut [u8] {
        assert!(len <= self.bufs[idx].len);
        // SAFETY: the buffer is `len` bytes or more, and `run` returns only when no operation
        // is in flight, so nothing else reads or writes it now.
        unsafe { std::slice::from_raw_parts_mut(self.bufs[idx].ptr.as_ptr(), len) }
    }

    /// `len` bytes of buffer `idx` from `offset`. No operation may be writing it.
    fn buf(&self, idx: usize, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.bufs[idx].len);
        // SAFETY: in bounds, and no operation is in flight (see `buf_mut`).
        unsafe { std::slice::from_raw_parts(self.bufs[idx].ptr.as_ptr().add(offset), len) }
    }

    fn set_file(&mut self, slot: u32, fd: RawFd) -> Result<(), TransportError> {
        self.ring
            .submitter()
            .register_files_update(slot, &[fd])
            .map(|_| ())
            .map_err(|e| TransportError::io("io_uring: register a fixed file", e))
    }

    fn clear_file(&mut self, slot: u32) {
        // Releases the ring's reference, so closing the descriptor really closes it.
        let _ = self.ring.submitter().register_files_update(slot, &[-1]);
    }

    fn push(&mut self, entry: &squeue::Entry) -> Result<(), TransportError> {
        loop {
            // SAFETY: every entry points into `self.bufs` (or at nothing), which outlives the
            // operation: `run` waits for every operation it started.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring
                .submit()
                .map_err(|e| TransportError::io("io_uring submit", e))?;
        }
    }

    fn user_data(&self, tag: u64, idx: usize) -> u64 {
        (self.generation << 40) | (tag << 32) | idx as u64
    }

    /// Queues the rest of `op` (index `idx`), with `IO_LINK` when the next entry must wait
    /// for it to finish.
    fn push_op(&mut self, idx: usize, op: &mut Op, link: bool) -> Result<(), TransportError> {
        assert!(op.done < op.len);
        assert!(!op.in_flight, "one entry per operation at a time");
        let remaining = (op.len - op.done).min(u32::MAX as usize);
        // SAFETY: `done < len`, so the pointer stays inside the operation's region.
        let ptr = unsafe { op.ptr.add(op.done) };
        let fd = types::Fixed(op.file);
        let len = remaining as u32;
        if op.poll_first {
            // A non-blocking descriptor said EAGAIN: wait for readiness, then retry, in order.
            let events = match op.kind {
                OpKind::Send | OpKind::WriteFile { .. } => libc::POLLOUT,
                _ => libc::POLLIN,
            };
            let poll = opcode::PollAdd::new(fd, events as u32)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(self.user_data(TAG_POLL, idx));
            self.push(&poll)?;
            op.poll_first = false;
        }
        let entry = match op.kind {
            OpKind::Send => match self.zero_copy_from {
                Some(min) if remaining >= min && !self.zero_copy_refused => {
                    self.zc_sent += 1;
                    opcode::SendZc::new(fd, ptr, len)
                        .buf_index(Some(op.buf))
                        .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
                        .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
                        .build()
                }
                _ => opcode::WriteFixed::new(fd, ptr, len, op.buf)
                    .offset(u64::MAX)
                    .build(),
            },
            OpKind::Recv { .. } => opcode::ReadFixed::new(fd, ptr, len, op.buf)
                .offset(u64::MAX)
                .build(),
            OpKind::ReadFile { offset } => opcode::ReadFixed::new(fd, ptr, len, op.buf)
                .offset(offset + op.done as u64)
                .build(),
            OpKind::WriteFile { offset } => opcode::WriteFixed::new(fd, ptr, len, op.buf)
                .offset(offset + op.done as u64)
                .build(),
        };
        let mut entry = entry.user_data(self.user_data(TAG_OP, idx));
        if link {
            entry = entry.flags(squeue::Flags::IO_LINK);
        }
        self.push(&entry)?;
        op.in_flight = true;
        op.resubmit = false;
        Ok(())
    }

    /// Runs the operations to completion, resubmitting short transfers. Independent
    /// operations (`Chain::No`) go in one submission and run at once. A chain (`Chain::Yes`,
    /// sends on one socket) is linked, so the kernel starts each only after the one before
    /// completes, and the byte stream stays in order: several writes, one `io_uring_enter`.
    /// On an error, whatever is still in flight is cancelled and drained first.
    fn run(&mut self, ops: &mut [Op], peer: &str, chain: Chain) -> Result<(), TransportError> {
        assert!(ops.len() <= OPS_MAX);
        assert_eq!(
            self.owner,
            thread::current().id(),
            "a ring is used by its own thread"
        );
        self.generation += 1;
        for op in ops.iter_mut() {
            op.resubmit = !op.finished();
        }
        let mut result = self.resubmit(ops, chain);
        if result.is_ok() {
            result = self.complete(ops, peer, chain);
        }
        if result.is_err() {
            self.drain(ops);
        }
        result
    }

    /// Queues every operation marked for resubmission. A chain is requeued only once none of
    /// it is in flight (after a short write, the rest of the chain comes back cancelled), as
    /// a new chain in the same order.
    fn resubmit(&mut self, ops: &mut [Op], chain: Chain) -> Result<(), TransportError> {
        if chain == Chain::Yes && ops.iter().any(|op| op.in_flight) {
            return Ok(());
        }
        let marked: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].resubmit).collect();
        for (n, &idx) in marked.iter().enumerate() {
            let link = chain == Chain::Yes && n + 1 < marked.len();
            self.push_op(idx, &mut ops[idx], link)?;
        }
        Ok(())
    }

    fn complete(&mut self, ops: &mut [Op], peer: &str, chain: Chain) -> Result<(), TransportError> {
        // Busy polling: the kernel queues completion work for this thread and raises
        // IORING_SQ_TASKRUN (no interrupt, no wake-up); we run it with a non-blocking enter.
        // Only after `spin` without progress do we sleep in the kernel.
        let mut spin_from = (!self.spin.is_zero()).then(Instant::now);
        while !ops.iter().all(Op::finished) {
            match spin_from {
                Some(from) => {
                    let ready = !self.ring.completion().is_empty();
                    let queued = !self.ring.submission().is_empty();
                    if !ready && (queued || self.ring.submission().taskrun()) {
                        self.ring
                            .submit()
                            .map_err(|e| TransportError::io("io_uring submit", e))?;
                    }
                    if self.ring.completion().is_empty() {
                        if from.elapsed() >= self.spin {
                            spin_from = None;
                        } else {
                            // Let any other runnable thread on this CPU (the peer, say) go
                            // first: spinning must never starve the work it waits for.
                            // SAFETY: no preconditions.
                            unsafe { libc::sched_yield() };
                        }
                        continue;
                    }
                    spin_from = Some(Instant::now());
                }
                None => self.wait(1, IDLE_TIMEOUT, peer)?,
            }
            self.reap(ops, peer)?;
            self.resubmit(ops, chain)?;
        }
        Ok(())
    }

    /// Submits what is queued and waits for `want` completions, at most `timeout`.
    fn wait(&mut self, want: usize, timeout: Duration, peer: &str) -> Result<(), TransportError> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        loop {
            match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                    return Err(TransportError::TimedOut(format!(
                        "io_uring {peer}: nothing completed in {timeout:?}"
                    )))
                }
                // Completions are pending but the queue is busy: reap them first.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
                Err(e) => return Err(TransportError::io("io_uring wait", e)),
            }
        }
    }

    /// Handles every completion waiting in the queue.
    fn reap(&mut self, ops: &mut [Op], peer: &str) -> Result<(), TransportError> {
        let mut cqes = [(0u64, 0i32, 0u32); 16];
        loop {
            let mut n = 0;
            for cqe in self.ring.completion().take(cqes.len()) {
                cqes[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            // Every completion taken must be accounted for, even after an error, or `drain`
            // would wait for it.
            let mut first_err = None;
            for &(user_data, res, flags) in &cqes[..n] {
                if let Err(e) = self.handle_cqe(ops, user_data, res, flags, peer) {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
    }

    fn handle_cqe(
        &mut self,
        ops: &mut [Op],
        user_data: u64,
        res: i32,
        flags: u32,
        peer: &str,
    ) -> Result<(), TransportError> {
        if user_data >> 40 != self.generation {
            return Ok(()); // A straggler from an operation already given up on.
        }
        let tag = (user_data >> 32) & 0xff;
        let idx = (user_data & 0xffff_ffff) as usize;
        if tag == TAG_CANCEL {
            return Ok(());
        }
        let Some(op) = ops.get_mut(idx) else {
            return Err(TransportError::Protocol(format!(
                "io_uring completion for unknown operation {idx}"
            )));
        };
        if tag == TAG_POLL {
            // The linked retry carries the outcome; a failed poll cancels it with an error.
            return Ok(());
        }
        if cqueue::notif(flags) {
            assert!(op.notifs > 0, "zero-copy notification nobody waits for");
            op.notifs -= 1;
            if res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                self.zc_copied += 1;
            }
            return Ok(());
        }
        if cqueue::more(flags) {
            op.notifs += 1;
        }
        op.in_flight = false;
        let verb = op.verb();
        let context = || format!("io_uring {verb} {peer}");
        match res {
            0 if matches!(op.kind, OpKind::Send | OpKind::WriteFile { .. }) => {
                op.io_done = true;
                Err(TransportError::io(
                    context(),
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            0 => {
                op.eof = true;
                op.io_done = true;
                Ok(())
            }
            n if n > 0 => {
                op.done += n as usize;
                assert!(op.done <= op.len, "the kernel moved more than asked");
                let complete = match op.kind {
                    OpKind::Recv { exact: false } => true,
                    _ => op.done == op.len,
                };
                if complete {
                    op.io_done = true;
                } else {
                    op.resubmit = true; // A short read or write: ask for the rest.
                    self.short_transfers += 1;
                }
                Ok(())
            }
            // Linked after an operation that came up short: it never ran; run it again.
            e if e == -libc::ECANCELED && !op.io_done => {
                op.resubmit = true;
                self.relinked += 1;
                Ok(())
            }
            e if e == -libc::EAGAIN => {
                op.resubmit = true;
                op.poll_first = true;
                Ok(())
            }
            e if e == -libc::EINTR => {
                op.resubmit = true;
                Ok(())
            }
            e if (e == -libc::EOPNOTSUPP || e == -libc::EINVAL)
                && op.kind == OpKind::Send
                && self.zero_copy_from.is_some()
                && !self.zero_copy_refused =>
            {
                self.zero_copy_refused = true;
                self.note(format!(
                    "io_uring: the kernel refused SendZc ({}), using plain sends",
                    io::Error::from_raw_os_error(-e)
                ));
                op.resubmit = true;
                Ok(())
            }
            e => {
                op.io_done = true;
                Err(TransportError::errno(context(), e))
            }
        }
    }

    /// After an error: cancel what is in flight and wait until it has all completed, so no
    /// operation outlives this call. If that takes too long, the buffers are never freed.
    fn drain(&mut self, ops: &mut [Op]) {
        for op in ops.iter_mut() {
            op.resubmit = false;
            if !op.in_flight {
                op.io_done = true; // Never to be submitted again.
            }
        }
        let outstanding: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].in_flight).collect();
        for &idx in &outstanding {
            let cancel = opcode::AsyncCancel::new(self.user_data(TAG_OP, idx))
                .build()
                .user_data(self.user_data(TAG_CANCEL, idx));
            if self.push(&cancel).is_err() {
                self.poisoned = true;
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ops.iter().any(|op| !op.finished()) {
            let now = Instant::now();
            if now >= deadline || self.wait(1, deadline - now, "drain").is_err() {
                self.poisoned = true;
                return;
            }
            let cqes: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (user_data, _res, flags) in cqes {
                if user_data >> 40 != self.generation || (user_data >> 32) & 0xff != TAG_OP {
                    continue;
                }
                let Some(op) = ops.get_mut((user_data & 0xffff_ffff) as usize) else {
                    continue;
                };
                if cqueue::notif(flags) {
                    op.notifs = op.notifs.saturating_sub(1);
                    continue;
                }
                if cqueue::more(flags) {
                    op.notifs += 1;
                }
                // Any final result (bytes, an error, ECANCELED) ends the operation now.
                op.in_flight = false;
                op.io_done = true;
            }
        }
    }
}

/// Whether a run's operations are a chain that must run in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// Independent operations, all at once.
    No,
    /// Sends on one socket, each after the one before.
    Yes,
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.poisoned {
            // The kernel may still write into these pages: leak them rather than reuse them.
            std::mem::forget(std::mem::take(&mut self.bufs));
        }
    }
}

/// A connection's socket, registered in a ring's fixed-file table while it lives.
struct Conn {
    stream: TcpStream,
    peer: String,
}

impl Conn {
    fn open(ring: &mut Ring, stream: TcpStream, peer: String) -> Result<Conn, TransportError> {
        socket::set_blocking(stream.as_raw_fd())
            .map_err(|e| TransportError::io(format!("io_uring socket to {peer}"), e))?;
        ring.set_file(SLOT_SOCKET, stream.as_raw_fd())?;
        ring.zero_copy_from = stream
            .peer_addr()
            .ok()
            .and_then(|a| ring.zero_copy.bytes_min_for(a.ip()));
        Ok(Conn { stream, peer })
    }

    fn close(self, ring: &mut Ring) {
        ring.clear_file(SLOT_SOCKET);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Buffer indices of a client ring.
const BUF_SEND_0: usize = 0;
const BUF_SEND_1: usize = 1;
const BUF_RECV: usize = 2;
const BUF_CONTROL: usize = 3;

/// An io_uring client. Its ring is made on first use, by the thread that uses it.
pub(crate) struct Client {
    config: Config,
    ring: Option<Ring>,
}

impl Client {
    pub(crate) fn new(config: &Config) -> Result<Client, TransportError> {
        probe()?;
        Ok(Client {
            config: *config,
            ring: None,
        })
    }

    /// What the backend had to work around (a refused SendZc, copies the kernel made anyway).
    pub(crate) fn notes(&self) -> Vec<String> {
        let Some(ring) = &self.ring else {
            return Vec::new();
        };
        let mut notes = ring.notes.clone();
        if ring.zc_copied > 0 {
            notes.push(format!(
                "io_uring: the kernel copied {} of {} zero-copy sends (loopback copies always)",
                ring.zc_copied, ring.zc_sent
            ));
        }
        notes
    }

    /// The ring, with buffers of at least these sizes: send 0, send 1, receive, control.
    fn ring(&mut self, sizes: [usize; 3]) -> Result<&mut Ring, TransportError> {
        let here = thread::current().id();
        if self.ring.as_ref().is_some_and(|r| r.owner != here) {
            self.ring = None; // Moved to another thread: a ring serves only its maker.
        }
        if self.ring.is_none() {
            self.ring = Some(Ring::new(&self.config)?);
        }
        let ring = self.ring.as_mut().expect("just made");
        ring.ensure_buffers(&[sizes[0], sizes[1], sizes[2], CONTROL_BUF_BYTES])?;
        Ok(ring)
    }

    pub(crate) fn stream(
        &mut self,
        to: SocketAddr,
        config: &StreamConfig,
    ) -> Result<StreamReport, TransportError> {
        let batching = Batching::new(config.message_bytes, self.config.batch_bytes);
        let slab = batching.write_bytes_max() * chain_writes(batching);
        let transport = self.config;
        let ring = self.ring([slab, 0, 0])?;
        let conn = connect(ring, to, &transport)?;
        let result = stream_on(ring, &conn, config, batching);
        conn.close(ring);
        result
    }

    pub(crate) fn ping(
        &mut self,
        to: SocketAddr,
        config: &PingConfig,
    ) -> Result<PingReport, TransportError> {
        let frame_bytes = HEADER_BYTES + config.message_bytes;
        let transport = self.config;
        let ring = self.ring([frame_bytes, 0, frame_bytes])?;
        let conn = connect(ring, to, &transport)?;
        let result = ping_on(ring, &conn, config);
        conn.close(ring);
        result
    }

    pub(crate) fn send_file(
        &mut self,
        to: SocketAddr,
        header: &TransferHeader,
        file: &mut File,
    ) -> Result<FileSent, TransportError> {
        let chunk = HEADER_BYTES + FILE_CHUNK_BYTES;
        let transport = self.config;
        let ring = self.ring([chunk, chunk, 0])?;
        let conn = connect(ring, to, &transport)?;
        let result = send_file_on(ring, &conn, header, file);
        ring.clear_file(SLOT_FILE);
        conn.close(ring);
        result
    }
}

fn connect(ring: &mut Ring, to: SocketAddr, config: &Config) -> Result<Conn, TransportError> {
    let stream = socket::connect(to, config)
        .map_err(|e| TransportError::io(format!("io_uring connect to {to}"), e))?;
    Conn::open(ring, stream, to.to_string())
}

/// Sends bytes from the control buffer (copied there first).
fn send_control(ring: &mut Ring, conn: &Conn, bytes: &[u8]) -> Result<(), TransportError> {
    assert!(bytes.len() <= CONTROL_BUF_BYTES);
    ring.buf_mut(BUF_CONTROL, bytes.len())
        .copy_from_slice(bytes);
    let ptr = ring.buf_ptr(BUF_CONTROL);
    let mut ops = [Op::new(
        OpKind::Send,
        SLOT_SOCKET,
        BUF_CONTROL as u16,
        ptr,
        bytes.len(),
    )];
    ring.run(&mut ops, &conn.peer, Chain::No)
}

/// Receives exactly `len` bytes into the control buffer; `Ok(false)` if the peer closed first.
fn recv_control_exact(
    ring: &mut Ring,
    conn: &Conn,
    offset: usize,
    len: usize,
) -> Result<bool, TransportError> {
    assert!(offset + len <= CONTROL_BUF_BYTES);
    // SAFETY: in bounds of the control buffer.
    let ptr = unsafe { ring.buf_ptr(BUF_CONTROL).add(offset) };
    let mut ops = [Op::new(
        OpKind::Recv { exact: true },
        SLOT_SOCKET,
        BUF_CONTROL as u16,
        ptr,
        len,
    )];
    ring.run(&mut ops, &conn.peer, Chain::No)?;
    Ok(!ops[0].eof)
}

/// Reads one control frame.
fn read_control(
    ring: &mut Ring,
    conn: &Conn,
    waiting_for: &str,
) -> Result<(Kind, Vec<u8>), TransportError> {
    let closed =
        || TransportError::Protocol(format!("peer closed while we waited for {waiting_for}"));
    if !recv_control_exact(ring, conn, 0, HEADER_BYTES)? {
        return Err(closed());
    }
    let bytes: [u8; HEADER_BYTES] = ring
        .buf(BUF_CONTROL, 0, HEADER_BYTES)
        .try_into()
        .expect("8");
    let header = Header::decode(bytes)?;
    if header.kind == Kind::Data {
        return Err(TransportError::Protocol(format!(
            "Data frame while waiting for {waiting_for}"
        )));
    }
    let len = header.len as usize;
    if !recv_control_exact(ring, conn, HEADER_BYTES, len)? {
        return Err(closed());
    }
    Ok((
        header.kind,
        ring.buf(BUF_CONTROL, HEADER_BYTES, len).to_vec(),
    ))
}

/// Writes per submission when streaming: up to [`CHAIN_BYTES`] in all.
fn chain_writes(batching: Batching) -> usize {
    (CHAIN_BYTES / batching.write_bytes_max()).clamp(1, OPS_MAX)
}

fn stream_on(
    ring: &mut Ring,
    conn: &Conn,
    config: &StreamConfig,
    batching: Batching,
) -> Result<StreamReport, TransportError> {
    let hello = frame::frame(
        Kind::Hello,
        &encode_hello(Mode::Sink {
            digest: config.digest,
        }),
    );
    send_control(ring, conn, &hello)?;
    let pattern = pattern(config.message_bytes);
    let mut hasher = config.digest.then(Sha256::new);
    let start = Instant::now();
    let deadline = start + config.duration_max;
    let mut sent = 0u64;
    // The writes are the tokio baseline's (small messages coalesced up to `batch_bytes`, a
    // large one alone), laid out once and re-stamped; but several go per `io_uring_enter`, as
    // a linked chain. `run` returns only when the kernel is done with the buffer (zero-copy
    // notifications included), so it can be re-stamped at once.
    let write_bytes = batching.write_bytes_max();
    let writes = chain_writes(batching);
    let fpw = batching.frames_per_write;
    layout_frames(
        ring.buf_mut(BUF_SEND_0, write_bytes * writes),
        &pattern,
        fpw * writes,
    );
    let mut ops = Vec::with_capacity(writes);
    while sent < config.messages_max {
        ops.clear();
        let mut stamped = 0u64;
        for w in 0..writes {
            let left = config.messages_max - sent - stamped;
            if left == 0 {
                break;
            }
            let count = left.min(fpw as u64) as usize;
            let offset = w * write_bytes;
            let out = &mut ring.buf_mut(BUF_SEND_0, write_bytes * writes)[offset..];
            let first = sent + stamped;
            let len = stamp_frames(out, config.message_bytes, first, count, hasher.as_mut());
            // SAFETY: `offset + len` is inside the buffer sized above.
            let ptr = unsafe { ring.buf_ptr(BUF_SEND_0).add(offset) };
            ops.push(Op::new(
                OpKind::Send,
                SLOT_SOCKET,
                BUF_SEND_0 as u16,
                ptr,
                len,
            ));
            stamped += count as u64;
        }
        ring.run(&mut ops, &conn.peer, Chain::Yes)?;
        sent += stamped;
        if Instant::now() >= deadline {
            break;
        }
    }
    send_control(ring, conn, &frame::frame(Kind::End, &[]))?;
    let (kind, payload) = read_control(ring, conn, "StreamAck")?;
    let elapsed = start.elapsed();
    if kind != Kind::StreamAck {
        return Err(unexpected(kind, &payload, "StreamAck"));
    }
    let ack = StreamAck::decode(&payload)?;
    let payload_bytes = sent * config.message_bytes as u64;
    check_ack(&ack, sent, payload_bytes, hasher.map(finish))?;
    Ok(StreamReport {
        messages: sent,
        payload_bytes,
        elapsed,
    })
}

fn ping_on(
    ring: &mut Ring,
    conn: &Conn,
    config: &PingConfig,
) -> Result<PingReport, TransportError> {
    let hello = frame::frame(Kind::Hello, &encode_hello(Mode::Echo));
    send_control(ring, conn, &hello)?;
    let frame_bytes = HEADER_BYTES + config.message_bytes;
    let out = ring.buf_mut(BUF_SEND_0, frame_bytes);
    out[..HEADER_BYTES].copy_from_slice(&Header::new(Kind::Data, config.message_bytes).encode());
    out[HEADER_BYTES..].copy_from_slice(&pattern(config.message_bytes));
    let mut rtts_ns = Vec::with_capacity(config.round_trips_max.min(1 << 20) as usize);
    let deadline = Instant::now() + config.duration_max;
    for i in 0..config.round_trips_max {
        if config.verify {
            stamp(
                &mut ring.buf_mut(BUF_SEND_0, frame_bytes)[HEADER_BYTES..],
                i,
            );
        }
        let start = Instant::now();
        // The send and the receive of the echo go in one submission.
        let mut ops = [
            Op::new(
                OpKind::Send,
                SLOT_SOCKET,
                BUF_SEND_0 as u16,
                ring.buf_ptr(BUF_SEND_0),
                frame_bytes,
            ),
            Op::new(
                OpKind::Recv { exact: true },
                SLOT_SOCKET,
                BUF_RECV as u16,
                ring.buf_ptr(BUF_RECV),
                frame_bytes,
            ),
        ];
        ring.run(&mut ops, &conn.peer, Chain::No)?;
        let end = Instant::now();
        let sent = ring.buf(BUF_SEND_0, 0, frame_bytes);
        let back = ring.buf(BUF_RECV, 0, ops[1].done);
        if ops[1].eof {
            return Err(crate::client::peer_error(back).unwrap_or_else(|| {
                TransportError::Protocol("peer closed while we waited for an echo".into())
            }));
        }
        let same = if config.verify {
            back == sent
        } else {
            back[..HEADER_BYTES] == sent[..HEADER_BYTES]
        };
        if !same {
            return Err(echo_mismatch(sent, back));
        }
        rtts_ns.push((end - start).as_nanos() as u64);
        if end >= deadline {
            break;
        }
    }
    Ok(PingReport { rtts_ns })
}

fn send_file_on(
    ring: &mut Ring,
    conn: &Conn,
    header: &TransferHeader,
    file: &mut File,
) -> Result<FileSent, TransportError> {
    let mut opening = frame::frame(Kind::Hello, &encode_hello(Mode::File));
    frame::encode_frame(Kind::TransferHeader, &header.encode(), &mut opening);
    send_control(ring, conn, &opening)?;
    let reply = read_reply(ring, conn)?;
    if reply.status != TransferStatus::Ready {
        return Ok(FileSent {
            reply,
            digest: [0; 32],
        });
    }
    ring.set_file(SLOT_FILE, file.as_raw_fd())?;
    let mut hasher = Sha256::new();
    let size = header.size_bytes;
    let chunk_len = |offset: u64| (size - offset).min(FILE_CHUNK_BYTES as u64) as usize;
    let read_op = |ring: &Ring, buf: usize, offset: u64| {
        // SAFETY: the header fits before the chunk in every send buffer.
        let ptr = unsafe { ring.buf_ptr(buf).add(HEADER_BYTES) };
        Op::new(
            OpKind::ReadFile { offset },
            SLOT_FILE,
            buf as u16,
            ptr,
            chunk_len(offset),
        )
    };
    let short = || {
        TransportError::io(
            "io_uring read the file being sent",
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than announced",
            ),
        )
    };
    // Read chunk 0; then send chunk i while reading chunk i + 1 into the other buffer.
    let mut offset = 0u64;
    let mut buf = BUF_SEND_0;
    if size > 0 {
        let mut ops = [read_op(ring, buf, 0)];
        ring.run(&mut ops, &conn.peer, Chain::No)?;
        if ops[0].eof {
            return Err(short());
        }
    }
    while offset < size {
        let len = chunk_len(offset);
        let frame = ring.buf_mut(buf, HEADER_BYTES + len);
        frame[..HEADER_BYTES].copy_from_slice(&Header::new(Kind::Data, len).encode());
        hasher.update(&frame[HEADER_BYTES..]);
        let next = offset + len as u64;
        let other = if buf == BUF_SEND_0 {
            BUF_SEND_1
        } else {
            BUF_SEND_0
        };
        let send = Op::new(
            OpKind::Send,
            SLOT_SOCKET,
            buf as u16,
            ring.buf_ptr(buf),
            HEADER_BYTES + len,
        );
        if next < size {
            let mut ops = [send, read_op(ring, other, next)];
            ring.run(&mut ops, &conn.peer, Chain::No)?;
            if ops[1].eof {
                return Err(short());
            }
        } else {
            ring.run(&mut [send], &conn.peer, Chain::No)?;
        }
        offset = next;
        buf = other;
    }
    let digest = finish(hasher);
    send_control(ring, conn, &frame::frame(Kind::TransferEnd, &digest))?;
    let reply = read_reply(ring, conn)?;
    Ok(FileSent { reply, digest })
}

fn read_reply(ring: &mut Ring, conn: &Conn) -> Result<TransferReply, TransportError> {
    let (kind, payload) = read_control(ring, conn, "TransferReply")?;
    if kind != Kind::TransferReply {
        return Err(unexpected(kind, &payload, "TransferReply"));
    }
    Ok(TransferReply::decode(&payload)?)
}

/// Live connections of a server: their descriptors, so that stopping can shut them down.
type Live = Arc<Mutex<Vec<(u64, RawFd)>>>;

/// A running io_uring server.
pub(crate) struct ServerHandle {
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to an eventfd we own.
        let _ = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), 8) };
        let _ = thread.join();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

pub(crate) fn serve(
    listener: TcpListener,
    config: &Config,
    serve: ServeConfig,
) -> Result<ServerHandle, TransportError> {
    // SAFETY: eventfd has no memory-safety preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(TransportError::io(
            "io_uring server: eventfd",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor nothing else owns.
    let stop = unsafe { OwnedFd::from_raw_fd(fd) };
    let stop_for_thread = stop
        .try_clone()
        .map_err(|e| TransportError::io("io_uring server: eventfd", e))?;
    let config = *config;
    let thread = thread::Builder::new()
        .name("sovra-uring-listen".into())
        .spawn(move || {
            if let Err(e) = listen_loop(&listener, &stop_for_thread, &config, &serve) {
                tracing::error!("io_uring server: {e}");
                eprintln!("sovra-transport: io_uring server: {e}");
            }
        })
        .map_err(|e| TransportError::io("io_uring server: start the listener thread", e))?;
    Ok(ServerHandle {
        stop,
        thread: Some(thread),
    })
}

/// Everything the listener's loop reacts to.
enum ListenEvent {
    /// A new connection; `more`: the multishot accept stays armed.
    Accepted {
        fd: RawFd,
        more: bool,
    },
    /// The accept failed (and is no longer armed).
    AcceptFailed(i32),
    Stop,
}

fn listen_loop(
    listener: &TcpListener,
    stop: &OwnedFd,
    config: &Config,
    serve: &ServeConfig,
) -> Result<(), TransportError> {
    let mut ring = Ring::new(config)?;
    ring.ensure_buffers(&[8])?;
    ring.set_file(SLOT_SOCKET, listener.as_raw_fd())?;
    ring.set_file(SLOT_FILE, stop.as_raw_fd())?;
    let live: Live = Arc::new(Mutex::new(Vec::new()));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    const ACCEPT: u64 = 1;
    const STOP: u64 = 2;
    let accept = opcode::AcceptMulti::new(types::Fixed(SLOT_SOCKET))
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT);
    ring.push(&accept)?;
    let stop_read = opcode::ReadFixed::new(types::Fixed(SLOT_FILE), ring.buf_ptr(0), 8, 0)
        .offset(u64::MAX)
        .build()
        .user_data(STOP);
    ring.push(&stop_read)?;
    'serve: loop {
        loop {
            match ring.ring.submitter().submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(TransportError::io("io_uring listener wait", e)),
            }
        }
        let events: Vec<ListenEvent> = ring
            .ring
            .completion()
            .map(|c| match (c.user_data(), c.result()) {
                (STOP, _) => ListenEvent::Stop,
                (_, fd) if fd >= 0 => ListenEvent::Accepted {
                    fd,
                    more: cqueue::more(c.flags()),
                },
                (_, e) => ListenEvent::AcceptFailed(e),
            })
            .collect();
        for event in events {
            match event {
                ListenEvent::Stop => break 'serve,
                ListenEvent::AcceptFailed(e) => {
                    // EMFILE and friends: keep the connections we have, try again shortly.
                    tracing::warn!("io_uring accept: {}", io::Error::from_raw_os_error(-e));
                    thread::sleep(Duration::from_millis(10));
                    ring.push(&accept)?;
                }
                ListenEvent::Accepted { fd, more } => {
                    if !more {
                        ring.push(&accept)?; // The kernel stopped the multishot: arm it again.
                    }
                    // SAFETY: a new descriptor from accept, owned from here on.
                    let stream = unsafe { TcpStream::from_raw_fd(fd) };
                    threads.retain(|t| !t.is_finished());
                    let mut live_now = live.lock().expect("live list");
                    if live_now.len() >= serve.connections_max {
                        drop(live_now);
                        refuse(stream);
                        continue;
                    }
                    next_id += 1;
                    live_now.push((next_id, fd));
                    drop(live_now);
                    let (live_conn, config, serve, id) =
                        (live.clone(), *config, serve.clone(), next_id);
                    let spawned = thread::Builder::new()
                        .name("sovra-uring-conn".into())
                        .spawn(move || connection(stream, id, &live_conn, &config, &serve));
                    match spawned {
                        Ok(handle) => threads.push(handle),
                        Err(e) => {
                            tracing::warn!("io_uring server: no thread for a connection: {e}");
                            live.lock()
                                .expect("live list")
                                .retain(|&(i, _)| i != next_id);
                        }
                    }
                }
            }
        }
    }
    // Stop: wake every connection by shutting its socket down, then wait for them.
    for &(_, fd) in live.lock().expect("live list").iter() {
        // SAFETY: the fd stays open while it is in the list (removed before closing).
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    for thread in threads {
        let _ = thread.join();
    }
    ring.clear_file(SLOT_SOCKET);
    ring.clear_file(SLOT_FILE);
    Ok(())
}

fn refuse(mut stream: TcpStream) {
    use std::io::Write;
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(&error_frame("too many connections"));
}

/// Buffer indices of a server connection's ring.
const CONN_BUF_RECV: usize = 0;
const CONN_BUF_CONTROL: usize = 1;

fn connection(stream: TcpStream, id: u64, live: &Live, config: &Config, serve: &ServeConfig) {
    let fd = stream.as_raw_fd();
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "a client".to_string(), |a| a.to_string());
    if let Err(e) = serve_connection(stream, id, config, serve, &peer) {
        tracing::debug!("io_uring connection {id} from {peer}: {e}");
    }
    // Out of the list before the descriptor closes, so a stop never shuts down a reused fd.
    live.lock()
        .expect("live list")
        .retain(|&(i, f)| (i, f) != (id, fd));
}

fn serve_connection(
    stream: TcpStream,
    id: u64,
    config: &Config,
    serve: &ServeConfig,
    peer: &str,
) -> Result<(), TransportError> {
    socket::tune_accepted(&stream).map_err(|e| TransportError::io("io_uring accept", e))?;
    let mut ring = Ring::new(config)?;
    ring.ensure_buffers(&[RECV_CHUNK_BYTES, CONTROL_BUF_BYTES])?;
    let conn = Conn::open(&mut ring, stream, peer.to_string())?;
    let receive = serve.receive.as_ref();
    let mut session = ServerSession::new(receive.map(|r| r.jurisdiction), id);
    let mut files = receive.map(|r| FileSink::new(&r.dir));
    let mut file_offset = 0u64;
    let result = (|| {
        while !session.is_closed() {
            let mut ops = [Op::new(
                OpKind::Recv { exact: false },
                SLOT_SOCKET,
                CONN_BUF_RECV as u16,
                ring.buf_ptr(CONN_BUF_RECV),
                RECV_CHUNK_BYTES,
            )];
            let n = match ring.run(&mut ops, &conn.peer, Chain::No) {
                Ok(()) => ops[0].done,
                Err(_) => 0, // Reset or shut down: the session ends as at end of stream.
            };
            if n == 0 {
                session.handle_eof();
            }
            let base = ring.buf_ptr(CONN_BUF_RECV) as usize;
            let received = ring.buf(CONN_BUF_RECV, 0, n);
            // SAFETY: `received` stays valid and unchanged until the next receive, which only
            // starts after this loop iteration; the steps below only read it.
            let received: &[u8] = unsafe { std::slice::from_raw_parts(received.as_ptr(), n) };
            let mut input = received;
            while let Some(step) = session.handle_input(&mut input) {
                match step {
                    Step::Send(bytes) => server_send_control(&mut ring, &conn, &bytes)?,
                    Step::Close => {
                        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    }
                    Step::Create { partial_name } => {
                        let sink = files.as_mut().expect("file mode has a directory");
                        let result = sink.create(&partial_name).and_then(|()| {
                            let fd = sink.file().expect("created").as_raw_fd();
                            ring.set_file(SLOT_FILE, fd).map_err(|e| e.to_string())
                        });
                        file_offset = 0;
                        session.handle_created(result);
                    }
                    Step::Write(bytes) => {
                        let offset_in_buf = bytes.as_ptr() as usize - base;
                        // SAFETY: `bytes` lies inside the receive buffer.
                        let ptr = unsafe { ring.buf_ptr(CONN_BUF_RECV).add(offset_in_buf) };
                        let mut ops = [Op::new(
                            OpKind::WriteFile {
                                offset: file_offset,
                            },
                            SLOT_FILE,
                            CONN_BUF_RECV as u16,
                            ptr,
                            bytes.len(),
                        )];
                        match ring.run(&mut ops, "the received file", Chain::No) {
                            Ok(()) => file_offset += bytes.len() as u64,
                            Err(e) => session.handle_write_failed(&e.to_string()),
                        }
                    }
                    Step::Store {
                        partial_name,
                        final_name,
                    } => {
                        ring.clear_file(SLOT_FILE);
                        let sink = files.as_mut().expect("file mode has a directory");
                        session.handle_stored(sink.store(&partial_name, &final_name));
                    }
                    Step::Discard { partial_name } => {
                        ring.clear_file(SLOT_FILE);
                        if let Some(sink) = files.as_mut() {
                            sink.discard(&partial_name);
                        }
                    }
                }
            }
            if !input.is_empty() && !session.is_closed() {
                match session.handle_echo(input) {
                    Ok(()) => {
                        let offset_in_buf = input.as_ptr() as usize - base;
                        // SAFETY: `input` lies inside the receive buffer.
                        let ptr = unsafe { ring.buf_ptr(CONN_BUF_RECV).add(offset_in_buf) };
                        let mut ops = [Op::new(
                            OpKind::Send,
                            SLOT_SOCKET,
                            CONN_BUF_RECV as u16,
                            ptr,
                            input.len(),
                        )];
                        ring.run(&mut ops, &conn.peer, Chain::No)?;
                    }
                    Err(frame) => server_send_control(&mut ring, &conn, &frame)?,
                }
            }
        }
        Ok(())
    })();
    ring.clear_file(SLOT_FILE);
    conn.close(&mut ring);
    result
}

fn server_send_control(ring: &mut Ring, conn: &Conn, bytes: &[u8]) -> Result<(), TransportError> {
    assert!(bytes.len() <= CONTROL_BUF_BYTES);
    ring.buf_mut(CONN_BUF_CONTROL, bytes.len())
        .copy_from_slice(bytes);
    let mut ops = [Op::new(
        OpKind::Send,
        SLOT_SOCKET,
        CONN_BUF_CONTROL as u16,
        ring.buf_ptr(CONN_BUF_CONTROL),
        bytes.len(),
    )];
    ring.run(&mut ops, &conn.peer, Chain::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_transfers_are_resubmitted() {
        // A receive of 64 KiB + 1 against a peer that writes one byte at a time at first:
        // the exact receive completes in several short pieces and is resubmitted each time.
        let listener = socket::listen("127.0.0.1:0".parse().unwrap(), &Config::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let len = (64 << 10) + 1;
        let writer = thread::spawn(move || {
            use std::io::Write;
            let (mut peer, _) = listener.accept().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for b in &data[..16] {
                peer.write_all(&[*b]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
            peer.write_all(&data[16..]).unwrap();
        });
        let config = Config::default();
        let mut ring = Ring::new(&config).unwrap();
        ring.ensure_buffers(&[len]).unwrap();
        let conn = connect(&mut ring, addr, &config).unwrap();
        let mut ops = [Op::new(
            OpKind::Recv { exact: true },
            SLOT_SOCKET,
            0,
            ring.buf_ptr(0),
            len,
        )];
        ring.run(&mut ops, "test", Chain::No).unwrap();
        assert_eq!(ops[0].done, len);
        assert!(!ops[0].eof);
        let got = ring.buf(0, 0, len);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        writer.join().unwrap();
        // The peer is gone: the next exact receive ends early, as end of stream.
        let mut ops = [Op::new(
            OpKind::Recv { exact: true },
            SLOT_SOCKET,
            0,
            ring.buf_ptr(0),
            8,
        )];
        ring.run(&mut ops, "test", Chain::No).unwrap();
        assert!(ops[0].eof);
        conn.close(&mut ring);
    }

    #[test]
    fn chains_survive_short_writes() {
        // 4 KiB socket buffers: the first write of each chain comes up short, the linked ones
        // behind it come back cancelled and are requeued after the rest of it.
        let config = Config {
            socket_buffer_bytes: 4096,
            batch_bytes: 256 << 10,
            busy_poll_ns: 0,
            ..Config::default()
        };
        let server = crate::Server::start(
            TransportKind::Tokio,
            "127.0.0.1:0".parse().unwrap(),
            &config,
            crate::ServeConfig::default(),
        )
        .unwrap();
        let mut client = Client::new(&config).unwrap();
        let stream = StreamConfig {
            message_bytes: 64 << 10,
            messages_max: 200,
            duration_max: Duration::from_secs(20),
            digest: true,
        };
        client.stream(server.local_addr(), &stream).unwrap();
        let ring = client.ring.as_ref().unwrap();
        assert!(chain_writes(Batching::new(64 << 10, config.batch_bytes)) > 1);
        assert!(ring.short_transfers > 0);
        assert!(ring.relinked > 0);
    }

    #[test]
    fn errors_name_the_operation_and_peer() {
        let listener = socket::listen("127.0.0.1:0".parse().unwrap(), &Config::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config::default();
        let mut ring = Ring::new(&config).unwrap();
        ring.ensure_buffers(&[1 << 20]).unwrap();
        let conn = connect(&mut ring, addr, &config).unwrap();
        // The peer resets the connection (linger 0); sends then fail with a one-line error.
        let (peer, _) = listener.accept().unwrap();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid linger struct and its size.
        unsafe {
            libc::setsockopt(
                peer.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as u32,
            )
        };
        drop(peer);
        let mut last = None;
        for _ in 0..100 {
            let mut ops = [Op::new(
                OpKind::Send,
                SLOT_SOCKET,
                0,
                ring.buf_ptr(0),
                1 << 20,
            )];
            if let Err(e) = ring.run(&mut ops, &conn.peer, Chain::No) {
                last = Some(e.to_string());
                break;
            }
        }
        let text = last.expect("sending to a reset connection fails");
        assert!(!ring.poisoned, "the failed operation was not accounted for");
        assert!(
            text.starts_with(&format!("io_uring send to {addr}: ")),
            "{text}"
        );
        assert!(!text.contains('\n'));
        conn.close(&mut ring);
    }
}
