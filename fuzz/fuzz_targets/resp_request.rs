//! Arbitrary bytes into the RESP request parser, split at a point chosen by
//! the first byte: a clean protocol error or whole requests, never a panic;
//! every request parsed re-encodes to bytes that parse back to it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringkv_examples::resp::{Limits, RequestParser};

fn encode(args: &[bytes::Bytes]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(data.len());
    let limits = Limits {
        inline_max: 1024,
        bulk_max: 4096,
        multibulk_max: 1024,
        query_buffer_max: 8192,
    };
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next(&mut buf) {
                Ok(Some(args)) => {
                    let wire = encode(&args);
                    let mut again = RequestParser::new(limits);
                    let mut b = BytesMut::from(&wire[..]);
                    let back = again.next(&mut b).expect("a re-encoded request parses");
                    assert_eq!(back.as_deref(), Some(&args[..]), "round trip");
                    assert!(b.is_empty());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
