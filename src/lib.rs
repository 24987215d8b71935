//! kmscodec: a key management service and payload codec sidecar for Temporal.
//!
//! Temporal stores every workflow input, result, signal and failure in its event history.
//! kmscodec seals those payloads before they leave the worker's host, with envelope encryption:
//! each namespace has a key-encryption key (KEK) in a key management system, kmscodec mints data
//! keys under it, keeps them in memory with exact usage accounting, and seals each payload with
//! AES-256-GCM under a per-payload key derived from the data key. The wrapped data key travels
//! in the payload, so any replica can open it with one KMS call, cached after that.
//!
//! Modules, with dependencies pointing down this list:
//!
//! * [`admin`]: namespace key administration, for `kmscodec keys ...` and the admin API.
//! * [`app`]: wiring from configuration to a running server.
//! * [`server`]: transports (Temporal Codec Server HTTP protocol) and the error table.
//! * [`auth`]: who is calling (static tokens, JWTs, client certificates) and what they may do
//!   per namespace.
//! * [`codec`]: batch encode/decode of Temporal payloads and pass-through rules.
//! * [`keyring`]: per-namespace active data keys, usage limits, rotation, decode cache.
//! * [`keys`]: the [`keys::KeyProvider`] trait and its backends.
//! * [`envelope`]: the sealed payload format; synchronous, no I/O.
//! * [`payload`]: Temporal's Payload messages, protobuf and proto3 JSON.
//! * [`storage`]: Temporal External Storage: resolving references, offloading on encode.
//! * [`secret`]: key types; no crypto.
//! * [`config_check`]: the files a configuration refers to, opened (`config check --deep`).
//! * [`config`]: typed configuration; the only reader of the environment.

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
