//! SIGTERM when the parent process dies, on request ([`exit_with_parent`]); the node then
//! shuts down as on any SIGTERM (`http_serve::shutdown::signal`).

use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};

use crate::error::NodeError;

/// Asks Linux to send this process SIGTERM when its parent dies (`INFERENCE_NODE_EXIT_WITH_PARENT`,
/// set by the gateway's process runtime), then checks that the parent is still `expected`: if
/// it died before the request, the node has been handed to another process already and the
/// signal would never come, so that is an error (the node exits).
pub fn exit_with_parent(expected: u32) -> Result<(), NodeError> {
    set_parent_process_death_signal(Some(Signal::TERM)).map_err(|e| {
        NodeError::Config(format!(
            "INFERENCE_NODE_EXIT_WITH_PARENT: cannot ask for a parent-death signal: {e}"
        ))
    })?;
    let parent = Pid::as_raw(getppid());
    if u32::try_from(parent).ok() != Some(expected) {
        return Err(NodeError::Config(format!(
            "INFERENCE_NODE_EXIT_WITH_PARENT: the parent process {expected} is gone (the parent is now {parent})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_parent_is_checked() {
        let parent = u32::try_from(Pid::as_raw(getppid())).unwrap();
        exit_with_parent(parent).unwrap();
        let message = exit_with_parent(parent.wrapping_add(1))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("INFERENCE_NODE_EXIT_WITH_PARENT") && message.contains("is gone"),
            "{message}"
        );
        // Leave the test thread as it was.
        set_parent_process_death_signal(None).unwrap();
    }
}
