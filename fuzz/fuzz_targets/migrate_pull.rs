//! Arbitrary bytes as one item of a slot migration's pull reply
//! (`PullItem::decode`, what a target reads from its source): a clean
//! error or an item, never a panic; every item decoded re-encodes to bytes
//! that decode back to it. The same bytes as a RESP reply (`Frame::parse`,
//! how the target's client reads the pull) end in an error, a frame, or a
//! wait for more, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringkv_examples::cluster::PullItem;
use ringkv_examples::resp::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = PullItem::decode(Bytes::copy_from_slice(data)) {
        let again = PullItem::decode(Bytes::from(item.encode())).expect("a re-encoded item decodes");
        assert_eq!(again, item, "round trip");
    }
    if let Ok(Some((Frame::Array(items), _))) = Frame::parse(data) {
        for item in items {
            if let Frame::Bulk(b) = item {
                let _ = PullItem::decode(Bytes::from(b));
            }
        }
    }
});
