//! kmscodec: a key management service and payload codec sidecar for Temporal.
//!
//! Temporal stores every workflow input, result, signal and failure in its event history.
//! kmscodec seals those payloads before they leave the worker's host, with envelope encryption:
//! each namespace has a key-encryption key (KEK) in a key management system, kmscodec mints data
//! keys under it, keeps them in memory with exact usage accounting, and seals each payload with
//! AES-256-GCM under a per-payload key derived from the data key. The wrapped data key travels
//! in the payload, so any replica can open it with one KMS call, cached after that.
//!
//! Modules, from the top down: each imports only modules below it in this list (`main.rs`, the
//! binary, stands above them all). Nothing imports the module it is listed under.
//!
//! * [`app`]: wiring from a [`config::Config`] to running listeners.
//! * [`config_check`]: the files a configuration refers to, opened (`config check --deep`).
//! * [`keyadmin`]: namespace key administration, for `kmscodec keys ...` and `kmscodec rewrap`.
//! * [`config`]: reads TOML and the environment into every owner's settings, reporting every
//!   problem at once; the only reader of the environment.
//! * [`server`]: transports (the Temporal Codec Server HTTP protocol, gRPC), the one request
//!   pipeline, probes, the admin API, and the table from failure class to status.
//! * [`metrics`]: the Prometheus registry and its typed label sets.
//! * [`codec`]: batch encode/decode of Temporal payloads and pass-through rules.
//! * [`storage`]: Temporal External Storage: resolving references, offloading on encode.
//! * [`keyring`]: per-namespace active data keys, usage limits, rotation, decode cache.
//! * [`keys`]: the [`keys::KeyProvider`] trait, its backends, and [`keys::open`].
//! * [`audit`]: the codec audit log (one JSON line per request), off the request path.
//! * [`envelope`]: the sealed payload format; synchronous, no I/O.
//! * [`payload`]: Temporal's Payload messages, protobuf and proto3 JSON.
//! * [`auth`]: who is calling (static tokens, JWTs, client certificates) and what they may do
//!   per namespace.
//! * Leaves, importing no other module: [`namespace`] (the name rule), [`error_class`] (what
//!   kind of failure), [`json`] (the string escaper), [`compression`] (zstd), [`secret`] (key
//!   types, no crypto).

pub mod app;
pub mod audit;
pub mod auth;
pub mod codec;
pub mod compression;
pub mod config;
pub mod config_check;
pub mod envelope;
pub mod error_class;
pub mod json;
pub mod keyadmin;
pub mod keyring;
pub mod keys;
pub mod metrics;
pub mod namespace;
pub mod payload;
pub mod secret;
pub mod server;
pub mod storage;
