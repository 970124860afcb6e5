//! JS values in and out of a channel: reading a message (a number, or a
//! `Uint8Array`'s bytes) from an argument, and making JS values of received
//! messages, into the caller's receive slab, as views over one buffer per
//! batch, or into a caller's `Float64Array`. The channel's algorithm lives in
//! `sluice_core::Channel`; its entry points (`channel.rs`) call these.

use std::ffi::c_void;
use std::ptr;

use napi::sys::{self, napi_env, napi_value, Status};

use crate::raw::{self, Arg, Call};

/// One message: numbers travel without allocating, everything else as bytes
/// (the TypeScript layer's codec has encoded it).
pub(crate) enum Message {
    Number(f64),
    Bytes(Box<[u8]>),
}

/// A message argument; an absent one reads as nothing, without an error.
impl Arg<'_> for Message {
    fn read(call: &Call, i: usize) -> Option<Self> {
        call.arg(i).and_then(|value| read_message(call.env, value))
    }
}

/// An array argument of messages, read one at a time with `get`; a
/// `TypeError` if it is not an array.
pub(crate) struct MessageArray<'a> {
    env: napi_env,
    array: napi_value,
    len: u32,
    _call: std::marker::PhantomData<&'a Call>,
}

impl<'a> Arg<'a> for MessageArray<'a> {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        let mut len = 0u32;
        // SAFETY: the value is one of this call's; a non-array fails the call.
        let array = call
            .arg(i)
            .filter(|&array| unsafe { sys::napi_get_array_length(call.env, array, &mut len) } == Status::napi_ok);
        let Some(array) = array else {
            raw::throw_type(call.env, "expected an array of messages");
            return None;
        };
        Some(MessageArray {
            env: call.env,
            array,
            len,
            _call: std::marker::PhantomData,
        })
    }
}

impl MessageArray<'_> {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Message `i` (`i < len()`), or `None` once a `TypeError` is thrown.
    pub(crate) fn get(&self, i: usize) -> Option<Message> {
        let mut value = ptr::null_mut();
        // SAFETY: `array` is an array of this call; `i` is in bounds.
        unsafe { sys::napi_get_element(self.env, self.array, i as u32, &mut value) };
        read_message(self.env, value)
    }
}

/// What N-API reports of a typed array: its element kind, its length in
/// elements, its data pointer (already offset to the view's start), and the
/// `ArrayBuffer` under it with the view's byte offset there.
pub(crate) struct TypedArray {
    pub(crate) kind: sys::napi_typedarray_type,
    pub(crate) length: usize,
    pub(crate) data: *mut c_void,
    pub(crate) buffer: napi_value,
    byte_offset: usize,
}

/// `value` as a typed array, or None if it is not one.
pub(crate) fn typed_array(env: napi_env, value: napi_value) -> Option<TypedArray> {
    let mut is_typed_array = false;
    // SAFETY: `value` belongs to the current call; out-pointers are valid.
    unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) };
    if !is_typed_array {
        return None;
    }
    let mut array = TypedArray {
        kind: 0,
        length: 0,
        data: ptr::null_mut(),
        buffer: ptr::null_mut(),
        byte_offset: 0,
    };
    // SAFETY: `value` is a typed array of this call; out-pointers are valid.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut array.kind,
            &mut array.length,
            &mut array.data,
            &mut array.buffer,
            &mut array.byte_offset,
        )
    };
    (status == Status::napi_ok).then_some(array)
}

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
    if let Some(TypedArray { kind, length, data, .. }) = typed_array(env, value) {
        if kind == sys::TypedarrayType::uint8_array {
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

pub(crate) fn message_value(env: napi_env, message: Message) -> napi_value {
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

/// Byte messages up to this size are received into the caller's slab (a
/// view into it instead of a fresh buffer). `ts/channel.ts` sizes its slabs
/// from it.
#[napi_derive::napi]
pub const MAX_SLAB_MESSAGE: u32 = 8 * 1024;

/// Bytes at the start of a slab where a receive writes the length of the
/// message it placed (a native-endian `u32`, read by `ts/receive-slab.ts`
/// through a `Uint32Array`); messages go after it. `ts/receive-slab.ts` starts
/// each slab's offset here.
#[napi_derive::napi]
pub const SLAB_HEADER_BYTES: u32 = 8;

/// Room in an `ArrayBuffer` the JS side owns (its receive slab), for
/// receiving one byte message without making a JS value here: the bytes are
/// copied to offset `at`, their length to the slab's header, and the entry
/// point returns `true`; the JS side makes the view (a `Uint8Array` made in JS
/// costs a fraction of one made through N-API). Views are never reused: the JS
/// side moves `at` past each message and starts a new slab when this one is
/// full.
pub(crate) struct Slab {
    data: *mut u8,
    len: usize,
    at: usize,
}

/// Arguments `i` (an `ArrayBuffer`) and `i + 1` (the offset to write at), if
/// given and valid: the last argument of an entry point, never an error.
impl Arg<'_> for Option<Slab> {
    fn read(call: &Call, i: usize) -> Option<Self> {
        Some(Slab::from_args(call, i))
    }
}

impl Slab {
    fn from_args(call: &Call, i: usize) -> Option<Slab> {
        let env = call.env;
        let buffer = call.arg(i)?;
        let at = call.arg(i + 1)?;
        let mut data = ptr::null_mut();
        let mut len = 0;
        // SAFETY: `buffer` is a value of this call; out-pointers are valid. A
        // value that is not an ArrayBuffer fails with a status, not a throw.
        // A detached buffer reports no data and a length of 0.
        if unsafe { sys::napi_get_arraybuffer_info(env, buffer, &mut data, &mut len) } != Status::napi_ok {
            return None;
        }
        let mut offset = 0.0;
        // SAFETY: `at` is a value of this call; the out-pointer is valid.
        let ok = unsafe { sys::napi_get_value_double(env, at, &mut offset) } == Status::napi_ok;
        let in_range = raw::is_whole(offset) && offset >= SLAB_HEADER_BYTES as f64 && offset <= len as f64;
        // The header is written as a u32: the data must be aligned for it
        // (an ArrayBuffer's always is).
        let aligned = (data as usize).is_multiple_of(std::mem::align_of::<u32>());
        (ok && in_range && aligned && !data.is_null()).then_some(Slab {
            data: data as *mut u8,
            len,
            at: offset as usize,
        })
    }

    /// Copies `bytes` into the slab at `at` and their length into its
    /// header; false (nothing written) if they do not fit.
    fn place(&self, bytes: &[u8]) -> bool {
        if bytes.len() > MAX_SLAB_MESSAGE as usize || bytes.len() > self.len - self.at {
            return false;
        }
        // SAFETY: `data` points at the buffer's `len` bytes, alive for this
        // call (the buffer is an argument) and not read by JS while it runs;
        // `SLAB_HEADER_BYTES <= at` and `at + bytes.len() <= len` were
        // checked, so the header and the message do not overlap and lie
        // inside it; `data` is aligned for the u32 header.
        unsafe {
            if !bytes.is_empty() {
                ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(self.at), bytes.len());
            }
            (self.data as *mut u32).write(bytes.len() as u32);
        }
        true
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

/// A received message as a JS value, or `true` for bytes placed in the slab
/// (see [`Slab`]).
pub(crate) fn deliver(env: napi_env, message: Message, slab: Option<&Slab>) -> napi_value {
    if let (Message::Bytes(bytes), Some(slab)) = (&message, slab) {
        if slab.place(bytes) {
            return raw::boolean(env, true);
        }
    }
    message_value(env, message)
}

/// Byte messages of one batch as `Uint8Array` views over one `ArrayBuffer`:
/// one allocation per batch instead of one per message (which costs more
/// than the copy for small messages). A view keeps the batch's buffer alive.
pub(crate) fn batch_views(env: napi_env, messages: &[Message], out: &mut Vec<napi_value>) {
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

/// The `f64`s of a `Float64Array` argument; a `TypeError` otherwise (nothing
/// if absent). The slice lives as long as the call (the array is one of its
/// arguments); an entry point takes at most one, so it is not aliased.
impl<'a> Arg<'a> for &'a mut [f64] {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        let env = call.env;
        let value = call.arg(i)?;
        let Some(TypedArray { length, data, .. }) =
            typed_array(env, value).filter(|array| array.kind == sys::TypedarrayType::float64_array)
        else {
            raw::throw_type(env, "expected a Float64Array");
            return None;
        };
        if length == 0 || data.is_null() {
            return Some(&mut []);
        }
        // SAFETY: N-API reports `length` f64s at `data` (a Float64Array's data is
        // 8-byte aligned), alive for this call. JS cannot run during the call, so
        // nothing else touches the array meanwhile.
        Some(unsafe { std::slice::from_raw_parts_mut(data as *mut f64, length) })
    }
}
