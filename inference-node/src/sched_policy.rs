//! The CPU scheduling policy of the node's threads (`INFERENCE_NODE_SCHED_POLICY`).
//!
//! `normal` leaves Linux's default (`SCHED_OTHER`). `batch` runs every thread under
//! `SCHED_BATCH`: a thread woken by a request no longer preempts the one running, so the
//! work runs in longer stretches with fewer context switches. Replicas that share their
//! host's CPUs with each other and with the gateway gain from it (the image and
//! `scripts/run.sh` set it); a node alone on its CPUs sees no steady difference.
//!
//! The policy is set on the calling thread and inherited by every thread it starts later, so
//! [`apply`] runs before the async runtime and the inference threads exist.

use clap::ValueEnum;
use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
};

/// The policy the node's threads run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchedPolicy {
    /// Linux's default time-sharing policy (`SCHED_OTHER`); nothing is changed.
    Normal,
    /// `SCHED_BATCH`: no wake-up preemption.
    Batch,
}

/// Sets `policy` on the calling thread (and so on the threads it starts afterwards).
///
/// `SCHED_BATCH` needs no privilege, but the library that sets it also sets the nice value,
/// to 0; a node started at another nice value is left as it is, with an error saying so.
pub fn apply(policy: SchedPolicy) -> Result<(), String> {
    if policy == SchedPolicy::Normal {
        return Ok(());
    }
    match current_nice() {
        Some(0) => {}
        Some(nice) => {
            return Err(format!(
                "SCHED_BATCH is set only at nice 0 and the node runs at nice {nice}; left unchanged"
            ));
        }
        None => return Err("cannot read the thread's nice value from /proc".to_string()),
    }
    let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        batch,
    )
    .map_err(|e| format!("cannot set SCHED_BATCH: {e:?}"))?;
    match thread_schedule_policy() {
        Ok(actual) if actual == batch => Ok(()),
        Ok(actual) => Err(format!(
            "asked for SCHED_BATCH, the thread runs under {actual:?}"
        )),
        Err(e) => Err(format!("cannot read the thread's policy back: {e:?}")),
    }
}

/// The calling thread's nice value (field 19 of `/proc/thread-self/stat`, the 17th after the
/// parenthesised command name, which may itself contain spaces and parentheses).
fn current_nice() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_nice(&stat)
}

fn parse_nice(stat: &str) -> Option<i32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of_current_thread() -> ThreadSchedulePolicy {
        thread_schedule_policy().unwrap()
    }

    #[test]
    fn batch_is_set_and_inherited_by_threads_started_afterwards() {
        // On a thread of its own, so that the test harness's threads keep their policy.
        std::thread::spawn(|| {
            apply(SchedPolicy::Batch).unwrap();
            let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
            assert_eq!(policy_of_current_thread(), batch);
            let child = std::thread::spawn(policy_of_current_thread).join().unwrap();
            assert_eq!(child, batch);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn normal_changes_nothing() {
        std::thread::spawn(|| {
            let before = policy_of_current_thread();
            apply(SchedPolicy::Normal).unwrap();
            assert_eq!(policy_of_current_thread(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_nice_value_is_read_after_the_command_name() {
        let stat = "4242 (infer-a) b) R 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 5 3 0 9";
        assert_eq!(parse_nice(stat), Some(5));
        assert_eq!(parse_nice("4242 (x) R 1"), None);
        assert_eq!(current_nice().map(|n| (-20..=19).contains(&n)), Some(true));
    }
}
