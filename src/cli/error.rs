//! The command line's failure: the exit code and the message that `main` prints on stderr, the
//! mapping of the library's errors onto them, and the exit codes as `--help` shows them (like
//! rage's `bin/error.rs`).

use kmscodec::codec::CodecError;
use kmscodec::keyadmin::AdminError;

/// Exit code for a failed operation (bad input, key provider refusal or outage).
const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
const EXIT_USAGE: u8 = 2;

/// The exit codes, as `--help` of the key commands shows them.
pub(crate) const EXIT_CODES: &str = "Exit codes:\n  \
    0  success\n  \
    1  the operation failed: the key provider refused or is unreachable, or a running process \
    (--sidecar) could not be told (the report says what was done)\n  \
    2  usage or configuration error: nothing was done";

/// Why a command failed: the process exits with `code` after printing `message`.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// A usage or configuration error: nothing was done.
    pub(crate) fn usage(message: impl ToString) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.to_string(),
        }
    }

    /// A failed operation: the key provider refused or is unreachable, bad input, I/O.
    pub(crate) fn failed(message: impl ToString) -> Self {
        Self {
            code: EXIT_FAILED,
            message: message.to_string(),
        }
    }
}

/// An administration error: a usage error when the library says it is one, else a failure.
pub(crate) fn admin_failure(error: AdminError) -> Failure {
    if error.is_usage() {
        Failure::usage(error)
    } else {
        Failure::failed(error)
    }
}

/// A codec error, by its public message and code.
pub(crate) fn codec_failure(error: &CodecError) -> Failure {
    Failure::failed(format!("{} ({})", error.public_message(), error.code()))
}
