//! The Slurm shim: the `sovra` binary acts as `sbatch`, `srun`, `salloc`, `squeue`,
//! `scancel`, `sinfo`, `scontrol` and `sacct` when invoked under those names (symlinks made
//! by `sovra slurm install-links DIR`).
//!
//! The parts, each a pure function of its input so the conformance tests need no cluster:
//!
//! - [`sbatch`]: option parsing for `sbatch`/`srun`/`salloc` (command line, `SBATCH_*`,
//!   `#SBATCH`, with Slurm 22.05's precedence, texts and exit codes); [`time`]: Slurm's time
//!   formats;
//! - [`squeue`], [`sinfo`], [`sacct`], [`show`]: the read commands' options and layouts over
//!   [`model::View`], the cluster in Slurm's terms;
//! - [`cluster`]: the glue that reads sovrad into a `View` (partitions are queues bound to
//!   jurisdictions) and runs `scancel` and the job-control calls; [`submit`]: `sbatch`, `srun`
//!   and `salloc` against the cluster;
//! - here: the dispatch, `scontrol` (hostlists need no cluster), and the links.
//!
//! The cluster is found as the `sovra` CLI finds it: `SOVRA_SERVER`, `SOVRA_CERTS`,
//! `SOVRA_USER`, or `~/.config/sovra/config.toml`.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use sovra_fabric::slurm::hostlist;

use model::Output;

pub mod cluster;
pub mod model;
pub mod sacct;
pub mod sbatch;
pub mod show;
pub mod sinfo;
pub mod squeue;
pub mod submit;
pub mod time;

/// The Slurm commands the shim answers to.
pub const COMMANDS: [&str; 8] = [
    "sbatch", "srun", "salloc", "squeue", "scancel", "sinfo", "scontrol", "sacct",
];

/// The Slurm command `argv0` names, if any (by its file name: `/usr/bin/sbatch` → `sbatch`).
pub fn command_of(argv0: &OsString) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    COMMANDS.iter().copied().find(|c| *c == name)
}

/// Runs `command` with its arguments (without argv[0]); returns the exit code.
pub fn run(command: &str, args: &[String]) -> u8 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let env_nodelist = std::env::var("SLURM_NODELIST").ok();
    let (code, out, err) = match command {
        "scontrol" => scontrol(args, env_nodelist.as_deref()),
        "scancel" => cluster::scancel(args),
        "sbatch" => submit::run(sbatch::Cmd::Sbatch, args),
        "srun" => submit::run(sbatch::Cmd::Srun, args),
        "salloc" => submit::run(sbatch::Cmd::Salloc, args),
        "squeue" | "sinfo" | "sacct" => read_command(command, args),
        other => (
            1,
            String::new(),
            format!("{other}: error: unknown Slurm command\n"),
        ),
    };
    // A closed pipe is not an error worth a message (`scontrol show hostnames x | head`).
    let _ = stdout.lock().write_all(out.as_bytes());
    let _ = stderr.lock().write_all(err.as_bytes());
    code
}

/// `squeue`, `sinfo` and `sacct`: one read of the cluster, then the formatter.
fn read_command(command: &str, args: &[String]) -> Output {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    // Help, usage and version need no cluster: the formatters answer them from any view.
    let offline = args.iter().any(|a| {
        matches!(
            a.as_str(),
            "--help" | "--usage" | "-V" | "--version" | "-e" | "--helpformat"
        )
    });
    let view = if offline {
        model::View::default()
    } else {
        let mut session = match cluster::session(command) {
            Ok(s) => s,
            Err(e) => return (1, String::new(), e),
        };
        match cluster::fetch(&mut session, command, command != "sinfo") {
            Ok(v) => v,
            Err(e) => return (1, String::new(), e),
        }
    };
    let me = cluster::current_user();
    match command {
        "squeue" => squeue::squeue(args, &view, &me, &env),
        "sinfo" => sinfo::sinfo(args, &view, &env),
        _ => sacct::sacct(args, &view, &me, &env),
    }
}

/// Slurm's keyword match: `word` abbreviates `keyword` in at least `min` characters
/// (`xstrncasecmp(tag, keyword, MAX(tag_len, min))`).
fn abbreviates(word: &str, keyword: &str, min: usize) -> bool {
    let n = word.len().max(min);
    word.len() <= keyword.len()
        && n <= keyword.len()
        && word.eq_ignore_ascii_case(&keyword[..word.len()])
        && word.len() >= min
}

/// `scontrol`: (exit code, stdout, stderr).
pub fn scontrol(args: &[String], env_nodelist: Option<&str>) -> (u8, String, String) {
    // Options before the command: `-o` (one line per record) and `-d` (details) matter for
    // `show`; the rest (`-Q`, `-v`, ...) change nothing here.
    let options: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .take_while(|a| a.starts_with('-'))
        .collect();
    if options.iter().any(|o| matches!(*o, "-V" | "--version")) {
        return (0, format!("{VERSION}\n"), String::new());
    }
    let flag = |short: char, long: &str| {
        options
            .iter()
            .any(|o| *o == long || (!o.starts_with("--") && o[1..].contains(short)))
    };
    let (one_liner, detail) = (flag('o', "--oneliner"), flag('d', "--details"));
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .skip_while(|a| a.starts_with('-'))
        .collect();
    let Some(&command) = words.first() else {
        return (
            1,
            String::new(),
            "scontrol: error: interactive scontrol is not supported; give a command\n".into(),
        );
    };
    if !abbreviates(command, "show", 3) {
        return scontrol_act(command, &words[1..]);
    }
    let Some(&entity) = words.get(1) else {
        return (
            1,
            String::new(),
            format!("too few arguments for keyword:{command}\n"),
        );
    };
    if words.len() > 3 {
        return (
            1,
            String::new(),
            format!("too many arguments for keyword:{command}\n"),
        );
    }
    // `show job=12` is `show job 12`.
    let (entity, value) = match entity.split_once('=') {
        Some((tag, val)) => (tag, Some(val)),
        None => (entity, words.get(2).copied()),
    };
    if abbreviates(entity, "hostnames", 5) {
        let Some(list) = value.or(env_nodelist) else {
            return (
                0,
                String::new(),
                "scontrol: error: host list is empty\n".into(),
            );
        };
        return match hostlist::expand(list) {
            Ok(hosts) => {
                let mut out = String::new();
                for h in hosts {
                    out.push_str(&h);
                    out.push('\n');
                }
                (0, out, String::new())
            }
            // scontrol reports the error but keeps exit code 0 here.
            Err(_) => (0, String::new(), format!("Invalid hostlist: {list}\n")),
        };
    }
    let sorted = if abbreviates(entity, "hostlist", 5) {
        false
    } else if abbreviates(entity, "hostlistsorted", 9) {
        true
    } else {
        return scontrol_show(command, entity, value, one_liner, detail);
    };
    let Some(arg) = value else {
        return (1, String::new(), "invalid encode argument\n".into());
    };
    // A path names a file of hostnames, one per line (at most 1 MiB).
    let list = if arg.starts_with('/') {
        match std::fs::read(arg) {
            Err(_) => return (1, String::new(), format!("Can not open {arg}\n")),
            Ok(bytes) if bytes.len() >= 1024 * 1024 => {
                return (1, String::new(), format!("File {arg} is too large\n"))
            }
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).replace('\n', ",");
                let mut out = String::with_capacity(text.len());
                for c in text.chars() {
                    if !(c == ',' && out.ends_with(',')) {
                        out.push(c);
                    }
                }
                out
            }
        }
    } else {
        arg.to_string()
    };
    match hostlist::expand(&list) {
        Ok(hosts) => {
            let ranged = if sorted {
                hostlist::compress_sorted(&hosts)
            } else {
                hostlist::compress(&hosts)
            };
            (0, format!("{ranged}\n"), String::new())
        }
        Err(_) => (1, String::new(), format!("Invalid hostlist: {list}\n")),
    }
}

/// `scontrol show job|node|partition` (abbreviated as `scontrol.c` allows) from one read of
/// the cluster.
fn scontrol_show(
    command: &str,
    entity: &str,
    value: Option<&str>,
    one_liner: bool,
    detail: bool,
) -> Output {
    let kind = if abbreviates(entity, "jobs", 1) || abbreviates(entity, "jobid", 1) {
        "job"
    } else if abbreviates(entity, "nodes", 1) {
        "node"
    } else if abbreviates(entity, "partitions", 2) || abbreviates(entity, "partitionname", 2) {
        "partition"
    } else {
        return (
            1,
            String::new(),
            format!("invalid entity:{entity} for keyword:{command} \n"),
        );
    };
    let mut session = match cluster::session("scontrol") {
        Ok(s) => s,
        Err(e) => return (1, String::new(), e),
    };
    let view = match cluster::fetch(&mut session, "scontrol", kind == "job") {
        Ok(v) => v,
        Err(e) => return (1, String::new(), e),
    };
    match kind {
        "job" => show::show_job_arg(&view, value, one_liner, detail),
        "node" => show::show_node(&view, value, one_liner),
        _ => show::show_partition(&view, value, one_liner),
    }
}

/// The `scontrol` commands that act on jobs: `hold`, `uhold`, `release`, `requeue`,
/// `suspend`, `resume`, `update`, and `version` (`scontrol/scontrol.c`, `update_job.c`).
fn scontrol_act(command: &str, args: &[&str]) -> Output {
    use sovrad::wire::JobAction;
    let fail = |text: String| (1, String::new(), text);
    let action = if abbreviates(command, "hold", 4) || abbreviates(command, "uhold", 5) {
        Some(JobAction::Hold)
    } else if abbreviates(command, "release", 3) {
        Some(JobAction::Release)
    } else if abbreviates(command, "requeue", 3) {
        Some(JobAction::Requeue)
    } else if abbreviates(command, "suspend", 2) || abbreviates(command, "resume", 3) {
        // sovra does not stop and continue running jobs (yet).
        let mut err = String::new();
        for a in args {
            err.push_str(&format!(
                "Requested operation is presently disabled for job {a}\n"
            ));
        }
        if args.is_empty() {
            err = format!("too few arguments for keyword:{command}\n");
        }
        return fail(err);
    } else if abbreviates(command, "version", 4) {
        return (0, format!("{VERSION}\n"), String::new());
    } else if abbreviates(command, "update", 1) {
        return scontrol_update(command, args);
    } else {
        return fail(format!("invalid keyword: {command}\n"));
    };
    // `requeue` takes flags (`Incomplete`, `State=SpecialExit`) before the ids.
    let ids: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.eq_ignore_ascii_case("incomplete") && !a.contains("State="))
        .map(|a| {
            a.strip_prefix("JobId=")
                .or_else(|| a.strip_prefix("jobid="))
                .or_else(|| a.strip_prefix("Job="))
                .or_else(|| a.strip_prefix("job="))
                .unwrap_or(a)
        })
        .collect();
    if ids.is_empty() {
        return fail(format!("too few arguments for keyword:{command}\n"));
    }
    let mut session = match cluster::session("scontrol") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let view = match cluster::fetch(&mut session, "scontrol", false) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let mut err = String::new();
    for id in ids {
        if let Err(why) = cluster::control(&mut session, &view, id, action) {
            let why = match (action, why.as_str()) {
                (Some(JobAction::Hold | JobAction::Release), w) if w.contains("completing") => {
                    "Job is no longer pending execution"
                }
                _ => why.as_str(),
            };
            err.push_str(&format!("{why} for job {id}\n"));
        }
    }
    (u8::from(!err.is_empty()), String::new(), err)
}

/// `scontrol update JobId=N TimeLimit=T` (also `TimeLimit=+T`/`-T`); other fields are not
/// supported yet and say so as Slurm does for unknown ones.
fn scontrol_update(command: &str, args: &[&str]) -> Output {
    use sovrad::wire::JobAction;
    let fail = |text: String| (1, String::new(), text);
    if args.is_empty() {
        return fail(format!("too few arguments for {command} keyword\n"));
    }
    let mut job: Option<&str> = None;
    let mut limit: Option<(Option<char>, Option<u64>)> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        let (tag, value) = match arg.split_once('=') {
            Some((t, v)) => (t, v),
            None if i + 1 < args.len() => {
                i += 1;
                (arg, args[i])
            }
            None => {
                return fail(format!("Invalid input: {arg}\nRequest aborted\n"));
            }
        };
        if abbreviates(tag, "JobId", 3) {
            job = Some(value);
        } else if abbreviates(tag, "TimeLimit", 5) {
            let (sign, text) = match value.chars().next() {
                Some(c @ ('+' | '-')) => (Some(c), &value[1..]),
                _ => (None, value),
            };
            match time::parse_time_limit(text) {
                Ok(minutes) => limit = Some((sign, minutes)),
                Err(()) => return fail("scontrol: error: Invalid TimeLimit value\n".into()),
            }
        } else {
            return fail(format!(
                "Update of this parameter is not supported: {arg}\nRequest aborted\n"
            ));
        }
        i += 1;
    }
    let Some(job) = job else {
        return fail("scontrol: error: No job identification provided\n".into());
    };
    let Some((sign, minutes)) = limit else {
        return fail("No changes specified\n".into());
    };
    let mut session = match cluster::session("scontrol") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let view = match cluster::fetch(&mut session, "scontrol", false) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let new_limit = match (sign, minutes) {
        (None, m) => m,
        (Some(_), None) => return fail("scontrol: error: Invalid TimeLimit value\n".into()),
        (Some(sign), Some(delta)) => {
            let current = view
                .jobs
                .iter()
                .find(|j| j.job_id.to_string() == job)
                .and_then(|j| j.time_limit_min);
            match (sign, current) {
                (_, None) => None,
                ('+', Some(c)) => Some(c + delta),
                (_, Some(c)) if delta > c => {
                    return fail(format!(
                        "scontrol: error: TimeLimit decrement larger than current time limit \
                         ({delta} > {c})\n"
                    ))
                }
                (_, Some(c)) => Some(c - delta),
            }
        }
    };
    let action = JobAction::SetTimeLimit(new_limit.map(|m| m * 60_000));
    match cluster::control(&mut session, &view, job, Some(action)) {
        Ok(()) => (0, String::new(), String::new()),
        Err(why) => fail(format!("{why} for job {job}\n")),
    }
}

/// What `-V`/`--version` prints: the Slurm release the shim follows.
pub const VERSION: &str = "slurm 22.05.11";

/// `sovra slurm install-links DIR`: a symlink to this binary for each Slurm command.
/// Existing links are replaced; any other file of those names is left alone (an error).
pub fn install_links(dir: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find the sovra executable")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut made = Vec::new();
    for name in COMMANDS {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)
                .with_context(|| format!("cannot replace {}", link.display()))?,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a link; not replacing it",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot create {}", link.display()))?;
        made.push(link.display().to_string());
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(args: &[&str]) -> (u8, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        scontrol(&args, None)
    }

    #[test]
    fn keywords_abbreviate_as_in_slurm() {
        assert!(abbreviates("hostn", "hostnames", 5));
        assert!(abbreviates("HOSTNAMES", "hostnames", 5));
        assert!(!abbreviates("host", "hostnames", 5));
        assert!(abbreviates("hostlist", "hostlist", 5));
        assert!(!abbreviates("hostlistsorted", "hostlist", 5));
        assert!(abbreviates("hostlists", "hostlistsorted", 9));
        assert!(abbreviates("sho", "show", 3));
        assert!(!abbreviates("sh", "show", 3));
    }

    #[test]
    fn show_hostnames_hostlist_and_hostlistsorted() {
        assert_eq!(
            sc(&["show", "hostnames", "tux[1-3],gpu07"]),
            (0, "tux1\ntux2\ntux3\ngpu07\n".into(), String::new())
        );
        assert_eq!(
            sc(&["show", "hostlist", "n3,n1,n2,n1"]),
            (0, "n[3,1-2,1]\n".into(), String::new())
        );
        assert_eq!(
            sc(&["show", "hostlistsorted", "n3,n1,n2,n10"]),
            (0, "n[1-3,10]\n".into(), String::new())
        );
        assert_eq!(
            sc(&["show", "hostnames", "tux[1-"]),
            (0, String::new(), "Invalid hostlist: tux[1-\n".into())
        );
        assert_eq!(
            sc(&["show", "hostlist", "tux[1-"]),
            (1, String::new(), "Invalid hostlist: tux[1-\n".into())
        );
        assert_eq!(
            sc(&["show", "hostlist"]),
            (1, String::new(), "invalid encode argument\n".into())
        );
        assert_eq!(
            sc(&["show", "hostnames"]),
            (
                0,
                String::new(),
                "scontrol: error: host list is empty\n".into()
            )
        );
        let args = vec!["show".to_string(), "hostnames".to_string()];
        assert_eq!(scontrol(&args, Some("a[1-2]")).1, "a1\na2\n");
    }

    #[test]
    fn hostlist_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "n2\nn1\n\nn3\n").unwrap();
        let p = path.display().to_string();
        assert_eq!(sc(&["show", "hostlistsorted", &p]).1, "n[1-3]\n");
        let missing = dir.path().join("none").display().to_string();
        assert_eq!(
            sc(&["show", "hostlist", &missing]),
            (1, String::new(), format!("Can not open {missing}\n"))
        );
    }
}
