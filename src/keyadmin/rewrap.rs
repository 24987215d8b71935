//! `kmscodec rewrap`: re-sealing stored payloads under the current keys, through the codec.

use std::collections::BTreeMap;

use serde::Serialize;

use super::AdminError;
use crate::audit::ADMIN_TARGET;
use crate::codec::{Codec, CodecError, NamespaceCheck, is_sealed};
use crate::envelope;
use crate::payload::Payload;

/// What [`rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewrapSummary {
    /// Payloads read.
    pub total: usize,
    /// Payloads of ours, re-sealed under the current keys.
    pub rewrapped: usize,
    /// Payloads left as they were (not sealed by kmscodec).
    pub untouched: usize,
    /// Re-sealed payloads by namespace.
    pub by_namespace: BTreeMap<String, usize>,
}

fn rewrap_error(index: usize, error: &CodecError) -> AdminError {
    AdminError::Rewrap(format!(
        "payloads[{index}]: {} ({})",
        error.public_message(),
        error.code()
    ))
}

/// Re-seals every payload of ours under the current keys of the namespace its header names,
/// leaving every other payload untouched, in order. `progress(done, total)` is called every
/// `progress_every` payloads. Fails whole: either every payload of ours is re-sealed, or the
/// caller gets an error and no output. A payload is never left unsealed (a payload whose
/// encoding is now in `skip_encodings` is an error, not a pass-through).
pub async fn rewrap(
    codec: &Codec,
    payloads: Vec<Payload>,
    progress_every: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Payload>, RewrapSummary), AdminError> {
    let mut summary = RewrapSummary {
        total: payloads.len(),
        ..RewrapSummary::default()
    };
    let mut out = Vec::with_capacity(payloads.len());
    for (index, payload) in payloads.into_iter().enumerate() {
        if !is_sealed(&payload) {
            summary.untouched += 1;
            out.push(payload);
        } else {
            let namespace = envelope::parse(&payload.data)
                .map(|(header, _)| header.alleged_namespace.to_owned())
                .map_err(|error| {
                    AdminError::Rewrap(format!(
                        "payloads[{index}]: not a readable sealed payload: {error}"
                    ))
                })?;
            let opened = codec
                .decode(NamespaceCheck::Expect(&namespace), vec![payload])
                .await
                .map_err(|error| rewrap_error(index, &error))?;
            let sealed = codec
                .encode(&namespace, opened)
                .await
                .map_err(|error| rewrap_error(index, &error))?;
            let Some(sealed) = sealed.into_iter().next().filter(is_sealed) else {
                return Err(AdminError::Rewrap(format!(
                    "payloads[{index}]: its encoding is in encode.skip_encodings, so encode would \
                     leave it unsealed; refusing"
                )));
            };
            summary.rewrapped += 1;
            *summary.by_namespace.entry(namespace).or_default() += 1;
            out.push(sealed);
        }
        let done = index + 1;
        if progress_every > 0 && done % progress_every == 0 {
            progress(done, summary.total);
        }
    }
    tracing::info!(
        target: ADMIN_TARGET,
        audit = true,
        via = "cli",
        op = "rewrap",
        total = summary.total,
        rewrapped = summary.rewrapped,
        untouched = summary.untouched,
        namespaces = ?summary.by_namespace,
        outcome = "ok",
        "key administration: rewrap of {} payloads",
        summary.total
    );
    Ok((out, summary))
}
