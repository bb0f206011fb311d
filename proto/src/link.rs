//! The gateway link: how a microcontroller and the `edge-agent` it hangs off (UART, or TCP to
//! an emulator) exchange the same messages other nodes exchange over MQTT.
//!
//! The gateway represents each attached MCU to the hub as a node of its own: it relays the
//! node's desired state and blob replies down ([`Downlink`]) and its hello, status, logs, blob
//! requests and application messages up ([`Uplink`]). The link adds only framing: each message
//! is a [`crate::frame`] (version byte + postcard), COBS-encoded and terminated by a zero byte,
//! so a receiver that joins mid-stream or sees line noise resynchronises at the next zero.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::msg::{
    BlobReply, BlobRequest, DesiredState, Heartbeat, Hello, LogBatch, Message, NodeStatus,
};

/// Largest frame (before COBS) either side of a link accepts. Bounds the receive buffer of a
/// microcontroller: MCUs ask for blob chunks of at most [`MCU_BLOB_CHUNK`] bytes and get
/// desired states of a few workloads.
pub const MAX_LINK_FRAME: usize = 8 * 1024;

/// Blob chunk size microcontrollers request: a chunk plus its frame fits the receive buffer
/// twice over, and a lost one costs little to ask again on a slow UART.
pub const MCU_BLOB_CHUNK: u32 = 2 * 1024;

/// Gateway → microcontroller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Downlink {
    /// The gateway (re)connected: announce yourself ([`Uplink::Hello`]) and report status.
    Sync {
        /// The node name the gateway represents the device as (`--mcu NAME=...`).
        node: String,
        /// Wall-clock time at the gateway, milliseconds since the Unix epoch, for log lines.
        unix_ms: u64,
    },
    /// The node's latest desired state (the retained message of its `desired` topic).
    Desired(DesiredState),
    /// The hub's reply to a [`Uplink::BlobRequest`].
    Blob(BlobReply),
    /// An application message on a topic the node subscribed to.
    AppMessage {
        /// Full topic (`wf/v1/app/{namespace}/...`).
        topic: String,
        /// Payload bytes.
        payload: Vec<u8>,
    },
}

/// Microcontroller → gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Uplink {
    /// Who the node is and what it offers; the gateway publishes it as the node's presence.
    Hello(Hello),
    /// The node's status, published retained on its `status` topic.
    Status(NodeStatus),
    /// Workload output, published on its `logs` topic.
    Logs(LogBatch),
    /// A blob chunk wanted, published on its `blob-req` topic.
    BlobRequest(BlobRequest),
    /// An application message a module published (full topic).
    AppPublish {
        /// Full topic (`wf/v1/app/{namespace}/...`).
        topic: String,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// Every application topic filter the node's modules subscribe to (full filters); the
    /// gateway subscribes to exactly these on the node's behalf.
    AppFilters(Vec<String>),
    /// The device is alive; the gateway publishes it on the node's `hb` topic. A device that
    /// freezes, or a cut wire the link layer cannot see, stops these, and the hub declares
    /// the node NotReady. (Last, so frames of the variants above keep their encoding.)
    Heartbeat(Heartbeat),
}

/// Encodes `msg` for the link: COBS over a [`crate::frame`], then the zero terminator.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    cobs_encode(&crate::frame::encode(msg))
}

/// COBS-encodes `data` and appends the terminating zero: the output has no other zero byte.
pub fn cobs_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 254 + 2);
    let mut code_at = out.len();
    out.push(0);
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xff {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out.push(0);
    out
}

/// Decodes one COBS block (without its terminating zero) in place; returns the decoded length.
pub fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, LinkError> {
    let (mut read, mut write) = (0, 0);
    while read < buf.len() {
        let code = buf[read] as usize;
        if code == 0 || read + code > buf.len() {
            return Err(LinkError::BadCobs);
        }
        read += 1;
        for _ in 1..code {
            buf[write] = buf[read];
            write += 1;
            read += 1;
        }
        // A block shorter than 255 stands for a zero, except at the very end.
        if code < 0xff && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Ok(write)
}

/// Why bytes from the link did not yield a message. The decoder has already resynchronised:
/// report and go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// More than [`MAX_LINK_FRAME`] bytes before a terminator: the frame was dropped.
    #[error("link frame longer than {max} bytes dropped")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The bytes between two terminators are not valid COBS (line noise, a lost byte).
    #[error("corrupt link frame (invalid COBS)")]
    BadCobs,
    /// A well-framed message that does not decode.
    #[error("undecodable link frame: {0}")]
    Frame(#[from] DecodeError),
}

/// Reassembles messages from a byte stream. Memory is bounded by [`MAX_LINK_FRAME`] (plus COBS
/// overhead), whatever arrives.
#[derive(Debug, Default)]
pub struct LinkDecoder {
    buf: Vec<u8>,
    /// Dropping an overlong frame: skip until the next terminator.
    skipping: bool,
}

/// Encoded size limit: a [`MAX_LINK_FRAME`] frame plus its COBS overhead.
const MAX_ENCODED: usize = MAX_LINK_FRAME + MAX_LINK_FRAME / 254 + 1;

impl LinkDecoder {
    /// An empty decoder.
    pub fn new() -> LinkDecoder {
        LinkDecoder::default()
    }

    /// Feeds one byte; at a terminator returns the message it completed, or why none.
    /// Empty frames (two zeros in a row, used to flush a line) are skipped.
    pub fn push<M: Message>(&mut self, byte: u8) -> Option<Result<M, LinkError>> {
        if byte != 0 {
            if self.skipping {
                return None;
            }
            if self.buf.len() == MAX_ENCODED {
                self.buf.clear();
                self.buf.shrink_to(256);
                self.skipping = true;
                return Some(Err(LinkError::TooLong {
                    max: MAX_LINK_FRAME,
                }));
            }
            self.buf.push(byte);
            return None;
        }
        if core::mem::take(&mut self.skipping) || self.buf.is_empty() {
            return None;
        }
        let result = match cobs_decode_in_place(&mut self.buf) {
            Ok(len) => crate::frame::decode::<M>(&self.buf[..len]).map_err(LinkError::from),
            Err(e) => Err(e),
        };
        self.buf.clear();
        Some(result)
    }

    /// Feeds `bytes`, calling `on_message` for each message or error completed.
    pub fn feed<M: Message>(
        &mut self,
        bytes: &[u8],
        mut on_message: impl FnMut(Result<M, LinkError>),
    ) {
        for &b in bytes {
            if let Some(r) = self.push(b) {
                on_message(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut enc = cobs_encode(data);
        assert_eq!(enc.pop(), Some(0));
        assert!(!enc.contains(&0), "{enc:?}");
        let n = cobs_decode_in_place(&mut enc).unwrap();
        enc.truncate(n);
        enc
    }

    #[test]
    fn cobs_known_vectors() {
        // From the COBS paper / Wikipedia.
        assert_eq!(cobs_encode(&[]), vec![1, 0]);
        assert_eq!(cobs_encode(&[0]), vec![1, 1, 0]);
        assert_eq!(cobs_encode(&[0, 0]), vec![1, 1, 1, 0]);
        assert_eq!(
            cobs_encode(&[0x11, 0x22, 0, 0x33]),
            vec![3, 0x11, 0x22, 2, 0x33, 0]
        );
        let run: Vec<u8> = (1..=254).collect();
        let mut want = vec![0xff];
        want.extend(&run);
        want.extend([1, 0]);
        assert_eq!(cobs_encode(&run), want);
        for data in [&[][..], &[0], &[0, 0], &[1, 0, 2], &run] {
            assert_eq!(roundtrip(data), data);
        }
    }

    #[test]
    fn the_decoder_resynchronises_after_noise_and_overlong_frames() {
        let sync = Downlink::Sync {
            node: "m".into(),
            unix_ms: 7,
        };
        let mut stream = vec![0x55, 0x13, 0x00]; // noise, then a terminator
        stream.extend(encode(&sync));
        stream.extend(core::iter::repeat_n(0x42, MAX_ENCODED + 10));
        stream.push(0);
        stream.extend(encode(&sync));
        let mut d = LinkDecoder::new();
        let mut got = vec![];
        d.feed::<Downlink>(&stream, |r| got.push(r));
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(sync.clone()));
        assert_eq!(
            got[2],
            Err(LinkError::TooLong {
                max: MAX_LINK_FRAME
            })
        );
        assert_eq!(got[3], Ok(sync));
    }
}
