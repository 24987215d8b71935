//! Fuzzes the envelope header parser and, for inputs that parse, both open paths with a fixed
//! key: neither may panic, and nothing but a correctly sealed input may open.
#![no_main]

use kmscodec::envelope::{self, EnvelopeKey};
use kmscodec::secret::DataKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = envelope::parse(data) {
        let _ = header.alleged_kek();
        if let Some(key) = DataKey::from_slice(&[7; 32]).map(EnvelopeKey::new) {
            let mut out = Vec::new();
            // A random input opening would mean a forged tag and commitment.
            assert!(envelope::open(&key, &header, body, &mut out).is_err());
            // The in-place path the codec's decode uses (formats 1 to 3) agrees.
            let mut buffer = data.to_vec();
            assert!(envelope::open_in_place(&key, &mut buffer).is_err());
        }
    }
});
