//! The handshake decision over arbitrary views: it never panics, and it
//! only continues a follower whose offset the primary can serve from its
//! ring within a history the two share.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkv_replication::protocol::{
    decide, Decision, FollowerView, FullSyncReason, History, PrimaryView, PROTOCOL_VERSION,
};

fn u64_at(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (j, x) in b.iter_mut().enumerate() {
        *x = data.get(i + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // Small id alphabet so that ids collide often.
    let id = |b: u8| ["", "A", "B", "C"][(b % 4) as usize].to_string();
    let flags = data.first().copied().unwrap_or(0);
    let primary = PrimaryView {
        history: History {
            replid: id(flags),
            prev_replid: id(flags >> 2),
            switch_offset: u64_at(data, 1) % 10_000,
            // The failover epoch does not enter the decision (followers
            // refuse an older one before it): any value must decide alike.
            epoch: u64_at(data, 42) % 4,
        },
        oldest: u64_at(data, 9) % 10_000,
        published: u64_at(data, 17) % 10_000,
        max_replay_bytes: (flags & 0x40 != 0).then(|| u64_at(data, 25) % 10_000),
        unavailable: (flags & 0x80 != 0).then(|| "busy".to_string()),
    };
    let follower = FollowerView {
        version: if data.get(33).copied().unwrap_or(0) == 0xff {
            9
        } else {
            PROTOCOL_VERSION
        },
        replid: id(flags >> 4),
        offset: u64_at(data, 34) % 10_000,
    };
    match decide(&primary, &follower) {
        Decision::Continue => {
            assert_eq!(follower.version, PROTOCOL_VERSION);
            assert!(primary.unavailable.is_none());
            assert!(follower.offset >= primary.oldest);
            let h = &primary.history;
            let same = follower.replid == h.replid && follower.offset <= primary.published;
            let prev = !h.prev_replid.is_empty()
                && follower.replid == h.prev_replid
                && follower.offset <= h.switch_offset.min(primary.published);
            assert!(same || prev, "continued outside the shared history");
            if let Some(max) = primary.max_replay_bytes {
                assert!(primary.published - follower.offset <= max);
            }
        }
        Decision::FullSync { reason, lost_bytes } => {
            assert!(primary.unavailable.is_none());
            assert_eq!(lost_bytes > 0, reason == FullSyncReason::Diverged);
        }
        Decision::Reject(_) => {
            assert!(primary.unavailable.is_some() || follower.version != PROTOCOL_VERSION);
        }
    }
});
