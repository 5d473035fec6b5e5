//! The Slurm shim through its links, as a user's `PATH` finds it: `sovra slurm install-links`,
//! then `scontrol show hostnames|hostlist|hostlistsorted` with Slurm 22.05's exact stdout,
//! stderr and exit codes (these need no cluster). Expected outputs follow Slurm's hostlist
//! semantics (`scontrol(1)`, `src/common/hostlist.c`).

use std::path::Path;
use std::process::Command;

fn links() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_sovra"))
        .args(["slurm", "install-links"])
        .arg(dir.path())
        .output()
        .expect("sovra runs");
    assert!(out.status.success(), "{out:?}");
    for name in [
        "sbatch", "srun", "salloc", "squeue", "scancel", "sinfo", "scontrol", "sacct",
    ] {
        assert!(dir.path().join(name).is_symlink(), "{name}");
    }
    dir
}

/// (exit code, stdout, stderr) of `cmd args` from the link directory.
fn run(dir: &Path, cmd: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(dir.join(cmd))
        .args(args)
        .env_remove("SLURM_NODELIST")
        // No cluster: nothing from the environment or a config file points at one.
        .env_remove("SOVRA_SERVER")
        .env_remove("SOVRA_CERTS")
        .env_remove("SOVRA_CONFIG")
        .env("HOME", dir)
        .output()
        .expect("the link runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn scontrol_hostlists_match_slurm() {
    let dir = links();
    let d = dir.path();
    let ok = |out: &str| (0, out.to_string(), String::new());
    // Ranges with zero padding, several tokens, duplicates kept.
    assert_eq!(
        run(
            d,
            "scontrol",
            &["show", "hostnames", "gpu[08-11],login1,gpu09"]
        ),
        ok("gpu08\ngpu09\ngpu10\ngpu11\nlogin1\ngpu09\n")
    );
    // Several bracket groups: the last varies fastest.
    assert_eq!(
        run(d, "scontrol", &["show", "hostnames", "r[1-2]n[1-2]"]),
        ok("r1n1\nr1n2\nr2n1\nr2n2\n")
    );
    assert_eq!(
        run(
            d,
            "scontrol",
            &["show", "hostlist", "tux1,tux2,tux3,tux7,login"]
        ),
        ok("tux[1-3,7],login\n")
    );
    assert_eq!(
        run(
            d,
            "scontrol",
            &["show", "hostlistsorted", "tux10,tux2,tux1,a3"]
        ),
        ok("a3,tux[1-2,10]\n")
    );
    // Abbreviations and an option before the command.
    assert_eq!(
        run(d, "scontrol", &["-o", "sho", "hostn", "n[1-2]"]),
        ok("n1\nn2\n")
    );
    // Errors: Slurm's texts and exit codes.
    assert_eq!(
        run(d, "scontrol", &["show", "hostlist"]),
        (1, String::new(), "invalid encode argument\n".into())
    );
    assert_eq!(
        run(d, "scontrol", &["show", "hostnames"]),
        (
            0,
            String::new(),
            "scontrol: error: host list is empty\n".into()
        )
    );
    // sbatch reads the script before it needs a cluster.
    assert_eq!(
        run(d, "sbatch", &["no-such-job.sh"]),
        (
            1,
            String::new(),
            "sbatch: error: Unable to open file no-such-job.sh\n".into()
        )
    );
    // Without a cluster configured: one line saying what is missing.
    let (code, _, err) = run(d, "squeue", &[]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("squeue: error: no server") && err.lines().count() == 1,
        "{err}"
    );
}
