//! The machine a run ran on: what a run records about it, and whether a run
//! recorded as running still has a live process here.

use tensorlet_registry::{RunDetails, RunHost, RunRecord, RunStatus};

use crate::Runtime;

/// This machine's host name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU model named in `/proc/cpuinfo` text (x86, arm64, riscv and mips
/// name it differently), or `unknown`.
pub fn cpu_model(cpuinfo: &str) -> String {
    for key in ["model name", "Model", "Hardware", "cpu model"] {
        if let Some(v) = cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        }) {
            return v;
        }
    }
    "unknown".into()
}

/// What a run records about where it runs: host, OS, CPU, the device of
/// `rt`, and this process's id (so a later look can tell a crashed run).
pub fn host_record(rt: &Runtime) -> RunHost {
    RunHost {
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpu: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        device: rt.device().info().to_string(),
        pid: Some(std::process::id()),
    }
}

/// Whether the process a run record names is alive on this host.
pub fn process_alive(record: &RunDetails) -> bool {
    let same_host = record.host.hostname == hostname();
    match record.host.pid {
        Some(pid) if same_host => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// A run's status for people: `lost` for one recorded as running whose
/// process on this host is gone (killed or crashed; resuming continues it).
pub fn shown_status(run: &RunRecord) -> &'static str {
    let same_host = run.record.host.hostname == hostname();
    if run.status == RunStatus::Running && same_host && !process_alive(&run.record) {
        "lost"
    } else {
        run.status.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, host: &str, pid: u32) -> RunRecord {
        RunRecord {
            id: "r".into(),
            pipeline: "p".into(),
            status,
            started: String::new(),
            ended: None,
            record: RunDetails {
                host: RunHost {
                    hostname: host.into(),
                    pid: Some(pid),
                    ..RunHost::default()
                },
                ..RunDetails::default()
            },
            state: None,
            model: None,
            error: None,
            tracked: None,
        }
    }

    #[test]
    fn the_cpu_model_is_read_under_each_architectures_key() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x"),
            "AMD EPYC 7B13"
        );
        assert_eq!(cpu_model("Hardware\t: BCM2835\n"), "BCM2835");
        assert_eq!(cpu_model("processor : 0\n"), "unknown");
    }

    #[test]
    fn a_running_run_whose_process_is_gone_here_is_lost() {
        let here = hostname();
        let me = std::process::id();
        assert_eq!(shown_status(&run(RunStatus::Running, &here, me)), "running");
        // No process has a pid this large on Linux (pid_max <= 2^22).
        assert_eq!(
            shown_status(&run(RunStatus::Running, &here, u32::MAX)),
            "lost"
        );
        // Elsewhere it cannot be told: the recorded status stands.
        assert_eq!(
            shown_status(&run(RunStatus::Running, "another-host", u32::MAX)),
            "running"
        );
        assert_eq!(
            shown_status(&run(RunStatus::Interrupted, &here, u32::MAX)),
            "interrupted"
        );
        assert!(process_alive(&run(RunStatus::Running, &here, me).record));
    }
}
