//! A short description of the machine a benchmark ran on, for every result line.
//!
//! Numbers are only compared between runs on the same machine, so each line carries the
//! kernel, architecture, CPU model and CPU count, e.g.
//! `Linux 6.8.0 x86_64, AMD EPYC, 2 cpus`. Reads `/proc` where it exists and leaves out what
//! it cannot learn; it never fails.

use std::fs;

/// The machine, in one line.
pub fn describe() -> String {
    let kernel = match fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => format!("{} {}", os_name(), release.trim()),
        Err(_) => os_name().to_string(),
    };
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text))
        .unwrap_or_else(|| "unknown cpu".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{kernel} {}, {cpu}, {cpus} cpus", std::env::consts::ARCH)
}

/// The OS as `uname -s` spells it, for the common cases.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

/// The first `model name` in `/proc/cpuinfo` text, with runs of spaces collapsed.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    let (_, value) = line.split_once(':')?;
    let model = value.split_whitespace().collect::<Vec<_>>().join(" ");
    (!model.is_empty()).then_some(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC  7B13 64-Core\nflags\t: fpu\n";
        assert_eq!(cpu_model(text).as_deref(), Some("AMD EPYC 7B13 64-Core"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        assert_eq!(cpu_model("model name\t:   \n"), None);
    }
}
