//! `NativeChannel`: one thread's handle to a bounded channel shared by
//! threads, and the channel's raw entry points.
//!
//! The algorithm (a lock-free queue between a semaphore of free room and one
//! of queued messages, with close and drain) is `sluice_core::Channel`; this
//! file only translates: arguments in, outcome codes and settle entries out,
//! and this thread's held permits counted (`ChannelLocal`) so that a dead
//! thread's are given back. Converting messages to and from JS values is
//! `js_values.rs`.

use std::ffi::CStr;
use std::rc::Rc;

use napi::sys::{self, napi_env, napi_value};
use napi::{Env, Error, Result};
use napi_derive::napi;
use sluice_core::{Acquire, AcquireError, Channel, Owner, Semaphore, TryRecvError, TrySendError};

use crate::attachment::{attached_class, Attachment, Held, Primitive};
use crate::js_values::{batch_views, deliver, message_value, Message, MessageArray, Slab};
use crate::raw::{self, code, entry, Count, Token};
use crate::wake;

pub(crate) type ChannelCore = Channel<Message>;

/// Permits this thread holds between a granted wait and its send or receive.
#[derive(Default)]
pub(crate) struct ChannelLocal {
    room: Held,
    items: Held,
}

impl Primitive for ChannelCore {
    type Local = ChannelLocal;

    const TAG: sys::napi_type_tag = sys::napi_type_tag {
        lower: 0x3c8e_19f0_b26a_d471,
        upper: 0xe07b_5d93_4a1c_68f2,
    };

    /// Detaches from each semaphore as from a semaphore of its own.
    fn detach(&self, slot: u32, local: &ChannelLocal) {
        Primitive::detach(self.room(), slot, &local.room);
        Primitive::detach(self.items(), slot, &local.items);
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
        let core = Channel::try_new(capacity as usize).map_err(|error| range_error(&env, &error.to_string()))?;
        Self::attach(&env, core)
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        self.core().capacity() as u32
    }

    /// Messages queued right now.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.core().len() as u32
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core().is_closed()
    }

    #[napi(getter)]
    pub fn waiting_senders(&self) -> u32 {
        self.core().room().waiting() as u32
    }

    #[napi(getter)]
    pub fn waiting_receivers(&self) -> u32 {
        self.core().items().waiting() as u32
    }

    /// Withdraws a send or receive wait; `null` if unknown, else settle entries.
    #[napi(catch_unwind)]
    pub fn cancel(&self, token: f64) -> Option<Vec<f64>> {
        let (core, slot, local) = (self.core(), self.attachment.slot, &self.attachment.local);
        let mut out = Vec::new();
        if let Some(woken) = core.room().cancel(slot, token as u64) {
            wake::wake_list(core.room(), slot, &local.room, woken, &mut out);
        } else {
            let woken = core.items().cancel(slot, token as u64)?;
            wake::wake_list(core.items(), slot, &local.items, woken, &mut out);
        }
        Some(out)
    }

    /// Closes the channel; returns ring entries for every thread with a wait.
    #[napi(catch_unwind)]
    pub fn close(&self) -> Vec<f64> {
        wake::rings(self.core().close())
    }
}

attached_class!(NativeChannel, ChannelCore, "channel", slot);

pub(crate) const RAW: [(&CStr, sys::napi_callback); 12] = [
    (c"chanSendNumbers", entry!(send_numbers)),
    (c"chanRecvNumbers", entry!(recv_numbers)),
    (c"chanTakeGranted", entry!(take_granted)),
    (c"chanSend", entry!(send)),
    (c"chanSendMany", entry!(send_many)),
    (c"chanQueueSend", entry!(queue_send)),
    (c"chanPushHeld", entry!(push_held)),
    (c"chanRecv", entry!(recv)),
    (c"chanRecvMany", entry!(recv_many)),
    (c"chanQueueRecv", entry!(queue_recv)),
    (c"chanPopHeld", entry!(pop_held)),
    (c"chanClosed", entry!(closed)),
];

/// Settle entries for receivers' waits (on `items`) that a send granted.
fn receivers_woken(attachment: &ChannelAttachment, woken: Vec<Owner>, out: &mut Vec<f64>) {
    let items = attachment.shared.primitive.items();
    wake::wake_list(items, attachment.slot, &attachment.local.items, woken, out);
}

/// Settle entries for senders' waits (on `room`) that a receive granted.
fn senders_woken(attachment: &ChannelAttachment, woken: Vec<Owner>, out: &mut Vec<f64>) {
    let room = attachment.shared.primitive.room();
    wake::wake_list(room, attachment.slot, &attachment.local.room, woken, out);
}

/// `chanSend(handle, message) -> null | settle entries | NOT_NOW (full) | CLOSED`.
fn send(env: napi_env, attachment: &ChannelAttachment, message: Message) -> napi_value {
    match attachment.shared.primitive.try_send(message) {
        Ok(woken) => {
            let mut out = Vec::new();
            receivers_woken(attachment, woken, &mut out);
            raw::numbers_or_null(env, &out)
        }
        Err(TrySendError::Full(_)) => raw::code(env, code::NOT_NOW),
        Err(TrySendError::Closed(_)) => raw::code(env, code::CLOSED),
    }
}

/// `chanSendMany(handle, messages[]) -> [sent, ...settle entries] | CLOSED`:
/// sends from the front of the array while there is room; throws (sending
/// nothing) if one of the messages it would send is not a message.
fn send_many(env: napi_env, attachment: &ChannelAttachment, messages: MessageArray) -> napi_value {
    let core = &attachment.shared.primitive;
    // Take the room first, then read exactly that many messages: a value that
    // is not a message gives all the room back and sends nothing, so no
    // receiver is woken (and no grant collected) for a call that throws.
    let Ok(room) = core.try_claim_room(messages.len()) else {
        return raw::code(env, code::CLOSED);
    };
    let mut batch = Vec::with_capacity(room);
    for i in 0..room {
        let Some(message) = messages.get(i) else {
            core.return_room(room);
            return std::ptr::null_mut();
        };
        batch.push(message);
    }
    send_claimed(env, attachment, batch.into_iter())
}

/// Sends messages into room already claimed and returns
/// `[sent, ...settle entries]` (receivers woken once for the batch).
fn send_claimed(
    env: napi_env,
    attachment: &ChannelAttachment,
    messages: impl ExactSizeIterator<Item = Message>,
) -> napi_value {
    let sent = messages.len();
    let woken = attachment.shared.primitive.send_claimed(messages);
    let mut out = vec![sent as f64];
    receivers_woken(attachment, woken, &mut out);
    raw::array(env, out.into_iter().map(|n| raw::number(env, n)))
}

/// `chanQueueSend(handle, token) -> QUEUED | DONE (room is held now) | CLOSED`.
fn queue_send(env: napi_env, attachment: &ChannelAttachment, Token(token): Token) -> napi_value {
    let room = attachment.shared.primitive.room();
    queue_wait(env, room, attachment.slot, &attachment.local.room, token)
}

/// `chanQueueRecv(handle, token) -> QUEUED | DONE (a message is held now) | CLOSED`.
fn queue_recv(env: napi_env, attachment: &ChannelAttachment, Token(token): Token) -> napi_value {
    let items = attachment.shared.primitive.items();
    queue_wait(env, items, attachment.slot, &attachment.local.items, token)
}

fn queue_wait(env: napi_env, semaphore: &Semaphore, slot: u32, held: &Held, token: u64) -> napi_value {
    match semaphore.acquire(1, slot, token) {
        Ok(Acquire::Acquired) => {
            held.add(1);
            raw::code(env, code::DONE)
        }
        Ok(Acquire::Queued) => raw::code(env, code::QUEUED),
        Err(AcquireError::Closed) => raw::code(env, code::CLOSED),
        Err(other) => raw::throw_range(env, &other.to_string()),
    }
}

/// `chanPushHeld(handle, message) -> null | settle entries | CLOSED`: sends
/// into the room this thread's granted wait holds.
fn push_held(env: napi_env, attachment: &ChannelAttachment, message: Message) -> napi_value {
    if let Err(reason) = attachment.local.room.take(1) {
        return raw::throw_range(env, &reason);
    }
    match attachment.shared.primitive.send_held(message) {
        Ok(woken) => {
            let mut out = Vec::new();
            receivers_woken(attachment, woken, &mut out);
            raw::numbers_or_null(env, &out)
        }
        Err(_) => raw::code(env, code::CLOSED),
    }
}

/// Wraps a received message with the settle entries its receive produced.
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
/// a byte message of up to `MAX_SLAB_MESSAGE` bytes that fits in `slab` (an `ArrayBuffer`) at `at` is
/// copied there and comes back as `true` (see `Slab`).
fn recv(env: napi_env, attachment: &ChannelAttachment, slab: Option<Slab>) -> napi_value {
    match attachment.shared.primitive.try_recv() {
        Ok((message, woken)) => {
            let mut out = Vec::new();
            senders_woken(attachment, woken, &mut out);
            received(env, message, out, slab.as_ref())
        }
        Err(TryRecvError::Empty) => raw::undefined(env),
        Err(TryRecvError::Closed) => raw::null(env),
    }
}

/// `chanRecvMany(handle, max) -> [count, ...messages, ...settle] | undefined | null`.
fn recv_many(env: napi_env, attachment: &ChannelAttachment, Count(max): Count) -> napi_value {
    let mut messages = Vec::new();
    let woken = match attachment
        .shared
        .primitive
        .try_recv_many(max, |message| messages.push(message))
    {
        Ok((_, woken)) => woken,
        Err(TryRecvError::Empty) => return raw::undefined(env),
        Err(TryRecvError::Closed) => return raw::null(env),
    };
    let mut settle = Vec::new();
    senders_woken(attachment, woken, &mut settle);
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

/// `chanPopHeld(handle, slab?, at?) -> message | true | [message or true, ...settle] | null (closed and drained)`:
/// receives with the message this thread's granted wait holds.
fn pop_held(env: napi_env, attachment: &ChannelAttachment, slab: Option<Slab>) -> napi_value {
    if let Err(reason) = attachment.local.items.take(1) {
        return raw::throw_range(env, &reason);
    }
    // Closed and drained meanwhile: `room` is closed then, so nobody was woken.
    let (Some(message), woken) = attachment.shared.primitive.recv_held() else {
        return raw::null(env);
    };
    let mut out = Vec::new();
    senders_woken(attachment, woken, &mut out);
    received(env, message, out, slab.as_ref())
}

/// `chanClosed(handle) -> boolean`: the `closed` getter as a raw call, for
/// the doorbell's every collect (see `semClosed`).
fn closed(env: napi_env, attachment: &ChannelAttachment) -> napi_value {
    raw::boolean(env, attachment.shared.primitive.is_closed())
}

/// `chanTakeGranted(handle) -> tokens | null`: this thread's send and receive
/// waits granted since the last call (their permits now count as held).
fn take_granted(env: napi_env, attachment: &ChannelAttachment) -> napi_value {
    let (core, slot, local) = (&attachment.shared.primitive, attachment.slot, &attachment.local);
    let mut out = Vec::new();
    wake::collect(core.room(), slot, &local.room, &mut out);
    wake::collect(core.items(), slot, &local.items, &mut out);
    raw::numbers_or_null(env, &out)
}

/// `chanSendNumbers(handle, Float64Array) -> [sent, ...settle] | CLOSED`:
/// sends from the front of the array while there is room, taking all the
/// room it can in one step and waking receivers once.
fn send_numbers(env: napi_env, attachment: &ChannelAttachment, numbers: &mut [f64]) -> napi_value {
    let Ok(room) = attachment.shared.primitive.try_claim_room(numbers.len()) else {
        return raw::code(env, code::CLOSED);
    };
    send_claimed(
        env,
        attachment,
        numbers[..room].iter().map(|&number| Message::Number(number)),
    )
}

/// `chanRecvNumbers(handle, Float64Array) -> count | [count, ...settle] |
/// null (closed and drained)`: fills the array from the front with what is
/// queued, taking all the messages it can in one step. A message that is not
/// a number (only possible if a thread used another codec) reads as NaN.
fn recv_numbers(env: napi_env, attachment: &ChannelAttachment, out: &mut [f64]) -> napi_value {
    let max = out.len();
    let mut targets = out.iter_mut();
    let fill = |message| {
        if let Some(target) = targets.next() {
            *target = match message {
                Message::Number(number) => number,
                Message::Bytes(_) => f64::NAN,
            };
        }
    };
    let (count, woken) = match attachment.shared.primitive.try_recv_many(max, fill) {
        Ok(received) => received,
        Err(TryRecvError::Empty) => return raw::number(env, 0.0),
        Err(TryRecvError::Closed) => return raw::null(env),
    };
    let mut settle = Vec::new();
    senders_woken(attachment, woken, &mut settle);
    if settle.is_empty() {
        return raw::number(env, count as f64);
    }
    let values = std::iter::once(count as f64).chain(settle).map(|n| raw::number(env, n));
    raw::array(env, values.collect::<Vec<_>>().into_iter())
}
