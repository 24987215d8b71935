//! Temporal's `Payload` and `Payloads` messages and their proto3 JSON form.
//!
//! The structs are wire-compatible with `temporal.api.common.v1` (same field numbers), so the
//! protobuf bytes of an SDK's Payload decode here and ours decode there. The JSON reader follows
//! what a proto3 JSON parser accepts (camelCase or snake_case names, unknown fields ignored,
//! standard or URL-safe base64, padded or not); the writer emits canonical proto3 JSON and writes
//! base64 strings without an escaping pass (base64 never needs one).
//!
//! This module parses untrusted JSON: errors name the field (`payloads[3].data`), never panic.

use std::collections::BTreeMap;
use std::fmt;

use crate::json::write_json_string;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `temporal.api.common.v1.Payload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Metadata such as `encoding`. Field 1, `map<string, bytes>`.
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// The encoded value. Field 2.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// References to externally stored payload data. Field 3.
    #[prost(message, repeated, tag = "3")]
    pub external_payloads: Vec<ExternalPayloadDetails>,
}

/// `temporal.api.common.v1.Payload.ExternalPayloadDetails`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalPayloadDetails {
    /// Size of the externally stored data. Field 1, `int64`.
    #[prost(int64, tag = "1")]
    pub size_bytes: i64,
}

/// `temporal.api.common.v1.Payloads`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payloads {
    /// The payloads, in order. Field 1.
    #[prost(message, repeated, tag = "1")]
    pub payloads: Vec<Payload>,
}

/// The metadata key naming a payload's encoding.
pub const ENCODING_KEY: &str = "encoding";

impl Payload {
    /// The `encoding` metadata value, if present.
    pub fn encoding(&self) -> Option<&[u8]> {
        self.metadata.get(ENCODING_KEY).map(Vec::as_slice)
    }

    /// Bytes this payload occupies: data plus metadata keys and values.
    pub fn size(&self) -> usize {
        self.data.len()
            + self
                .metadata
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>()
    }
}

/// The `encoding` of an External Storage reference payload (with [`MESSAGE_TYPE_KEY`]).
pub const REFERENCE_ENCODING: &[u8] = b"json/protobuf";
/// The metadata key naming the protobuf message a `json/protobuf` payload holds.
pub const MESSAGE_TYPE_KEY: &str = "messageType";
/// The message type of a reference payload: `temporal.api.sdk.v1.ExternalStorageReference`.
pub const REFERENCE_MESSAGE_TYPE: &[u8] = b"temporal.api.sdk.v1.ExternalStorageReference";
/// The `encoding` of the legacy reference form that older Go and Python SDKs wrote (read only).
pub const LEGACY_REFERENCE_ENCODING: &[u8] = b"json/external-storage-reference";
/// The longest reference payload `data` parsed: a reference is a driver name and a few claim
/// strings; anything larger is not one an SDK wrote.
pub const MAX_REFERENCE_BYTES: usize = 16 << 10;

/// `temporal.api.sdk.v1.ExternalStorageReference`: which driver stored a payload and the
/// driver's claim to find it again (for S3 and GCS: `bucket`, `key`, `hash_algorithm`,
/// `hash_value`). Every field is as the reference alleges: nothing in it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageReference {
    /// The driver's name (`aws.s3driver`), as the SDK instance that stored it named it.
    pub driver_name: String,
    /// The driver-defined claim.
    pub claim_data: BTreeMap<String, String>,
}

/// Why a payload that is marked as a reference cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The payload is not marked as a storage reference.
    #[error("not a storage reference")]
    NotAReference,
    /// The reference is larger than [`MAX_REFERENCE_BYTES`].
    #[error("storage reference is {0} bytes; the limit is {MAX_REFERENCE_BYTES}")]
    TooLarge(usize),
    /// The reference's JSON is not an `ExternalStorageReference`.
    #[error("storage reference is not valid: {0}")]
    Invalid(String),
}

/// proto3 JSON of `ExternalStorageReference` (either field-name spelling).
#[derive(serde::Deserialize)]
struct ReferenceJson {
    #[serde(rename = "driverName", alias = "driver_name", default)]
    driver_name: Option<String>,
    #[serde(rename = "claimData", alias = "claim_data", default)]
    claim_data: Option<BTreeMap<String, String>>,
}

/// The legacy form: `{"driver_name": …, "driver_claim": {"claim_data": {…}}}`.
#[derive(serde::Deserialize)]
struct LegacyReferenceJson {
    #[serde(rename = "driver_name", alias = "driverName", default)]
    driver_name: Option<String>,
    #[serde(rename = "driver_claim", alias = "driverClaim", default)]
    driver_claim: Option<ReferenceClaimJson>,
}

#[derive(serde::Deserialize)]
struct ReferenceClaimJson {
    #[serde(rename = "claim_data", alias = "claimData", default)]
    claim_data: Option<BTreeMap<String, String>>,
}

impl StorageReference {
    /// Writes the reference payload exactly as the SDKs write it: `json/protobuf`, the message
    /// type, compact JSON with sorted keys (`claimData` before `driverName`), and the stored
    /// object's size in `externalPayloads`.
    pub fn to_payload(&self, stored_size: i64) -> Payload {
        let mut data = Vec::with_capacity(128);
        data.extend_from_slice(b"{\"claimData\":{");
        for (position, (key, value)) in self.claim_data.iter().enumerate() {
            if position > 0 {
                data.push(b',');
            }
            write_json_string(key, &mut data);
            data.push(b':');
            write_json_string(value, &mut data);
        }
        data.extend_from_slice(b"},\"driverName\":");
        write_json_string(&self.driver_name, &mut data);
        data.push(b'}');
        Payload {
            metadata: BTreeMap::from([
                (ENCODING_KEY.to_owned(), REFERENCE_ENCODING.to_vec()),
                (MESSAGE_TYPE_KEY.to_owned(), REFERENCE_MESSAGE_TYPE.to_vec()),
            ]),
            data,
            external_payloads: vec![ExternalPayloadDetails {
                size_bytes: stored_size,
            }],
        }
    }
}

impl Payload {
    /// Is this an External Storage reference (current or legacy form)? Decided by the metadata
    /// alone, as the SDKs decide it, never by the presence of `external_payloads`.
    pub fn is_storage_reference(&self) -> bool {
        match self.encoding() {
            Some(REFERENCE_ENCODING) => {
                self.metadata.get(MESSAGE_TYPE_KEY).map(Vec::as_slice)
                    == Some(REFERENCE_MESSAGE_TYPE)
            }
            Some(LEGACY_REFERENCE_ENCODING) => true,
            _ => false,
        }
    }

    /// Reads the reference this payload holds.
    pub fn storage_reference(&self) -> Result<StorageReference, ReferenceError> {
        if !self.is_storage_reference() {
            return Err(ReferenceError::NotAReference);
        }
        if self.data.len() > MAX_REFERENCE_BYTES {
            return Err(ReferenceError::TooLarge(self.data.len()));
        }
        let invalid = |error: serde_json::Error| ReferenceError::Invalid(error.to_string());
        let (driver_name, claim_data) = if self.encoding() == Some(LEGACY_REFERENCE_ENCODING) {
            let legacy: LegacyReferenceJson =
                serde_json::from_slice(&self.data).map_err(invalid)?;
            (
                legacy.driver_name,
                legacy.driver_claim.and_then(|claim| claim.claim_data),
            )
        } else {
            let current: ReferenceJson = serde_json::from_slice(&self.data).map_err(invalid)?;
            (current.driver_name, current.claim_data)
        };
        let driver_name = driver_name
            .filter(|name| !name.is_empty())
            .ok_or_else(|| ReferenceError::Invalid("driverName is missing".to_owned()))?;
        Ok(StorageReference {
            driver_name,
            claim_data: claim_data.unwrap_or_default(),
        })
    }
}

/// Why a JSON document is not a valid `Payloads`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Parses a proto3 JSON `Payloads` document.
pub fn from_json(body: &[u8]) -> Result<Vec<Payload>, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let payloads = PayloadsSeed
        .deserialize(&mut deserializer)
        .map_err(|error| JsonError(error.to_string()))?;
    deserializer
        .end()
        .map_err(|error| JsonError(error.to_string()))?;
    Ok(payloads)
}

/// Decodes base64 as a proto3 JSON parser does: standard or URL-safe alphabet, padded or not.
///
/// The standard alphabet is tried first: one SIMD pass decodes and validates what every Temporal
/// client sends. Only text the standard alphabet refuses is tried again as URL-safe (a byte scan
/// for `-` and `_` up front cost more than the decoding itself).
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let (standard, url_safe) = if text.len().is_multiple_of(4) {
        (&base64_simd::STANDARD, &base64_simd::URL_SAFE)
    } else {
        (&base64_simd::STANDARD_NO_PAD, &base64_simd::URL_SAFE_NO_PAD)
    };
    standard
        .decode_to_vec(text)
        .or_else(|_| url_safe.decode_to_vec(text))
        .ok()
}

/// Where in the document a value sits, for error messages. Built for free on the hot path and
/// formatted only when an error is reported.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    /// `payloads[i].<field>`
    Field { index: usize, field: &'static str },
    /// `payloads[i].metadata.<key>`
    MetadataKey { index: usize, key: &'a str },
    /// `payloads[i].externalPayloads[j]` and, with `size`, `….sizeBytes`
    External {
        index: usize,
        item: usize,
        size: bool,
    },
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field { index, field } => write!(f, "payloads[{index}].{field}"),
            Self::MetadataKey { index, key } => write!(f, "payloads[{index}].metadata.{key}"),
            Self::External { index, item, size } => {
                write!(f, "payloads[{index}].externalPayloads[{item}]")?;
                if *size {
                    f.write_str(".sizeBytes")?;
                }
                Ok(())
            }
        }
    }
}

struct PayloadsSeed;

impl<'de> DeserializeSeed<'de> for PayloadsSeed {
    type Value = Vec<Payload>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadsSeed {
    type Value = Vec<Payload>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Payloads object {\"payloads\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut payloads = None;
        while let Some(key) = map.next_key::<FieldName>()? {
            if key.0 == "payloads" {
                if payloads.is_some() {
                    return Err(de::Error::custom("duplicate field `payloads`"));
                }
                payloads = Some(map.next_value_seed(Nullable(PayloadListSeed))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(payloads.flatten().unwrap_or_default())
    }
}

/// An object key; owned because a key with escapes cannot be borrowed.
struct FieldName(String);

impl<'de> de::Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <String as de::Deserialize>::deserialize(deserializer).map(FieldName)
    }
}

/// Accepts `null` for any field, as proto3 JSON does (it means the default value).
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

struct PayloadListSeed;

impl<'de> DeserializeSeed<'de> for PayloadListSeed {
    type Value = Vec<Payload>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PayloadListSeed {
    type Value = Vec<Payload>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`payloads` as an array of Payload objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut payloads = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(1024));
        while let Some(payload) = seq.next_element_seed(PayloadSeed {
            index: payloads.len(),
        })? {
            payloads.push(payload);
        }
        Ok(payloads)
    }
}

struct PayloadSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payloads[{}] as a Payload object", self.index)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let index = self.index;
        let mut payload = Payload::default();
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<FieldName>()? {
            let slot = match key.0.as_str() {
                "metadata" => 0,
                "data" => 1,
                "externalPayloads" | "external_payloads" => 2,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(de::Error::custom(format_args!(
                    "payloads[{index}].{}: duplicate field",
                    key.0
                )));
            }
            match slot {
                0 => {
                    payload.metadata = map
                        .next_value_seed(Nullable(MetadataSeed { index }))?
                        .unwrap_or_default();
                }
                1 => {
                    let field = FieldPath::Field {
                        index,
                        field: "data",
                    };
                    payload.data = map
                        .next_value_seed(Nullable(Base64Seed { field }))?
                        .unwrap_or_default();
                }
                _ => {
                    payload.external_payloads = map
                        .next_value_seed(Nullable(ExternalListSeed { index }))?
                        .unwrap_or_default();
                }
            }
        }
        Ok(payload)
    }
}

struct MetadataSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = BTreeMap<String, Vec<u8>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = BTreeMap<String, Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payloads[{}].metadata as an object of base64 strings",
            self.index
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut metadata = BTreeMap::new();
        while let Some(key) = map.next_key::<FieldName>()? {
            let field = FieldPath::MetadataKey {
                index: self.index,
                key: &key.0,
            };
            let value = map
                .next_value_seed(Nullable(Base64Seed { field }))?
                .unwrap_or_default();
            if metadata.contains_key(&key.0) {
                return Err(de::Error::custom(format_args!("{field}: duplicate key")));
            }
            metadata.insert(key.0, value);
        }
        Ok(metadata)
    }
}

struct Base64Seed<'f> {
    field: FieldPath<'f>,
}

impl<'de> DeserializeSeed<'de> for Base64Seed<'_> {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Base64Seed<'_> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as a base64 string", self.field)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        decode_base64(text.as_bytes())
            .ok_or_else(|| E::custom(format_args!("{}: invalid base64", self.field)))
    }
}

struct ExternalListSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ExternalListSeed {
    type Value = Vec<ExternalPayloadDetails>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ExternalListSeed {
    type Value = Vec<ExternalPayloadDetails>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payloads[{}].externalPayloads as an array", self.index)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        loop {
            let field = FieldPath::External {
                index: self.index,
                item: list.len(),
                size: false,
            };
            match seq.next_element_seed(ExternalSeed { field })? {
                Some(details) => list.push(details),
                None => return Ok(list),
            }
        }
    }
}

struct ExternalSeed<'f> {
    field: FieldPath<'f>,
}

impl<'de> DeserializeSeed<'de> for ExternalSeed<'_> {
    type Value = ExternalPayloadDetails;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ExternalSeed<'_> {
    type Value = ExternalPayloadDetails;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as an object", self.field)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut details = ExternalPayloadDetails::default();
        while let Some(key) = map.next_key::<FieldName>()? {
            if matches!(key.0.as_str(), "sizeBytes" | "size_bytes") {
                let field = match self.field {
                    FieldPath::External { index, item, .. } => FieldPath::External {
                        index,
                        item,
                        size: true,
                    },
                    other => other,
                };
                details.size_bytes = map
                    .next_value_seed(Nullable(Int64Seed { field }))?
                    .unwrap_or_default();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(details)
    }
}

/// proto3 JSON int64: a JSON string of digits or a JSON number.
struct Int64Seed<'f> {
    field: FieldPath<'f>,
}

impl<'de> DeserializeSeed<'de> for Int64Seed<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Int64Seed<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as an int64 (string or number)", self.field)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::custom(format_args!("{}: out of range", self.field)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
        // proto3 JSON accepts an integral number written with an exponent or fraction.
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            Ok(value as i64)
        } else {
            Err(E::custom(format_args!("{}: not an integer", self.field)))
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<i64, E> {
        text.parse()
            .map_err(|_| E::custom(format_args!("{}: not an int64", self.field)))
    }
}

/// Writes `{"payloads":[...]}` as canonical proto3 JSON.
pub fn to_json(payloads: &[Payload], out: &mut Vec<u8>) {
    let estimate: usize = payloads
        .iter()
        .map(|payload| {
            64 + payload.data.len().div_ceil(3) * 4
                + payload
                    .metadata
                    .iter()
                    .map(|(key, value)| key.len() + 8 + value.len().div_ceil(3) * 4)
                    .sum::<usize>()
        })
        .sum();
    out.reserve(estimate + 16);
    out.extend_from_slice(b"{\"payloads\":[");
    for (index, payload) in payloads.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metadata\":{");
        for (position, (key, value)) in payload.metadata.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            write_json_string(key, out);
            out.push(b':');
            write_base64(value, out);
        }
        out.extend_from_slice(b"},\"data\":");
        write_base64(&payload.data, out);
        if !payload.external_payloads.is_empty() {
            out.extend_from_slice(b",\"externalPayloads\":[");
            for (position, details) in payload.external_payloads.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"sizeBytes\":\"");
                out.extend_from_slice(details.size_bytes.to_string().as_bytes());
                out.extend_from_slice(b"\"}");
            }
            out.push(b']');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    base64_simd::STANDARD.encode_append(bytes, out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn parses_camel_and_snake_case_and_ignores_unknown_fields() {
        let json = br#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IjEi",
            "externalPayloads":[{"sizeBytes":"123"}],"extra":{"a":[1,2]}},
            {"external_payloads":[{"size_bytes":7}],"data":null}],"other":1}"#;
        let payloads = from_json(json).unwrap();
        assert_eq!(payloads.len(), 2);
        assert_eq!(payloads[0].encoding(), Some(&b"json/plain"[..]));
        assert_eq!(payloads[0].data, b"\"1\"");
        assert_eq!(payloads[0].external_payloads[0].size_bytes, 123);
        assert_eq!(payloads[1].external_payloads[0].size_bytes, 7);
        assert!(payloads[1].data.is_empty());
    }

    #[test]
    fn accepts_url_safe_and_unpadded_base64() {
        for text in ["+/8=", "-_8=", "+/8", "-_8"] {
            assert_eq!(
                decode_base64(text.as_bytes()).unwrap(),
                vec![0xfb, 0xff],
                "{text}"
            );
        }
        assert!(decode_base64(b"!!!!").is_none());
        assert!(decode_base64(b"A").is_none());
        // One alphabet per string: a mix is neither.
        assert!(decode_base64(b"+_8=").is_none());
        assert!(decode_base64(b"-/8").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"payloads":[{"data":"***"}]}"#, "payloads[0].data"),
            (
                br#"{"payloads":[{},{"metadata":{"encoding":"%%"}}]}"#,
                "payloads[1].metadata.encoding",
            ),
            (br#"{"payloads":[{"data":5}]}"#, "payloads[0].data"),
            (br#"{"payloads":{}}"#, "payloads"),
            (
                br#"{"payloads":[{"metadata":{"a":"","a":""}}]}"#,
                "payloads[0].metadata.a: duplicate key",
            ),
            (
                br#"{"payloads":[{"data":"","data":""}]}"#,
                "duplicate field",
            ),
            (
                br#"{"payloads":[{"externalPayloads":[{"sizeBytes":"x"}]}]}"#,
                "payloads[0].externalPayloads[0].sizeBytes",
            ),
        ];
        for (json, expected) in cases {
            let error = from_json(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        assert!(from_json(b"[]").is_err());
        assert!(from_json(b"{} trailing").is_err());
        assert!(from_json(b"").is_err());
    }

    #[test]
    fn json_round_trip_is_exact() {
        let payload = Payload {
            metadata: BTreeMap::from([
                ("encoding".to_owned(), b"binary/plain".to_vec()),
                ("we\"ird\n\u{1}key".to_owned(), vec![0, 1, 2, 255]),
            ]),
            data: (0..=255).collect(),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: -5 }],
        };
        let mut out = Vec::new();
        to_json(std::slice::from_ref(&payload), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            parsed["payloads"][0]["externalPayloads"][0]["sizeBytes"],
            "-5"
        );
        assert_eq!(from_json(&out).unwrap(), vec![payload]);
    }

    #[test]
    fn protobuf_bytes_match_temporal_field_numbers() {
        let payload = Payload {
            metadata: BTreeMap::from([("e".to_owned(), b"v".to_vec())]),
            data: b"d".to_vec(),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: 1 }],
        };
        // field 1 (map entry: key=1 "e", value=2 "v"), field 2 "d", field 3 {field 1 = 1}
        let expected = [
            0x0a, 0x06, 0x0a, 0x01, b'e', 0x12, 0x01, b'v', 0x12, 0x01, b'd', 0x1a, 0x02, 0x08,
            0x01,
        ];
        assert_eq!(payload.encode_to_vec(), expected);
        assert_eq!(Payload::decode(&expected[..]).unwrap(), payload);
    }

    /// What the Python SDK (1.35) wrote for a reference, byte for byte.
    const PYTHON_REFERENCE: &str = r#"{"claimData":{"bucket":"b","hash_algorithm":"sha256","hash_value":"ab","key":"k"},"driverName":"aws.s3driver"}"#;

    fn reference() -> StorageReference {
        StorageReference {
            driver_name: "aws.s3driver".to_owned(),
            claim_data: BTreeMap::from(
                [
                    ("bucket", "b"),
                    ("key", "k"),
                    ("hash_algorithm", "sha256"),
                    ("hash_value", "ab"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
        }
    }

    #[test]
    fn references_are_written_as_the_sdks_write_them() {
        let payload = reference().to_payload(1234);
        assert_eq!(payload.data, PYTHON_REFERENCE.as_bytes());
        assert_eq!(payload.encoding(), Some(REFERENCE_ENCODING));
        assert_eq!(
            payload.metadata[MESSAGE_TYPE_KEY],
            b"temporal.api.sdk.v1.ExternalStorageReference"
        );
        assert_eq!(payload.external_payloads[0].size_bytes, 1234);
        assert!(payload.is_storage_reference());
        assert_eq!(payload.storage_reference().unwrap(), reference());
        // Answered in proto3 JSON camelCase, the size as a string (what the UI reads).
        let mut out = Vec::new();
        to_json(std::slice::from_ref(&payload), &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            json["payloads"][0]["externalPayloads"][0]["sizeBytes"],
            "1234"
        );
        assert_eq!(from_json(&out).unwrap(), vec![payload]);
    }

    #[test]
    fn references_are_read_in_every_dialect_and_the_legacy_form() {
        let make = |encoding: &[u8], message_type: Option<&[u8]>, data: &str| {
            let mut metadata = BTreeMap::from([(ENCODING_KEY.to_owned(), encoding.to_vec())]);
            if let Some(message_type) = message_type {
                metadata.insert(MESSAGE_TYPE_KEY.to_owned(), message_type.to_vec());
            }
            Payload {
                metadata,
                data: data.as_bytes().to_vec(),
                external_payloads: Vec::new(),
            }
        };
        let current = Some(REFERENCE_MESSAGE_TYPE);
        for (payload, what) in [
            (
                make(REFERENCE_ENCODING, current, PYTHON_REFERENCE),
                "python",
            ),
            (
                make(
                    REFERENCE_ENCODING,
                    current,
                    r#"{ "driver_name": "aws.s3driver",
                        "claim_data": {"key":"k","bucket":"b","hash_value":"ab","hash_algorithm":"sha256"} }"#,
                ),
                "snake_case",
            ),
            (
                make(
                    LEGACY_REFERENCE_ENCODING,
                    None,
                    r#"{"driver_name":"aws.s3driver","driver_claim":{"claim_data":{"bucket":"b","key":"k","hash_algorithm":"sha256","hash_value":"ab"}}}"#,
                ),
                "legacy",
            ),
        ] {
            assert!(payload.is_storage_reference(), "{what}");
            assert_eq!(payload.storage_reference().unwrap(), reference(), "{what}");
        }
        // Only the metadata decides: the wrong message type, or externalPayloads alone, is not
        // a reference.
        let other = make(
            REFERENCE_ENCODING,
            Some(b"temporal.api.common.v1.Payload"),
            "{}",
        );
        assert!(!other.is_storage_reference());
        assert!(matches!(
            other.storage_reference(),
            Err(ReferenceError::NotAReference)
        ));
        let mut sized = make(b"json/plain", None, "1");
        sized
            .external_payloads
            .push(ExternalPayloadDetails { size_bytes: 1 });
        assert!(!sized.is_storage_reference());
        // Malformed references are errors, never panics.
        for data in [
            "",
            "[]",
            "{\"claimData\":5}",
            "{\"claimData\":{}}",
            "{\"driverName\":\"\"}",
        ] {
            let bad = make(REFERENCE_ENCODING, current, data);
            assert!(
                matches!(bad.storage_reference(), Err(ReferenceError::Invalid(_))),
                "{data:?}"
            );
        }
        let huge = make(
            REFERENCE_ENCODING,
            current,
            &" ".repeat(MAX_REFERENCE_BYTES + 1),
        );
        assert!(matches!(
            huge.storage_reference(),
            Err(ReferenceError::TooLarge(_))
        ));
    }

    #[test]
    fn size_bytes_is_read_as_string_or_number_in_json_and_protobuf() {
        let camel =
            br#"{"payloads":[{"metadata":{},"externalPayloads":[{"sizeBytes":"307200"}]}]}"#;
        let snake =
            br#"{"payloads":[{"metadata":{},"external_payloads":[{"size_bytes":307200}]}]}"#;
        let mixed = br#"{"payloads":[{"externalPayloads":[{"size_bytes":"307200"}]}]}"#;
        for json in [&camel[..], &snake[..], &mixed[..]] {
            let payloads = from_json(json).unwrap();
            assert_eq!(payloads[0].external_payloads[0].size_bytes, 307_200);
            let bytes = payloads[0].encode_to_vec();
            assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), payloads[0]);
        }
    }
}
