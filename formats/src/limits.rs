use std::time::Duration;

/// Sandbox limits applied to every plugin call.
///
/// The defaults are meant for trusted-but-buggy plugins on a laptop or server:
///
/// | limit | default |
/// |---|---|
/// | `deadline` (wall time per call, host tensor ops included) | 30 s |
/// | `max_memory_bytes` (linear memory per instance) | 256 MiB |
/// | `max_host_tensor_bytes` (live host tensors per call) | 1 GiB |
/// | `max_total_host_tensor_bytes` (host tensors of all calls at once) | half the machine's memory |
/// | `max_wasm_stack_bytes` | 512 KiB |
/// | `max_instances` (instances alive at once, pooling allocator) | 256 |
/// | `epoch_tick` (deadline granularity) | 5 ms |
/// | `pooling` (pre-reserved instance slots) | on |
///
/// Going over a limit stops the call with an error naming the plugin and the
/// limit; the host carries on.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Wall-clock budget of one call into a plugin.
    pub deadline: Duration,
    /// Largest linear memory an instance may grow to.
    pub max_memory_bytes: usize,
    /// Largest total size of tensors a single call may hold on the host.
    pub max_host_tensor_bytes: usize,
    /// Largest total size of host tensors all calls of the process may hold
    /// at once (default: half the machine's memory); see [`crate::budget`].
    pub max_total_host_tensor_bytes: usize,
    /// Largest wasm stack.
    pub max_wasm_stack_bytes: usize,
    /// Instances alive at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// How often the epoch ticker checks deadlines.
    pub epoch_tick: Duration,
    /// Use wasmtime's pooling allocator (instance slots reserved up front).
    pub pooling: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(30),
            max_memory_bytes: 256 << 20,
            max_host_tensor_bytes: 1 << 30,
            max_total_host_tensor_bytes: default_process_budget(),
            max_wasm_stack_bytes: 512 << 10,
            max_instances: 256,
            epoch_tick: Duration::from_millis(5),
            pooling: true,
        }
    }
}

impl Limits {
    /// Epoch ticks that make up the deadline (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        (self.deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }
}

/// Limits given for one command (`--max-tensor-memory`, `--deadline`,
/// `--max-memory`);
/// each replaces the default, or a pipeline's, when set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitOverrides {
    /// [`Limits::max_host_tensor_bytes`].
    pub max_host_tensor_bytes: Option<usize>,
    /// [`Limits::deadline`].
    pub deadline: Option<Duration>,
    /// [`Limits::max_total_host_tensor_bytes`].
    pub max_total_host_tensor_bytes: Option<usize>,
}

impl LimitOverrides {
    /// Sets the limits given.
    pub fn apply(&self, limits: &mut Limits) {
        if let Some(m) = self.max_host_tensor_bytes {
            limits.max_host_tensor_bytes = m;
        }
        if let Some(d) = self.deadline {
            limits.deadline = d;
        }
        if let Some(m) = self.max_total_host_tensor_bytes {
            limits.max_total_host_tensor_bytes = m;
        }
    }
}

/// Parses a size as people write it: bytes (`1073741824`) or a number with a
/// unit (`2 GiB`, `512MiB`; `KiB`/`MiB`/`GiB` are powers of 1024,
/// `KB`/`MB`/`GB` of 1000). Zero is refused.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|_| {
            format!(
                "`{text}` is not a size; write bytes, or a number and a unit: `512 MiB`, `2 GiB`"
            )
        })?
        .as_u64();
    if bytes == 0 {
        return Err(format!("`{text}` is no room at all; give a size above 0"));
    }
    usize::try_from(bytes).map_err(|_| format!("`{text}` is more than this machine can address"))
}

/// Parses a duration as people write it: seconds (`30`, `0.5`) or numbers
/// with units (`90s`, `2m`, `1m 30s`, `500ms`). Zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("`{text}` is not a duration")),
        Err(_) => humantime::parse_duration(t).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write seconds, or `90s`, `2m`, `500ms`")
        })?,
    };
    if d.is_zero() {
        return Err(format!(
            "`{text}` leaves no time at all; give a duration above 0"
        ));
    }
    Ok(d)
}

/// Formats a byte count for people: `256 MiB`.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A default for the process's budget: half the machine's memory (from
/// `/proc/meminfo`), or 8 GiB where that cannot be read.
pub fn default_process_budget() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .map_or(8 << 30, |total| total / 2)
}

/// `MemTotal` of a `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_as_people_write_them() {
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("2 gigs").unwrap_err().contains("`2 GiB`"));
        assert!(parse_size("0").unwrap_err().contains("above 0"));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("soon").unwrap_err().contains("`90s`"));
        assert!(parse_duration("0s").unwrap_err().contains("above 0"));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn overrides_set_only_what_was_given() {
        let mut l = Limits::default();
        LimitOverrides::default().apply(&mut l);
        assert_eq!(l, Limits::default());
        LimitOverrides {
            max_host_tensor_bytes: Some(4096),
            max_total_host_tensor_bytes: Some(1 << 20),
            deadline: None,
        }
        .apply(&mut l);
        assert_eq!(l.max_host_tensor_bytes, 4096);
        assert_eq!(l.max_total_host_tensor_bytes, 1 << 20);
        assert_eq!(l.deadline, Limits::default().deadline);
    }

    #[test]
    fn deadline_rounds_up_to_ticks() {
        let l = Limits {
            deadline: Duration::from_millis(12),
            epoch_tick: Duration::from_millis(5),
            ..Limits::default()
        };
        assert_eq!(l.deadline_ticks(), 3);
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn the_default_is_half_the_machines_memory() {
        let meminfo = "MemTotal:       24579048 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_579_048 * 1024));
        assert_eq!(mem_total("nothing"), None);
        assert!(default_process_budget() >= 1 << 20);
    }
}
