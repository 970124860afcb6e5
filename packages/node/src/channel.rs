//! `NativeChannel`: one thread's handle to a bounded channel shared by threads.
//!
//! A channel is a lock-free `ArrayQueue` of messages plus two semaphores that
//! count free slots and queued items (the textbook bounded buffer): a send
//! takes a slot permit, pushes, and releases an item permit; a receive takes
//! an item permit, pops, and releases a slot permit. The semaphores give the
//! channel everything the `Semaphore` has for free: FIFO waiting senders and
//! receivers across threads, cancellation, doorbell wake-ups, and a dead
//! thread's waits withdrawn and its permits returned.
//!
//! Closing closes both semaphores: senders fail from then on; receivers that
//! were waiting are withdrawn, and every receive after the close pops the
//! queue directly until it is empty. A push racing the close may land after
//! the receivers were told the channel was drained; it stays in the queue for
//! the next receive rather than being lost.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::rc::Rc;

use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};
use napi::{Env, Error, Result};
use napi_derive::napi;
use sluice_core::{Acquire, AcquireError, ArrayQueue, Semaphore, TryAcquireError};

use crate::attachment::{Attachment, Held, Primitive};
use crate::raw::{self, code, guarded, Call};
use crate::registry::Shared;
use crate::wake;

/// One message: numbers travel without allocating, everything else as bytes
/// (the TypeScript layer's codec has encoded it).
pub(crate) enum Message {
    Number(f64),
    Bytes(Box<[u8]>),
}

pub(crate) struct ChannelCore {
    /// Free places in the queue; senders wait here.
    slots: Semaphore,
    /// Messages in the queue; receivers wait here.
    items: Semaphore,
    queue: ArrayQueue<Message>,
}

/// Permits this thread holds between a granted wait and its push or pop.
#[derive(Default)]
pub(crate) struct ChannelLocal {
    slots: Held,
    items: Held,
}

impl Primitive for ChannelCore {
    type Local = ChannelLocal;

    fn detach(&self, slot: u32, local: &ChannelLocal) {
        for (semaphore, held) in [(&self.slots, &local.slots), (&self.items, &local.items)] {
            semaphore.remove_owner(slot);
            let held = held.take_all();
            if held > 0 {
                // Cannot overflow: these permits were taken from this semaphore.
                let _ = semaphore.release(held);
            }
        }
    }
}

impl ChannelCore {
    /// Pops the message an item permit guarantees. A sender that claimed an
    /// earlier position may still be copying into it (inside its native call,
    /// so only briefly): the queue's `pop` waits for that, and this loop covers
    /// the instant before the claim is visible. Once the channel is closed,
    /// receivers pop without permits, so the message may have been taken:
    /// then `None` (drained) rather than waiting forever.
    fn pop_owed(&self) -> Option<Message> {
        loop {
            if let Some(message) = self.queue.pop() {
                return Some(message);
            }
            if self.items.is_closed() {
                return self.queue.pop();
            }
            std::thread::yield_now();
        }
    }

    /// Pushes into a place a slot permit guarantees.
    fn push_owed(&self, message: Message) {
        let mut message = message;
        while let Err(back) = self.queue.push(message) {
            message = back;
            std::thread::yield_now();
        }
    }
}

type ChannelAttachment = Attachment<ChannelCore>;

/// The largest channel capacity, 2^24. A channel's queue is allocated when it
/// is made, 24 bytes a message (a `Message` and its slot's stamp), so this
/// bounds what one constructor call can take to 384 MiB and about half a
/// second; a larger buffer is a sign that the consumer cannot keep up, which
/// the backpressure is there to show. The TypeScript layer validates against it.
#[napi]
pub const MAX_CHANNEL_CAPACITY: u32 = 1 << 24;

/// Throws a `RangeError` and returns the error that says one is pending.
fn range_error(env: &Env, message: &str) -> Error {
    raw::throw_range(env.raw(), message);
    Error::new(napi::Status::PendingException, message)
}

const TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x3c8e_19f0_b26a_d471,
    upper: 0xe07b_5d93_4a1c_68f2,
};

#[napi]
pub struct NativeChannel {
    attachment: Rc<ChannelAttachment>,
}

#[napi]
impl NativeChannel {
    /// Throws a `RangeError` for a capacity outside 1..=[`MAX_CHANNEL_CAPACITY`]
    /// or whose queue cannot be allocated (never an abort).
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, capacity: u32) -> Result<Self> {
        if capacity == 0 || capacity > MAX_CHANNEL_CAPACITY {
            return Err(range_error(
                &env,
                &format!("capacity must be an integer between 1 and {MAX_CHANNEL_CAPACITY}, got {capacity}"),
            ));
        }
        let capacity = capacity as usize;
        let queue = ArrayQueue::try_new(capacity).map_err(|error| range_error(&env, &error.to_string()))?;
        let core = ChannelCore {
            slots: Semaphore::new(capacity),
            // Counts messages, so none are free until something is sent.
            items: Semaphore::with_available(capacity, 0),
            queue,
        };
        Ok(Self {
            attachment: Attachment::get_or_attach(&env, Shared::create(core))?,
        })
    }

    #[napi(factory, catch_unwind)]
    pub fn from_id(env: Env, id: f64) -> Result<Self> {
        Ok(Self {
            attachment: Attachment::by_id(&env, id, "channel")?,
        })
    }

    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.attachment.shared.id as f64
    }

    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.attachment.slot
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        self.core().queue.capacity() as u32
    }

    /// Messages queued right now.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.core().queue.len() as u32
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core().slots.is_closed()
    }

    #[napi(getter)]
    pub fn waiting_senders(&self) -> u32 {
        self.core().slots.waiting() as u32
    }

    #[napi(getter)]
    pub fn waiting_receivers(&self) -> u32 {
        self.core().items.waiting() as u32
    }

    #[napi(ts_return_type = "object")]
    pub fn fast_handle(&self, env: Env) -> Result<sys::napi_value> {
        raw::external(env.raw(), &self.attachment, &TAG)
    }

    /// Withdraws a send or receive wait; `null` if unknown, else settle entries.
    #[napi(catch_unwind)]
    pub fn cancel(&self, token: f64) -> Option<Vec<f64>> {
        let (core, slot, local) = (self.core(), self.attachment.slot, &self.attachment.local);
        let mut out = Vec::new();
        if let Some(woken) = core.slots.cancel(slot, token as u64) {
            wake::settle(&core.slots, slot, &local.slots, woken, &mut out);
        } else {
            let woken = core.items.cancel(slot, token as u64)?;
            wake::settle(&core.items, slot, &local.items, woken, &mut out);
        }
        Some(out)
    }

    /// Closes the channel; returns ring entries for every thread with a wait.
    #[napi(catch_unwind)]
    pub fn close(&self) -> Vec<f64> {
        let mut owners = self.core().slots.close();
        for owner in self.core().items.close() {
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        wake::rings(owners)
    }

    fn core(&self) -> &ChannelCore {
        &self.attachment.shared.primitive
    }
}

pub(crate) const RAW: [(&CStr, sys::napi_callback); 11] = [
    (c"chanSendNumbers", guarded!(send_numbers)),
    (c"chanRecvNumbers", guarded!(recv_numbers)),
    (c"chanTakeGranted", guarded!(take_granted)),
    (c"chanSend", guarded!(send)),
    (c"chanSendMany", guarded!(send_many)),
    (c"chanQueueSend", guarded!(queue_send)),
    (c"chanPushHeld", guarded!(push_held)),
    (c"chanRecv", guarded!(recv)),
    (c"chanRecvMany", guarded!(recv_many)),
    (c"chanQueueRecv", guarded!(queue_recv)),
    (c"chanPopHeld", guarded!(pop_held)),
];

/// Reads a message: a number, or the bytes of a `Uint8Array` (copied).
fn read_message(env: napi_env, value: napi_value) -> Option<Message> {
    let mut kind = 0;
    // SAFETY: `value` belongs to the current call; out-pointers are valid.
    unsafe { sys::napi_typeof(env, value, &mut kind) };
    if kind == sys::ValueType::napi_number {
        let mut number = 0.0;
        // SAFETY: as above; `value` is a number.
        unsafe { sys::napi_get_value_double(env, value, &mut number) };
        return Some(Message::Number(number));
    }
    let mut is_typed_array = false;
    // SAFETY: as above.
    unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) };
    if is_typed_array {
        let (mut kind, mut length, mut data) = (0, 0usize, ptr::null_mut::<c_void>());
        // SAFETY: `value` is a typed array; out-pointers are valid.
        let status = unsafe {
            sys::napi_get_typedarray_info(
                env,
                value,
                &mut kind,
                &mut length,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if status == Status::napi_ok && kind == sys::TypedarrayType::uint8_array {
            let bytes: Box<[u8]> = if length == 0 || data.is_null() {
                Box::default()
            } else {
                // SAFETY: N-API reports `length` bytes at `data` (already offset
                // to the view's start), alive for this call; we copy them out.
                unsafe { std::slice::from_raw_parts(data as *const u8, length) }.into()
            };
            return Some(Message::Bytes(bytes));
        }
    }
    raw::throw_type(env, "a message must be a number or a Uint8Array");
    None
}

fn message_value(env: napi_env, message: Message) -> napi_value {
    match message {
        Message::Number(number) => raw::number(env, number),
        Message::Bytes(bytes) => {
            let mut result = ptr::null_mut();
            // SAFETY: `env` is live; the source holds `bytes.len()` bytes; N-API copies them.
            unsafe {
                sys::napi_create_buffer_copy(
                    env,
                    bytes.len(),
                    bytes.as_ptr() as *const c_void,
                    ptr::null_mut(),
                    &mut result,
                )
            };
            result
        }
    }
}

/// Releases one item permit per message sent and returns the settle entries.
fn after_push(attachment: &ChannelAttachment, pushed: usize, out: &mut Vec<f64>) {
    let core = &attachment.shared.primitive;
    // Cannot overflow: each pushed message took a slot, so items <= capacity.
    if let Ok(woken) = core.items.release(pushed) {
        wake::settle(&core.items, attachment.slot, &attachment.local.items, woken, out);
    }
}

/// Releases one slot permit per message received and returns the settle entries.
fn after_pop(attachment: &ChannelAttachment, popped: usize, out: &mut Vec<f64>) {
    let core = &attachment.shared.primitive;
    if let Ok(woken) = core.slots.release(popped) {
        wake::settle(&core.slots, attachment.slot, &attachment.local.slots, woken, out);
    }
}

/// `chanSend(handle, message) -> null | settle entries | 0 (full) | 2 (closed)`.
unsafe fn send(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let Some(message) = call.arg(1).and_then(|value| read_message(env, value)) else {
        return ptr::null_mut();
    };
    let core = &attachment.shared.primitive;
    match core.slots.try_acquire(1) {
        Ok(()) => {
            core.push_owed(message);
            let mut out = Vec::new();
            after_push(attachment, 1, &mut out);
            raw::numbers_or_null(env, &out)
        }
        Err(TryAcquireError::NoPermits) => raw::code(env, code::NOT_NOW),
        Err(TryAcquireError::Closed) => raw::code(env, code::CLOSED),
    }
}

/// `chanSendMany(handle, messages[]) -> [sent, ...settle entries] | 2 (closed)`:
/// sends from the front of the array while there is room; throws (sending
/// nothing) if one of the messages it would send is not a message.
unsafe fn send_many(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let Some(array) = call.arg(1) else {
        return raw::throw_type(env, "expected an array of messages");
    };
    let mut length = 0u32;
    // SAFETY: `array` is a value of this call; a non-array fails the call.
    if unsafe { sys::napi_get_array_length(env, array, &mut length) } != Status::napi_ok {
        return raw::throw_type(env, "expected an array of messages");
    }
    let core = &attachment.shared.primitive;
    // Take the room first, then read exactly that many messages: a value that
    // is not a message gives all the room back and sends nothing, so no
    // receiver is woken (and no grant collected) for a call that throws.
    let room = match core.slots.try_acquire_up_to(length as usize) {
        Ok(room) => room,
        Err(_) => return raw::code(env, code::CLOSED),
    };
    let mut messages = Vec::with_capacity(room);
    for i in 0..room {
        let mut value = ptr::null_mut();
        // SAFETY: `array` is an array of this call; `i` is in bounds.
        unsafe { sys::napi_get_element(env, array, i as u32, &mut value) };
        let Some(message) = read_message(env, value) else {
            let _ = core.slots.release(room);
            return ptr::null_mut();
        };
        messages.push(message);
    }
    push_batch(env, attachment, messages.into_iter())
}

/// Pushes messages whose slots are already taken and returns
/// `[sent, ...settle entries]` (receivers woken once for the batch).
fn push_batch(env: napi_env, attachment: &ChannelAttachment, messages: impl Iterator<Item = Message>) -> napi_value {
    let core = &attachment.shared.primitive;
    let mut sent = 0;
    for message in messages {
        core.push_owed(message);
        sent += 1;
    }
    let mut out = vec![sent as f64];
    if sent > 0 {
        after_push(attachment, sent, &mut out);
    }
    raw::array(env, out.into_iter().map(|n| raw::number(env, n)))
}

/// `chanQueueSend(handle, token) -> 0 (queued) | 1 (a slot is held now) | 2 (closed)`.
unsafe fn queue_send(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(token)) = (call.handle::<ChannelAttachment>(0, &TAG), call.token(1)) else {
        return ptr::null_mut();
    };
    queue_wait(
        env,
        &attachment.shared.primitive.slots,
        attachment.slot,
        &attachment.local.slots,
        token,
    )
}

/// `chanQueueRecv(handle, token) -> 0 (queued) | 1 (an item is held now) | 2 (closed)`.
unsafe fn queue_recv(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(token)) = (call.handle::<ChannelAttachment>(0, &TAG), call.token(1)) else {
        return ptr::null_mut();
    };
    queue_wait(
        env,
        &attachment.shared.primitive.items,
        attachment.slot,
        &attachment.local.items,
        token,
    )
}

fn queue_wait(env: napi_env, semaphore: &Semaphore, slot: u32, held: &Held, token: u64) -> napi_value {
    match semaphore.acquire(1, slot, token) {
        Ok(Acquire::Acquired) => {
            held.add(1);
            raw::code(env, code::DONE)
        }
        Ok(Acquire::Queued) => raw::code(env, code::NOT_NOW),
        Err(AcquireError::Closed) => raw::code(env, code::CLOSED),
        Err(other) => raw::throw_range(env, &other.to_string()),
    }
}

/// `chanPushHeld(handle, message) -> null | settle entries | 2 (closed)`: sends
/// into the slot this thread's granted wait holds.
unsafe fn push_held(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let Some(message) = call.arg(1).and_then(|value| read_message(env, value)) else {
        return ptr::null_mut();
    };
    if let Err(reason) = attachment.local.slots.take(1) {
        return raw::throw_range(env, &reason);
    }
    let core = &attachment.shared.primitive;
    if core.slots.is_closed() {
        let _ = core.slots.release(1);
        return raw::code(env, code::CLOSED);
    }
    core.push_owed(message);
    let mut out = Vec::new();
    after_push(attachment, 1, &mut out);
    raw::numbers_or_null(env, &out)
}

/// Wraps a received message with the settle entries its receive produced.
/// Messages up to this size are received into the caller's slab.
const MAX_SLAB_MESSAGE: usize = 8 * 1024;

/// Room in a `Uint8Array` the JS side owns, for receiving one byte message
/// as a view instead of a fresh buffer (a buffer's allocation costs more than
/// the rest of a receive). Views are never reused: the JS side moves `at`
/// past each one and starts a new slab when this one is full.
struct Slab {
    buffer: napi_value,
    data: *mut u8,
    byte_offset: usize,
    len: usize,
    at: usize,
}

impl Slab {
    /// Arguments `i` (a `Uint8Array`) and `i + 1` (the offset to write at), if given.
    fn from_args(env: napi_env, call: &Call, i: usize) -> Option<Slab> {
        let view = call.arg(i)?;
        let at = call.arg(i + 1)?;
        let mut is_typed_array = false;
        // SAFETY: both values belong to the current call; out-pointers are valid.
        unsafe { sys::napi_is_typedarray(env, view, &mut is_typed_array) };
        if !is_typed_array {
            return None;
        }
        let (mut kind, mut len, mut data, mut buffer, mut byte_offset) =
            (0, 0usize, ptr::null_mut::<c_void>(), ptr::null_mut(), 0usize);
        let mut offset = 0.0;
        // SAFETY: `view` is a typed array and `at` a value of this call.
        let ok = unsafe {
            sys::napi_get_typedarray_info(env, view, &mut kind, &mut len, &mut data, &mut buffer, &mut byte_offset)
                == Status::napi_ok
                && sys::napi_get_value_double(env, at, &mut offset) == Status::napi_ok
        };
        let in_range = offset.fract() == 0.0 && offset >= 0.0 && offset <= len as f64;
        (ok && in_range && kind == sys::TypedarrayType::uint8_array && !data.is_null()).then_some(Slab {
            buffer,
            data: data as *mut u8,
            byte_offset,
            len,
            at: offset as usize,
        })
    }

    /// A view of `bytes` copied into the slab, or None if they do not fit.
    fn place(&self, env: napi_env, bytes: &[u8]) -> Option<napi_value> {
        if bytes.len() > MAX_SLAB_MESSAGE || bytes.len() > self.len - self.at {
            return None;
        }
        // SAFETY: `data` points at the view's `len` bytes, alive for this call
        // (the view is an argument), and `at + bytes.len() <= len` was checked;
        // the view starts `byte_offset` bytes into `buffer`.
        unsafe {
            copy_to_view(
                env,
                self.buffer,
                self.data.add(self.at),
                self.byte_offset + self.at,
                bytes,
            )
        }
    }
}

/// Copies `bytes` to `dest` and returns a `Uint8Array` over them: the range
/// of `buffer` that starts `offset` bytes in. None if N-API refuses.
///
/// # Safety
///
/// `dest` must be where `buffer`'s byte `offset` lives, with `bytes.len()`
/// writable bytes from there, and `buffer` an ArrayBuffer of this call.
unsafe fn copy_to_view(
    env: napi_env,
    buffer: napi_value,
    dest: *mut u8,
    offset: usize,
    bytes: &[u8],
) -> Option<napi_value> {
    if !bytes.is_empty() {
        // SAFETY: the caller guarantees `bytes.len()` writable bytes at `dest`.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), dest, bytes.len()) };
    }
    let mut view = ptr::null_mut();
    // SAFETY: the caller guarantees the range lies inside `buffer`.
    let status = unsafe {
        sys::napi_create_typedarray(
            env,
            sys::TypedarrayType::uint8_array,
            bytes.len(),
            buffer,
            offset,
            &mut view,
        )
    };
    (status == Status::napi_ok).then_some(view)
}

/// A received message as a JS value: bytes into the slab when they fit.
fn deliver(env: napi_env, message: Message, slab: Option<&Slab>) -> napi_value {
    if let (Message::Bytes(bytes), Some(slab)) = (&message, slab) {
        if let Some(view) = slab.place(env, bytes) {
            return view;
        }
    }
    message_value(env, message)
}

fn received(env: napi_env, message: Message, settle: Vec<f64>, slab: Option<&Slab>) -> napi_value {
    let value = deliver(env, message, slab);
    if settle.is_empty() {
        value
    } else {
        raw::array(
            env,
            std::iter::once(value)
                .chain(settle.into_iter().map(|n| raw::number(env, n)))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }
}

/// `chanRecv(handle, slab?, at?) -> message | [message, ...settle] | undefined (empty) | null (closed and drained)`;
/// a byte message of up to 8 KiB comes back as a view into `slab` at `at` when it fits.
unsafe fn recv(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let slab = Slab::from_args(env, &call, 1);
    let core = &attachment.shared.primitive;
    match core.items.try_acquire(1) {
        Ok(()) => {
            let mut out = Vec::new();
            after_pop(attachment, 1, &mut out);
            match core.pop_owed() {
                Some(message) => received(env, message, out, slab.as_ref()),
                None => raw::null(env),
            }
        }
        Err(TryAcquireError::NoPermits) => raw::undefined(env),
        Err(TryAcquireError::Closed) => match core.queue.pop() {
            Some(message) => deliver(env, message, slab.as_ref()),
            None => raw::null(env),
        },
    }
}

/// `chanRecvMany(handle, max) -> [count, ...messages, ...settle] | undefined | null`.
unsafe fn recv_many(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(max)) = (call.handle::<ChannelAttachment>(0, &TAG), call.count(1)) else {
        return ptr::null_mut();
    };
    let core = &attachment.shared.primitive;
    let mut messages = Vec::new();
    let mut closed = false;
    while messages.len() < max {
        match core.items.try_acquire(1) {
            Ok(()) => match core.pop_owed() {
                Some(message) => messages.push(message),
                None => {
                    closed = true;
                    break;
                }
            },
            Err(TryAcquireError::NoPermits) => break,
            Err(TryAcquireError::Closed) => {
                closed = true;
                match core.queue.pop() {
                    Some(message) => messages.push(message),
                    None => break,
                }
            }
        }
    }
    if messages.is_empty() {
        return if closed { raw::null(env) } else { raw::undefined(env) };
    }
    let mut settle = Vec::new();
    if !closed {
        after_pop(attachment, messages.len(), &mut settle);
    }
    let mut values: Vec<napi_value> = Vec::with_capacity(1 + messages.len() + settle.len());
    values.push(raw::number(env, messages.len() as f64));
    if messages.len() > 1 && messages.iter().all(|m| matches!(m, Message::Bytes(_))) {
        batch_views(env, &messages, &mut values);
    } else {
        values.extend(messages.into_iter().map(|m| message_value(env, m)));
    }
    values.extend(settle.into_iter().map(|n| raw::number(env, n)));
    raw::array(env, values.into_iter())
}

/// Byte messages of one batch as `Uint8Array` views over one `ArrayBuffer`:
/// one allocation per batch instead of one per message (which costs more
/// than the copy for small messages). A view keeps the batch's buffer alive.
fn batch_views(env: napi_env, messages: &[Message], out: &mut Vec<napi_value>) {
    let total: usize = messages
        .iter()
        .map(|m| match m {
            Message::Bytes(bytes) => bytes.len(),
            Message::Number(_) => 0,
        })
        .sum();
    let mut data = ptr::null_mut::<c_void>();
    let mut buffer = ptr::null_mut();
    // SAFETY: `env` is live; out-pointers are valid.
    if unsafe { sys::napi_create_arraybuffer(env, total, &mut data, &mut buffer) } != Status::napi_ok {
        out.extend(messages.iter().map(|_| raw::undefined(env)));
        return;
    }
    let mut offset = 0;
    for message in messages {
        let Message::Bytes(bytes) = message else { continue };
        // SAFETY: `data` points at the `total` bytes of the new ArrayBuffer
        // `buffer`; `offset + bytes.len() <= total` by construction.
        let view = unsafe { copy_to_view(env, buffer, (data as *mut u8).wrapping_add(offset), offset, bytes) };
        out.push(view.unwrap_or_else(|| raw::undefined(env)));
        offset += bytes.len();
    }
}

/// `chanPopHeld(handle, slab?, at?) -> message | [message, ...settle] | null (closed and drained)`:
/// receives with the item permit this thread's granted wait holds.
unsafe fn pop_held(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    if let Err(reason) = attachment.local.items.take(1) {
        return raw::throw_range(env, &reason);
    }
    let slab = Slab::from_args(env, &call, 1);
    let core = &attachment.shared.primitive;
    let mut out = Vec::new();
    after_pop(attachment, 1, &mut out);
    match core.pop_owed() {
        Some(message) => received(env, message, out, slab.as_ref()),
        None => raw::null(env),
    }
}

/// `chanTakeGranted(handle) -> tokens | null`: this thread's send and receive
/// waits granted since the last call (their permits now count as held).
unsafe fn take_granted(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let (core, slot, local) = (&attachment.shared.primitive, attachment.slot, &attachment.local);
    let mut out = Vec::new();
    wake::collect(&core.slots, slot, &local.slots, &mut out);
    wake::collect(&core.items, slot, &local.items, &mut out);
    raw::numbers_or_null(env, &out)
}

/// The `f64`s of a `Float64Array` argument; throws a `TypeError` otherwise.
/// The slice is valid for the rest of the call (the array is an argument).
fn float64s<'a>(call: &Call, i: usize) -> Option<&'a mut [f64]> {
    let env = call.env;
    let value = call.arg(i)?;
    let (mut kind, mut length, mut data) = (0, 0usize, ptr::null_mut::<c_void>());
    let mut is_typed_array = false;
    // SAFETY: `value` belongs to the current call; out-pointers are valid.
    unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) };
    // SAFETY: as above, and `value` is a typed array when the call is made.
    let ok = is_typed_array
        && unsafe {
            sys::napi_get_typedarray_info(
                env,
                value,
                &mut kind,
                &mut length,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        } == Status::napi_ok
        && kind == sys::TypedarrayType::float64_array;
    if !ok {
        raw::throw_type(env, "expected a Float64Array");
        return None;
    }
    if length == 0 || data.is_null() {
        return Some(&mut []);
    }
    // SAFETY: N-API reports `length` f64s at `data` (a Float64Array's data is
    // 8-byte aligned), alive for this call. JS cannot run during the call, so
    // nothing else touches the array meanwhile.
    Some(unsafe { std::slice::from_raw_parts_mut(data as *mut f64, length) })
}

/// `chanSendNumbers(handle, Float64Array) -> [sent, ...settle] | 2 (closed)`:
/// sends from the front of the array while there is room, taking all the
/// slots it can in one step and waking receivers once.
unsafe fn send_numbers(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let Some(numbers) = float64s(&call, 1) else {
        return ptr::null_mut();
    };
    let room = match attachment.shared.primitive.slots.try_acquire_up_to(numbers.len()) {
        Ok(room) => room,
        Err(_) => return raw::code(env, code::CLOSED),
    };
    push_batch(
        env,
        attachment,
        numbers[..room].iter().map(|&number| Message::Number(number)),
    )
}

/// `chanRecvNumbers(handle, Float64Array) -> count | [count, ...settle] |
/// null (closed and drained)`: fills the array from the front with what is
/// queued, taking all the items it can in one step. A message that is not a
/// number (only possible if a thread used another codec) reads as NaN.
unsafe fn recv_numbers(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let Some(attachment) = call.handle::<ChannelAttachment>(0, &TAG) else {
        return ptr::null_mut();
    };
    let Some(out) = float64s(&call, 1) else {
        return ptr::null_mut();
    };
    let core = &attachment.shared.primitive;
    let as_number = |message: Message| match message {
        Message::Number(number) => number,
        Message::Bytes(_) => f64::NAN,
    };
    let mut count = 0;
    match core.items.try_acquire_up_to(out.len()) {
        Ok(owed) => {
            for slot in &mut out[..owed] {
                let Some(message) = core.pop_owed() else { break };
                *slot = as_number(message);
                count += 1;
            }
            let mut settle = Vec::new();
            if owed > 0 {
                after_pop(attachment, owed, &mut settle);
            }
            if settle.is_empty() {
                return raw::number(env, count as f64);
            }
            let values = std::iter::once(count as f64).chain(settle).map(|n| raw::number(env, n));
            raw::array(env, values.collect::<Vec<_>>().into_iter())
        }
        Err(_) => {
            // Closed: drain without permits.
            while count < out.len() {
                let Some(message) = core.queue.pop() else { break };
                out[count] = as_number(message);
                count += 1;
            }
            if count == 0 {
                raw::null(env)
            } else {
                raw::number(env, count as f64)
            }
        }
    }
}
