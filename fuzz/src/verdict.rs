//! What a reader may answer to any bytes: the loaded value, or the clear
//! one-line error that names the file. Anything else is a crash.

use kappa::Error;
use std::path::Path;

/// The value, or `None` after checking that the error is one line naming `path`.
pub fn named<T>(result: Result<T, Error>, path: &Path) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            let message = err.to_string();
            assert!(!message.contains('\n'), "the error is not one line: {message}");
            assert!(message.contains(&path.display().to_string()), "the error does not name {}: {message}", path.display());
            None
        }
    }
}
