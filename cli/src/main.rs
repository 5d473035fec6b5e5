//! `sovra`: the command-line interface.
//!
//! Offline commands work on files alone: `sovra topology check` validates an inventory,
//! `sovra slurm import` converts a Slurm cluster description into one (`sovra topology
//! import-slurm` only summarises it), and `sovra place` dry-runs the placement pipeline for a job
//! file on an idle cluster and explains the decision.
//!
//! Exit codes (documented in `docs/cli.md`): 0 success, 1 runtime error (e.g. a file cannot be
//! read), 2 bad usage or invalid input (inventory, job file), 3 the job cannot be placed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sovra_fabric::topology::Level;
use sovra_fabric::Topology;
use sovra_scheduler::core::job::JobId;
use sovra_scheduler::core::placement::{self, ClusterView, Outcome, PolicyConfig};
use sovra_scheduler::core::state::StateMachine;

mod demo;
mod remote;
mod report;
mod slurm;
mod slurm_import;

/// Exit code: bad usage or invalid input.
const EXIT_INVALID: u8 = 2;
/// Exit code: runtime error.
const EXIT_RUNTIME: u8 = 1;
/// Exit code: the job cannot be placed.
const EXIT_UNSCHEDULABLE: u8 = 3;

#[derive(Parser)]
#[command(
    name = "sovra",
    version,
    about = "sovra: sovereign GPU cluster scheduler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and validate topologies.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Dry-run placement of a job file on an idle cluster and explain the decision.
    Place {
        /// Inventory TOML.
        #[arg(long)]
        inventory: PathBuf,
        /// Job file TOML.
        #[arg(long)]
        job: PathBuf,
        /// Placement seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Submit a job: a job file, or flags and a command (`sovra submit --tenant t
    /// --jurisdiction AU --gpus 2 -- python3 train.py`).
    Submit {
        /// Job file TOML (docs/jobs.md); without one, the flags describe the job.
        #[arg(required_unless_present = "tenant")]
        job: Option<PathBuf>,
        /// Job name (without a job file).
        #[arg(long, conflicts_with = "job")]
        name: Option<String>,
        /// Tenant (without a job file).
        #[arg(long, conflicts_with = "job")]
        tenant: Option<String>,
        /// Allowed jurisdictions, comma separated (without a job file).
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "job",
            requires = "tenant"
        )]
        jurisdiction: Vec<String>,
        /// Whole GPUs (without a job file).
        #[arg(long, conflicts_with = "job")]
        gpus: Option<u32>,
        /// CPUs (without a job file).
        #[arg(long, conflicts_with = "job")]
        cpus: Option<f64>,
        /// Memory in GB (without a job file).
        #[arg(long, conflicts_with = "job")]
        memory_gb: Option<f64>,
        /// Time limit: minutes, or Slurm's M:S, H:M:S, D-H[:M[:S]] (without a job file).
        #[arg(long, conflicts_with = "job")]
        time_limit: Option<String>,
        /// The program and its arguments (without a job file).
        #[arg(last = true, conflicts_with = "job")]
        command: Vec<String>,
        /// Wait for the first scheduling decision and print the placement or the reason.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// List jobs (a linearizable read from the leader).
    #[command(alias = "list")]
    Jobs {
        /// One JSON object per job.
        #[arg(long)]
        json: bool,
        /// Include ended jobs (by default, like squeue, only pending, placed and running).
        #[arg(long, short = 'a')]
        all: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Show one job.
    Status {
        /// Job id.
        job: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Why a job runs where it runs, or why it waits.
    Explain {
        /// Job id.
        job: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// A job's output (stdout, or stderr), read from its node's agent.
    Logs {
        /// Job id.
        job: u64,
        /// The member (gang rank or replica index).
        #[arg(long, default_value_t = 0)]
        rank: u32,
        /// Standard error instead of standard output.
        #[arg(long)]
        stderr: bool,
        /// Keep printing new output until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// List GPU nodes: state, agent, free GPUs.
    Nodes {
        /// One JSON object per node.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Cancel a job.
    Cancel {
        /// Job id.
        job: u64,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Scheduler replicas: leader, membership.
    Cluster {
        #[command(subcommand)]
        command: remote::ClusterCommand,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// GPU nodes: drain, resume, fail, register.
    Node {
        #[command(subcommand)]
        command: remote::NodeCommand,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Run a whole cluster on this machine (3 replicas, 4 agents with simulated GPUs in two
    /// jurisdictions), submit three jobs, show where they ran and why, and stop.
    Demo {
        /// Directory for the demo's certificates, data and logs [default: a new temp dir].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the directory afterwards.
        #[arg(long)]
        keep: bool,
        /// Print one JSON summary line instead of the narrative.
        #[arg(long)]
        json: bool,
    },
    /// The Slurm shim (`sbatch`, `squeue`, `scontrol`, ... as links to this binary).
    #[command(subcommand)]
    Slurm(SlurmCommand),
    /// A demo replica (started by `sovra demo`).
    #[command(hide = true)]
    DemoReplica {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        agent_lease_ms: u64,
    },
    /// A demo agent with a simulated 8xH100 inventory (started by `sovra demo`).
    #[command(hide = true)]
    DemoAgent {
        #[arg(long)]
        node: String,
        #[arg(long, value_delimiter = ',')]
        server: Vec<std::net::SocketAddr>,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        isolation: String,
        /// Answer and send latency probes on this address (loopback in the demo).
        #[arg(long)]
        probe_listen: Option<std::net::SocketAddr>,
    },
    /// A task supervisor of a demo agent (the agent runtime re-executes its binary).
    #[command(hide = true)]
    Supervise { dir: PathBuf },
}

#[derive(Subcommand)]
enum SlurmCommand {
    /// Create `sbatch`, `srun`, `salloc`, `squeue`, `scancel`, `sinfo`, `scontrol` and `sacct`
    /// in DIR as links to this binary (then `PATH=DIR:$PATH scontrol show hostnames 'n[1-3]'`).
    InstallLinks {
        /// Directory for the links (created).
        dir: PathBuf,
    },
    /// Convert slurm.conf (+ gres.conf, topology.conf) into a sovra inventory: the TOML goes to
    /// --output or stdout, the summary and how partitions map onto queues to stderr.
    Import {
        /// slurm.conf.
        slurm_conf: PathBuf,
        /// gres.conf and topology.conf (tree or block), told apart by file name or content.
        files: Vec<PathBuf>,
        /// Jurisdiction of the site (Slurm has no such notion); its queue is the lower-case code.
        #[arg(long)]
        jurisdiction: String,
        /// Site name (default: ClusterName).
        #[arg(long)]
        site: Option<String>,
        /// Give a Slurm GPU type a sovra model: TYPE=MODEL (a built-in one, a100=A100-80GB) or
        /// TYPE=GIB (its memory); types named like a built-in model (h100) need none.
        #[arg(long = "gpu-model", value_name = "TYPE=MODEL")]
        gpu_models: Vec<String>,
        /// Write the inventory here instead of to stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Print the summary as one JSON object on stdout (needs --output).
        #[arg(long, requires = "output")]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// The running cluster's sites and the latency between them (measured by the agents'
    /// probes where they run with --probe-listen, else the inventory's).
    Show {
        /// One JSON object per site pair.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: remote::Conn,
    },
    /// Validate an inventory and print a summary.
    Check {
        /// Inventory TOML.
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Convert slurm.conf (+ topology.conf, gres.conf) and print a summary.
    ImportSlurm {
        /// slurm.conf.
        #[arg(long = "slurm-conf")]
        slurm_conf: PathBuf,
        /// topology.conf (tree or block).
        #[arg(long = "topology-conf")]
        topology_conf: Option<PathBuf>,
        /// gres.conf.
        #[arg(long = "gres-conf")]
        gres_conf: Option<PathBuf>,
        /// Jurisdiction of the site (Slurm has no such notion).
        #[arg(long)]
        jurisdiction: String,
        /// Site name (default: ClusterName).
        #[arg(long)]
        site: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// An error with its exit code.
pub(crate) struct Failure {
    code: u8,
    pub(crate) error: anyhow::Error,
}

pub(crate) fn invalid(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_INVALID,
        error: error.into(),
    }
}

pub(crate) fn runtime(error: anyhow::Error) -> Failure {
    Failure {
        code: EXIT_RUNTIME,
        error,
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`sovra jobs | head`), as Unix tools do, instead of
    // panicking in println!.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Invoked as a Slurm command (a link made by `sovra slurm install-links`)?
    if let Some(command) = std::env::args_os()
        .next()
        .as_ref()
        .and_then(slurm::command_of)
    {
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return ExitCode::from(slurm::run(command, &args));
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("sovra: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// `sovra demo-agent`: one demo node's agent, with a simulated 8xH100 inventory.
fn demo_agent(
    node: String,
    servers: Vec<std::net::SocketAddr>,
    certs: PathBuf,
    state_dir: PathBuf,
    isolation: &str,
    probe_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<u8> {
    use sovra_agent::shell::cgroup::Enforce;
    use sovra_agent::shell::inventory::{detect, InventorySource};
    use sovra_agent::shell::runner::{Isolation, Runner, RunnerConfig};
    let source = InventorySource::Fake {
        gpus: "8xH100".into(),
        nics: Some("4x400".into()),
    };
    let inventory = detect(&source, &node)?;
    // One cgroup root per demo cluster and node (two demos or test clusters at once must not
    // share task cgroups), stable across restarts of this agent: named after its state dir.
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        state_dir.hash(&mut h);
        h.finish() as u32
    };
    let root = sovra_agent::shell::cgroup::default_root().join(format!("demo-{node}-{tag:08x}"));
    let mut config = RunnerConfig::new(state_dir);
    config.isolation = match isolation {
        "session" => Isolation::Session,
        "cgroup" => Isolation::Cgroup {
            root,
            enforce: Enforce::Required,
        },
        _ => Isolation::Cgroup {
            root,
            enforce: Enforce::BestEffort,
        },
    };
    let runner = Runner::open(config, inventory)?;
    let cgroup_root = runner.cgroup_root().cloned();
    let cfg = sovra_agent::shell::join::JoinConfig {
        servers,
        certs,
        node,
        wait: std::time::Duration::from_millis(2000),
        probe_listen,
        probe_interval: std::time::Duration::from_millis(500),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        sovra_agent::shell::join::serve(cfg, runner, stop).await
    })?;
    // The demo's cgroups go with it; a task still running keeps them (and is reported).
    if let Some(root) = cgroup_root {
        if let Err(e) = sovra_agent::shell::cgroup::remove_root(&root) {
            eprintln!("{}: not removed: {e}", root.path.display());
        }
    }
    Ok(0)
}

pub(crate) fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(runtime)
}

fn load_topology(path: &Path) -> Result<Topology, Failure> {
    let text = read(path)?;
    sovra_fabric::inventory::load_inventory(&text)
        .map_err(|e| invalid(anyhow::anyhow!("{}: {e}", path.display())))
}

fn run(cli: Cli) -> Result<u8, Failure> {
    use remote::{ClusterCommand, NodeCommand};
    use sovrad::wire::{ClientOp, ClientResult};
    let cli_command_name = match &cli.command {
        Command::Explain { .. } => "explain",
        _ => "",
    };
    match cli.command {
        Command::Submit {
            job,
            name,
            tenant,
            jurisdiction,
            gpus,
            cpus,
            memory_gb,
            time_limit,
            command,
            wait,
            conn,
        } => {
            let (text, origin) = match &job {
                Some(job) => (read(job)?, job.display().to_string()),
                None => {
                    let mut t = toml::Table::new();
                    if let Some(n) = name {
                        t.insert("name".into(), n.into());
                    }
                    t.insert("tenant".into(), tenant.unwrap_or_default().into());
                    t.insert("jurisdictions".into(), jurisdiction.into());
                    if let Some(c) = cpus {
                        t.insert("cpus".into(), c.into());
                    }
                    if let Some(m) = memory_gb {
                        t.insert("memory_gb".into(), m.into());
                    }
                    if let Some(l) = time_limit {
                        t.insert("time_limit".into(), l.into());
                    }
                    if !command.is_empty() {
                        t.insert("command".into(), command.into());
                    }
                    if let Some(g) = gpus.filter(|&g| g > 0) {
                        let mut batch = toml::Table::new();
                        batch.insert("gpus".into(), i64::from(g).into());
                        t.insert("batch".into(), batch.into());
                    }
                    (t.to_string(), "the flags".to_string())
                }
            };
            sovra_scheduler::jobfile::parse_job(&text)
                .map_err(|e| invalid(anyhow::anyhow!("{origin}: {e}")))?;
            remote::call(
                &conn,
                ClientOp::Submit {
                    job_toml: text,
                    wait_placed: wait,
                },
            )
        }
        Command::Jobs { json, all, conn } => match remote::query(&conn, ClientOp::JobList { all })?
        {
            ClientResult::JobList { jobs } => {
                remote::print_jobs(&jobs, json);
                Ok(0)
            }
            other => Err(runtime(anyhow::anyhow!("unexpected answer {other:?}"))),
        },
        Command::Status { job, json, conn } | Command::Explain { job, json, conn } => {
            let explain = matches!(cli_command_name, "explain");
            match remote::query(&conn, ClientOp::JobInfo { job })? {
                ClientResult::JobList { jobs } if jobs.len() == 1 => {
                    if explain {
                        remote::print_explain(&jobs[0], json);
                    } else {
                        remote::print_jobs(&jobs, json);
                    }
                    Ok(0)
                }
                other => Err(runtime(anyhow::anyhow!("unexpected answer {other:?}"))),
            }
        }
        Command::Logs {
            job,
            rank,
            stderr,
            follow,
            conn,
        } => remote::logs(&conn, job, rank, stderr, follow),
        Command::Nodes { json, conn } => match remote::query(&conn, ClientOp::NodeList)? {
            ClientResult::NodeList { nodes } => {
                remote::print_nodes(&nodes, json);
                Ok(0)
            }
            other => Err(runtime(anyhow::anyhow!("unexpected answer {other:?}"))),
        },
        Command::Cancel { job, conn } => remote::call(&conn, ClientOp::Cancel { job }),
        Command::Cluster { command, conn } => {
            let op = match command {
                ClusterCommand::Leader => ClientOp::Leader,
                ClusterCommand::Add { id, addr } => ClientOp::AddNode {
                    id,
                    addr: addr.to_string(),
                },
                ClusterCommand::Remove { id } => ClientOp::RemoveNode { id },
            };
            remote::call(&conn, op)
        }
        Command::Slurm(SlurmCommand::InstallLinks { dir }) => {
            let made = slurm::install_links(&dir).map_err(runtime)?;
            for link in made {
                println!("{link}");
            }
            Ok(0)
        }
        Command::Slurm(SlurmCommand::Import {
            slurm_conf,
            files,
            jurisdiction,
            site,
            gpu_models,
            output,
            json,
        }) => {
            let files = slurm_import::sort_extra_files(slurm_conf, &files)?;
            let config = slurm_import::ImportConfig {
                jurisdiction,
                site,
                gpu_models,
                output,
                json,
            };
            slurm_import::import(&files, config)
        }
        Command::Demo { dir, keep, json } => {
            demo::run(demo::DemoOptions { dir, keep, json }).map_err(runtime)
        }
        Command::DemoReplica {
            id,
            data,
            certs,
            listen,
            agent_lease_ms,
        } => sovrad::node::run(sovrad::node::RunOptions {
            id,
            listen,
            data,
            certs,
            cluster: "demo".into(),
            tick: std::time::Duration::from_millis(50),
            election_ticks: 10,
            agent_lease_ms,
            inventory: None,
        })
        .map(|()| 0)
        .map_err(runtime),
        Command::DemoAgent {
            node,
            server,
            certs,
            state_dir,
            isolation,
            probe_listen,
        } => demo_agent(node, server, certs, state_dir, &isolation, probe_listen).map_err(runtime),
        Command::Supervise { dir } => sovra_agent::shell::supervisor::supervise(&dir)
            .map(|()| 0)
            .map_err(|e| runtime(anyhow::anyhow!("supervise: {e}"))),
        Command::Node { command, conn } => {
            let op = match command {
                NodeCommand::Drain { node } => ClientOp::Drain { node },
                NodeCommand::Resume { node } => ClientOp::Resume { node },
                NodeCommand::Fail { node } => ClientOp::FailNode { node },
                NodeCommand::Register { node } => ClientOp::RegisterNode { node },
            };
            remote::call(&conn, op)
        }
        Command::Topology(TopologyCommand::Show { json, conn }) => {
            match remote::query(&conn, ClientOp::SiteRtts)? {
                ClientResult::SiteRtts { rtts } => {
                    for r in &rtts {
                        let down = r.rtt_ns >= sovra_fabric::topology::SITE_LINK_DOWN_NS;
                        let source = match (down, r.measured) {
                            (true, _) => "down: probes lost",
                            (false, true) => "measured",
                            (false, false) => "inventory",
                        };
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"a": r.a, "b": r.b, "rtt_ns": r.rtt_ns,
                                    "source": source})
                            );
                        } else if down {
                            println!("{} - {}: unreachable ({source})", r.a, r.b);
                        } else {
                            println!(
                                "{} - {}: {:.3} ms ({source})",
                                r.a,
                                r.b,
                                r.rtt_ns as f64 / 1e6
                            );
                        }
                    }
                    Ok(0)
                }
                other => Err(runtime(anyhow::anyhow!("unexpected answer {other:?}"))),
            }
        }
        Command::Topology(TopologyCommand::Check { file, json }) => {
            let topology = load_topology(&file)?;
            report::print_topology(&topology, json);
            Ok(0)
        }
        Command::Topology(TopologyCommand::ImportSlurm {
            slurm_conf,
            topology_conf,
            gres_conf,
            jurisdiction,
            site,
            json,
        }) => {
            let files = slurm_import::SlurmFiles {
                slurm_conf,
                topology_conf,
                gres_conf,
            };
            let topology = slurm_import::import_slurm(&files, &jurisdiction, site)?;
            report::print_topology(&topology, json);
            Ok(0)
        }
        Command::Place {
            inventory,
            job,
            seed,
            json,
        } => {
            let topology = load_topology(&inventory)?;
            let text = read(&job)?;
            let spec = sovra_scheduler::jobfile::parse_job(&text)
                .map_err(|e| invalid(anyhow::anyhow!("{}: {e}", job.display())))?;
            let sm = StateMachine::with_all_nodes_up(topology, PolicyConfig::default());
            let view: ClusterView<'_> = sm.view();
            let placed = placement::place(view, sm.policy(), JobId(1), &spec, seed);
            let topology = sm.topology();
            match &placed.outcome {
                Outcome::Placed(plan) => {
                    if json {
                        let members: Vec<serde_json::Value> = plan
                            .members
                            .iter()
                            .map(|m| {
                                let node = topology.node(m.node);
                                serde_json::json!({
                                    "node": node.name,
                                    "site": topology.site(node.site).name,
                                    "jurisdiction": topology.site_jurisdiction(node.site).as_str(),
                                    "leaf": leaf_name(topology, m.node),
                                    "gpus": m.take.gpus.to_string(),
                                })
                            })
                            .collect();
                        println!(
                            "{}",
                            serde_json::json!({
                                "placed": true,
                                "seed": plan.seed,
                                "members": members,
                                "explanation": placed.explanation.to_string(),
                            })
                        );
                    } else {
                        for (rank, m) in plan.members.iter().enumerate() {
                            let node = topology.node(m.node);
                            println!(
                                "member {rank}: node {} site {} ({}) gpus {}",
                                node.name,
                                topology.site(node.site).name,
                                topology.site_jurisdiction(node.site),
                                m.take.gpus
                            );
                        }
                        print!("{}", placed.explanation);
                    }
                    Ok(0)
                }
                Outcome::Unschedulable(why) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "placed": false,
                                "reason": why.reason.code(),
                                "message": why.message,
                                "explanation": placed.explanation.to_string(),
                            })
                        );
                    } else {
                        println!("pending: {} ({})", why.reason, why.message);
                        print!("{}", placed.explanation);
                    }
                    Ok(EXIT_UNSCHEDULABLE)
                }
            }
        }
    }
}

fn leaf_name(topology: &Topology, node: sovra_fabric::NodeId) -> String {
    topology.subtree_name(Level::Leaf, topology.subtree_of(Level::Leaf, node))
}
