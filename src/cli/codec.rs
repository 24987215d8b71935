//! `kmscodec encode`, `decode` and `rewrap`: a Payloads JSON document read from stdin, sealed,
//! opened or re-sealed, and written to stdout.

use std::io::{Read, Write};

use kmscodec::app::App;
use kmscodec::codec::NamespaceCheck;
use kmscodec::keyadmin;
use kmscodec::payload;

use super::error::{Failure, admin_failure, codec_failure};

/// `rewrap` shows progress on stderr from this many payloads on.
const REWRAP_PROGRESS_FROM: usize = 1000;

/// `rewrap`: every payload of ours in `input` re-sealed under the current keys.
pub(crate) async fn rewrap(app: &App, input: &[u8]) -> Result<(), Failure> {
    let payloads = payload::from_json(input).map_err(|e| Failure::failed(format!("stdin: {e}")))?;
    let total = payloads.len();
    let every = if total >= REWRAP_PROGRESS_FROM {
        1000
    } else {
        0
    };
    let (out, summary) = keyadmin::rewrap(&app.codec, payloads, every, |done, total| {
        eprintln!("rewrap: {done}/{total} payloads");
    })
    .await
    .map_err(admin_failure)?;
    write_stdout(&out)?;
    let namespaces = summary
        .by_namespace
        .iter()
        .map(|(namespace, count)| format!("{namespace}: {count}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "rewrap: re-sealed {} of {} payloads{}; left {} untouched",
        summary.rewrapped,
        summary.total,
        if namespaces.is_empty() {
            String::new()
        } else {
            format!(" ({namespaces})")
        },
        summary.untouched
    );
    Ok(())
}

/// `encode`: every payload in `input` sealed for `namespace`.
pub(crate) async fn encode(app: &App, namespace: &str, input: &[u8]) -> Result<(), Failure> {
    let payloads = payload::from_json(input).map_err(|e| Failure::failed(format!("stdin: {e}")))?;
    let out = app
        .codec
        .encode(namespace, payloads)
        .await
        .map_err(|e| codec_failure(&e))?;
    write_stdout(&out)
}

/// `decode`: every payload of ours in `input` opened, checked against `namespace` if named.
pub(crate) async fn decode(
    app: &App,
    namespace: Option<&str>,
    input: &[u8],
) -> Result<(), Failure> {
    let payloads = payload::from_json(input).map_err(|e| Failure::failed(format!("stdin: {e}")))?;
    let check = match namespace {
        Some(namespace) => NamespaceCheck::Expect(namespace),
        None => NamespaceCheck::FromHeader,
    };
    let out = app
        .codec
        .decode(check, payloads)
        .await
        .map_err(|e| codec_failure(&e))?;
    write_stdout(&out)
}

/// All of stdin.
pub(crate) fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| Failure::failed(format!("cannot read stdin: {error}")))?;
    Ok(input)
}

/// `payloads` as a Payloads JSON document on stdout.
fn write_stdout(payloads: &[payload::Payload]) -> Result<(), Failure> {
    let mut out = Vec::new();
    payload::to_json(payloads, &mut out);
    out.push(b'\n');
    std::io::stdout()
        .write_all(&out)
        .map_err(|error| Failure::failed(format!("cannot write stdout: {error}")))
}
