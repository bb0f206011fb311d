//! Property tests of the gateway link: COBS round-trips any bytes, a stream of framed messages
//! decodes back exactly whatever noise sits between them, and no input makes the decoder panic
//! or hold more than one frame's worth of memory.

use proptest::prelude::*;
use wasmfleet_proto::link::{self, Downlink, LinkDecoder, LinkError, MAX_LINK_FRAME, Uplink};
use wasmfleet_proto::{BlobReply, BlobRequest, Digest};

fn downlink() -> impl Strategy<Value = Downlink> {
    prop_oneof![
        ("[a-z0-9-]{1,20}", any::<u64>())
            .prop_map(|(node, unix_ms)| Downlink::Sync { node, unix_ms }),
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(d, offset, data)| Downlink::Blob(BlobReply::Chunk {
                digest: Digest(d),
                offset,
                total: offset + data.len() as u64,
                data,
            })),
        ("[a-z/]{1,40}", prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(topic, payload)| Downlink::AppMessage { topic, payload }),
    ]
}

fn uplink() -> impl Strategy<Value = Uplink> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u64>(), any::<u32>()).prop_map(|(d, offset, len)| {
            Uplink::BlobRequest(BlobRequest {
                digest: Digest(d),
                offset,
                len,
            })
        }),
        prop::collection::vec("[a-z/#+]{1,30}", 0..5).prop_map(Uplink::AppFilters),
    ]
}

proptest! {
    #[test]
    fn cobs_round_trips_any_bytes(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut enc = link::cobs_encode(&data);
        prop_assert_eq!(enc.pop(), Some(0));
        prop_assert!(!enc.contains(&0));
        let n = link::cobs_decode_in_place(&mut enc).unwrap();
        prop_assert_eq!(&enc[..n], &data[..]);
    }

    #[test]
    fn messages_survive_noise_between_them(
        msgs in prop::collection::vec(downlink(), 1..8),
        noise in prop::collection::vec(prop::collection::vec(1u8..=255, 0..20), 8),
    ) {
        let mut stream = Vec::new();
        for (m, junk) in msgs.iter().zip(&noise) {
            // Junk then a terminator: a garbage frame the decoder reports and skips.
            stream.extend(junk);
            stream.push(0);
            stream.extend(link::encode(m));
        }
        let mut got = Vec::new();
        LinkDecoder::new().feed::<Downlink>(&stream, |r| if let Ok(m) = r { got.push(m) });
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn uplinks_round_trip(m in uplink()) {
        let mut got = Vec::new();
        LinkDecoder::new().feed::<Uplink>(&link::encode(&m), |r| got.push(r));
        prop_assert_eq!(got, vec![Ok(m)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in prop::collection::vec(any::<u8>(), 0..30_000)) {
        let mut d = LinkDecoder::new();
        for b in bytes {
            if let Some(Err(LinkError::TooLong { max })) = d.push::<Downlink>(b) {
                prop_assert_eq!(max, MAX_LINK_FRAME);
            }
        }
    }
}
