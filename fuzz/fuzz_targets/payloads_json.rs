//! Fuzzes the proto3 JSON reader of codec requests: it must never panic, and whatever it accepts
//! must survive a write/read round trip unchanged.
#![no_main]

use kmscodec::payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payloads) = payload::from_json(data) {
        let mut out = Vec::new();
        payload::to_json(&payloads, &mut out);
        let again = payload::from_json(&out);
        assert!(matches!(again, Ok(ref p) if *p == payloads));
    }
});
