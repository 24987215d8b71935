//! The one table mapping failures to HTTP status codes and gRPC codes.
//!
//! Every transport answers from here, so a failure has the same meaning over HTTP, gRPC and in
//! the docs (`docs/configuration.md`, "Errors").

use http::StatusCode;

use crate::codec::ErrorClass;

/// The HTTP status of an error class.
pub fn http_status(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorClass::SlowClient => StatusCode::REQUEST_TIMEOUT,
        ErrorClass::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC status code of an error class.
pub fn grpc_code(class: ErrorClass) -> tonic::Code {
    match class {
        ErrorClass::InvalidInput => tonic::Code::InvalidArgument,
        ErrorClass::TooLarge => tonic::Code::ResourceExhausted,
        ErrorClass::NotFound => tonic::Code::NotFound,
        ErrorClass::Forbidden => tonic::Code::PermissionDenied,
        ErrorClass::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorClass::SlowClient => tonic::Code::DeadlineExceeded,
        ErrorClass::UnsupportedMediaType => tonic::Code::InvalidArgument,
        ErrorClass::Unavailable => tonic::Code::Unavailable,
        ErrorClass::Internal => tonic::Code::Internal,
    }
}
