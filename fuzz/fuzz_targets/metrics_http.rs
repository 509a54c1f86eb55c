//! The request heads `live --metrics` reads from the network: any bytes, as a request line and
//! headers. Nothing may panic; a request that is not HTTP/1.x never keeps the connection open.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::http_head::{parse, Ask};

fuzz_target!(|data: &[u8]| {
    let (ask, keep) = parse(data);
    assert!(!(ask == Ask::Bad && keep));
});
