//! Waiting for a condition with a deadline instead of sleeping a fixed time.

use std::thread;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// Polls `condition` every 10 ms until it returns `Some`, which is returned.
///
/// # Errors
/// [`HarnessError::Timeout`] naming `what` once `timeout` has passed.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> Result<T, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout(timeout, what.to_string()));
        }
        thread::sleep(Duration::from_millis(10));
    }
}
