//! Error classes of the load generator. Every failed connection or request
//! lands in exactly one class; nothing is dropped because it was
//! inconvenient (an error during setup or warm-up counts too).

use crate::measurement::Errors;
use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nobody accepted the connection: `ECONNREFUSED`.
    Refused,
    /// The server reset the connection: `ECONNRESET`, `EPIPE`,
    /// `ECONNABORTED`.
    Reset,
    /// No connection or no complete reply within the timeout (`ETIMEDOUT`
    /// from the kernel counts too).
    Timeout,
    /// A reply byte that is not the echo transform of the byte sent, or a
    /// byte nobody asked for.
    Mismatch,
    /// The server closed (EOF) while a reply was owed or the connection was
    /// in use.
    Short,
    /// Anything else; the first one is kept verbatim.
    Other,
}

/// The class of an I/O error from `connect`, `send` or `recv`.
pub fn classify(e: &io::Error) -> ErrorClass {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ErrorClass::Refused,
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => ErrorClass::Reset,
        Some(libc::ETIMEDOUT) => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

/// Counts one error of `class`; `detail` is only built when it will be kept
/// (the first `Other` and the first `Mismatch`).
pub fn record(errors: &mut Errors, class: ErrorClass, detail: impl FnOnce() -> String) {
    match class {
        ErrorClass::Refused => errors.refused += 1,
        ErrorClass::Reset => errors.reset += 1,
        ErrorClass::Timeout => errors.timeout += 1,
        ErrorClass::Short => errors.short += 1,
        ErrorClass::Mismatch => {
            errors.mismatch += 1;
            if errors.first_mismatch.is_none() {
                errors.first_mismatch = Some(detail());
            }
        }
        ErrorClass::Other => {
            errors.other += 1;
            if errors.first_other.is_none() {
                errors.first_other = Some(detail());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn errnos_map_to_their_class() {
        assert_eq!(classify(&errno(libc::ECONNREFUSED)), ErrorClass::Refused);
        assert_eq!(classify(&errno(libc::ECONNRESET)), ErrorClass::Reset);
        assert_eq!(classify(&errno(libc::EPIPE)), ErrorClass::Reset);
        assert_eq!(classify(&errno(libc::ECONNABORTED)), ErrorClass::Reset);
        assert_eq!(classify(&errno(libc::ETIMEDOUT)), ErrorClass::Timeout);
        assert_eq!(classify(&errno(libc::EHOSTUNREACH)), ErrorClass::Other);
        assert_eq!(classify(&io::Error::other("no errno")), ErrorClass::Other);
    }

    #[test]
    fn record_counts_each_class_once_and_keeps_the_first_detail() {
        let mut e = Errors::default();
        for c in [
            ErrorClass::Refused,
            ErrorClass::Reset,
            ErrorClass::Timeout,
            ErrorClass::Mismatch,
            ErrorClass::Short,
            ErrorClass::Other,
        ] {
            record(&mut e, c, || format!("{c:?}"));
        }
        record(&mut e, ErrorClass::Other, || "second".into());
        record(&mut e, ErrorClass::Mismatch, || "second".into());
        assert_eq!(
            (e.refused, e.reset, e.timeout, e.mismatch, e.short, e.other),
            (1, 1, 1, 2, 1, 2)
        );
        assert_eq!(e.total(), 8);
        assert_eq!(e.first_other.as_deref(), Some("Other"));
        assert_eq!(e.first_mismatch.as_deref(), Some("Mismatch"));
    }
}
