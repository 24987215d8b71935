//! When a served certificate expires: the `notAfter` field of an X.509 certificate (RFC 5280,
//! section 4.1.2.5), read from its DER encoding, for the `kmscodec_tls_certificate_not_after_seconds`
//! metric and the certificate expiry alerts.
//!
//! The certificates come from the operator's own files and were already accepted by rustls; this
//! walker still treats them as untrusted bytes: every length is bounded by its enclosing value and
//! anything unexpected yields `None` (no metric), never a panic. It reads nothing but the validity.

use rustls::pki_types::CertificateDer;

/// DER tags (X.690, section 8.1.2).
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter` as Unix seconds, if the encoding is as RFC 5280 lays it out.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (certificate, _) = element(cert.as_ref(), SEQUENCE)?;
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
    //                               validity, ... }
    let (tbs, _) = element(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest, VERSION)?.1;
    }
    rest = element(rest, INTEGER)?.1; // serialNumber
    rest = element(rest, SEQUENCE)?.1; // signature AlgorithmIdentifier
    rest = element(rest, SEQUENCE)?.1; // issuer Name
    // Validity ::= SEQUENCE { notBefore Time, notAfter Time }
    let (validity, _) = element(rest, SEQUENCE)?;
    let (_, _, after_not_before) = any_element(validity)?;
    let (tag, not_after, _) = any_element(after_not_before)?;
    match tag {
        UTC_TIME => utc_time(not_after),
        GENERALIZED_TIME => generalized_time(not_after),
        _ => None,
    }
}

/// One element with `expected` tag: its contents and what follows it.
fn element(input: &[u8], expected: u8) -> Option<(&[u8], &[u8])> {
    let (tag, contents, rest) = any_element(input)?;
    (tag == expected).then_some((contents, rest))
}

/// One tag-length-value element (single-byte tags, definite lengths up to 4 bytes).
fn any_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let alleged_len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = input.split_at_checked(count)?;
        input = rest;
        bytes
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
    };
    let (contents, rest) = input.split_at_checked(alleged_len)?;
    Some((tag, contents, rest))
}

/// `YYMMDDHHMMSSZ`; years 50 to 99 are 19YY (RFC 5280, section 4.1.2.5.1).
fn utc_time(text: &[u8]) -> Option<i64> {
    if text.len() != 13 || text[12] != b'Z' {
        return None;
    }
    let short_year = digits(&text[0..2])?;
    let year = if short_year >= 50 {
        1900 + short_year
    } else {
        2000 + short_year
    };
    unix_seconds(year, &text[2..12])
}

/// `YYYYMMDDHHMMSSZ` (RFC 5280, section 4.1.2.5.2).
fn generalized_time(text: &[u8]) -> Option<i64> {
    if text.len() != 15 || text[14] != b'Z' {
        return None;
    }
    unix_seconds(digits(&text[0..4])?, &text[4..14])
}

/// `MMDDHHMMSS` of `year` as Unix seconds.
fn unix_seconds(year: u32, rest: &[u8]) -> Option<i64> {
    let field = |at: usize| digits(rest.get(at..at + 2)?);
    let month = time::Month::try_from(u8::try_from(field(0)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        month,
        u8::try_from(field(2)?).ok()?,
    )
    .ok()?;
    let time = time::Time::from_hms(
        u8::try_from(field(4)?).ok()?,
        u8::try_from(field(6)?).ok()?,
        u8::try_from(field(8)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn certificate(not_after: time::OffsetDateTime) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["codec.example".to_owned()]).unwrap();
        params.not_after = not_after;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 (RFC 5280).
        for expiry in [
            time::macros::datetime!(2031-05-17 08:09:10 UTC),
            time::macros::datetime!(2049-12-31 23:59:59 UTC),
            time::macros::datetime!(2051-02-28 00:00:01 UTC),
        ] {
            let cert = certificate(expiry);
            assert_eq!(not_after(&cert), Some(expiry.unix_timestamp()));
        }
    }

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        let cert = certificate(time::macros::datetime!(2031-05-17 08:09:10 UTC));
        let bytes = cert.as_ref();
        for len in 0..bytes.len() {
            assert_eq!(
                not_after(&CertificateDer::from(&bytes[..len])),
                None,
                "{len}"
            );
        }
        for garbage in [
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[0x30, 0x80],
            &[0x02, 0x01],
        ] {
            assert_eq!(not_after(&CertificateDer::from(garbage)), None);
        }
    }
}
