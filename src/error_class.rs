//! The class of a failure, shared by every layer that can fail a request (codec, keyring,
//! external storage, authentication) and mapped to an HTTP status and a gRPC code in one place,
//! `server::error`. A leaf: it imports nothing.

/// The class of a failure, which decides the HTTP status and gRPC code (see `server::error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request or a payload in it is invalid (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidInput,
    /// The request is larger than the limits (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    TooLarge,
    /// The namespace has no key, or the key is gone (HTTP 404, gRPC NOT_FOUND).
    NotFound,
    /// The key provider refused, the namespace is decrypt-only, or the caller lacks the role
    /// (HTTP 403, gRPC PERMISSION_DENIED).
    Forbidden,
    /// The caller did not authenticate (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// The request body did not arrive within the request's deadline (HTTP 408, gRPC
    /// DEADLINE_EXCEEDED).
    SlowClient,
    /// The request is not JSON (HTTP 415; gRPC INVALID_ARGUMENT, never produced there).
    UnsupportedMediaType,
    /// The key provider is unreachable or no key arrived in time; retry (HTTP 503,
    /// gRPC UNAVAILABLE).
    Unavailable,
    /// A bug or broken local state (HTTP 500, gRPC INTERNAL).
    Internal,
}
