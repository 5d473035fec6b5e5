//! `sovra slurm import` and `sovra topology import-slurm`: a Slurm cluster description
//! (`slurm.conf`, `gres.conf`, `topology.conf`) to a sovra inventory.
//!
//! The fabric crate parses and maps the files (`sovra_fabric::slurm`) and writes the inventory
//! (`sovra_fabric::inventory::write_inventory`); this module does the IO around them: it reads
//! the files, tells a `gres.conf` from a `topology.conf`, gives Slurm's GPU types the specs of
//! sovra models (Slurm does not say how much memory a GPU has, and an inventory must), and
//! reports how the Slurm partitions map onto sovra queues. Errors name the file they are about.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use sovra_fabric::inventory::{builtin_model, builtin_model_names, write_inventory};
use sovra_fabric::slurm::{self, ConfFile, PartitionNodes, SlurmConf, SlurmImportError};
use sovra_fabric::topology::{GpuModelDesc, TopologyDesc};
use sovra_fabric::{Jurisdiction, Topology};

use crate::{invalid, read, runtime, Failure};

/// The files of one Slurm cluster.
pub struct SlurmFiles {
    /// `slurm.conf`.
    pub slurm_conf: PathBuf,
    /// `topology.conf`, tree or block plugin.
    pub topology_conf: Option<PathBuf>,
    /// `gres.conf`.
    pub gres_conf: Option<PathBuf>,
}

/// What `sovra slurm import` needs besides the files.
pub struct ImportConfig {
    /// The site's jurisdiction (Slurm has no such notion).
    pub jurisdiction: String,
    /// The site's name; `None` uses `ClusterName`.
    pub site: Option<String>,
    /// `--gpu-model TYPE=MODEL` or `TYPE=GIB`, as given.
    pub gpu_models: Vec<String>,
    /// Where the inventory goes; `None` is standard output.
    pub output: Option<PathBuf>,
    /// Print the summary as one JSON line on standard output.
    pub json: bool,
}

/// Sorts the extra files of `sovra slurm import` into `gres.conf` and `topology.conf`: by file
/// name, else by content.
pub fn sort_extra_files(slurm_conf: PathBuf, extra: &[PathBuf]) -> Result<SlurmFiles, Failure> {
    let mut files = SlurmFiles {
        slurm_conf,
        topology_conf: None,
        gres_conf: None,
    };
    for path in extra {
        let kind = match path.file_name().and_then(|n| n.to_str()) {
            Some("topology.conf") => ConfFile::TopologyConf,
            Some("gres.conf") => ConfFile::GresConf,
            _ => kind_by_content(&read(path)?)
                .map_err(|why| invalid(anyhow!("{}: {why}", path.display())))?,
        };
        let slot = match kind {
            ConfFile::TopologyConf => &mut files.topology_conf,
            _ => &mut files.gres_conf,
        };
        if let Some(first) = slot {
            return Err(invalid(anyhow!(
                "{}: a second {kind} (the first is {})",
                path.display(),
                first.display()
            )));
        }
        *slot = Some(path.clone());
    }
    Ok(files)
}

/// `topology.conf` when a line starts a `SwitchName=` or `BlockName=` record, `gres.conf` when
/// a line has a `Name=` key.
fn kind_by_content(text: &str) -> Result<ConfFile, String> {
    let (mut topology, mut gres) = (false, false);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        // Blanks around `=` are allowed: `Name = gpu`.
        let mut line = line.replace('\t', " ");
        while line.contains(" =") || line.contains("= ") {
            line = line.replace(" =", "=").replace("= ", "=");
        }
        for token in line.split_whitespace() {
            let Some((key, _)) = token.split_once('=') else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            topology |= key == "switchname" || key == "blockname";
            gres |= key == "name";
        }
    }
    match (topology, gres) {
        (true, false) => Ok(ConfFile::TopologyConf),
        (false, true) => Ok(ConfFile::GresConf),
        (true, true) => Err("has both SwitchName=/BlockName= and Name= lines; \
                             name it topology.conf or gres.conf"
            .to_string()),
        (false, false) => Err(
            "not recognised as gres.conf (no Name= line) or topology.conf \
                               (no SwitchName= or BlockName= line)"
                .to_string(),
        ),
    }
}

/// Reads, parses and maps the files onto one site; errors name the file.
fn import_desc(
    files: &SlurmFiles,
    jurisdiction: &str,
    site: Option<String>,
) -> Result<(SlurmConf, TopologyDesc), Failure> {
    let at = |path: &Path, e: &dyn std::fmt::Display| invalid(anyhow!("{}: {e}", path.display()));
    let conf_path = &files.slurm_conf;
    let conf = slurm::parse_slurm_conf(&read(conf_path)?).map_err(|e| at(conf_path, &e))?;
    let topology = match &files.topology_conf {
        Some(p) => Some(slurm::parse_topology_conf(&read(p)?).map_err(|e| at(p, &e))?),
        None => None,
    };
    let gres = match &files.gres_conf {
        Some(p) => Some(slurm::parse_gres_conf(&read(p)?).map_err(|e| at(p, &e))?),
        None => None,
    };
    let opts = slurm::ImportOptions {
        site,
        jurisdiction: Some(jurisdiction.to_string()),
        region: String::new(),
        blocks_are_nvlink_domains: false,
    };
    let desc = slurm::import(&conf, topology.as_ref(), gres.as_ref(), &opts).map_err(|e| {
        // Name the file by its path, as the parse errors do.
        let path = |file: ConfFile| match file {
            ConfFile::SlurmConf => Some(conf_path),
            ConfFile::TopologyConf => files.topology_conf.as_ref(),
            ConfFile::GresConf => files.gres_conf.as_ref(),
        };
        let file = match &e {
            SlurmImportError::Line { file, .. } | SlurmImportError::File { file, .. } => {
                path(*file)
            }
            SlurmImportError::Options { .. } => None,
        };
        match file {
            Some(p) => invalid(anyhow!("{}: {e}", p.display())),
            None => invalid(anyhow!("slurm import: {e}")),
        }
    })?;
    Ok((conf, desc))
}

/// `sovra topology import-slurm`: reads and converts a Slurm cluster description.
pub fn import_slurm(
    files: &SlurmFiles,
    jurisdiction: &str,
    site: Option<String>,
) -> Result<Topology, Failure> {
    let (_, desc) = import_desc(files, jurisdiction, site)?;
    Topology::build(desc).map_err(|e| invalid(anyhow!("slurm import: {e}")))
}

/// `sovra slurm import`: writes the inventory, then prints the summary (to standard error, or
/// as one JSON line on standard output), the GPU models and the partitions.
pub fn import(files: &SlurmFiles, config: ImportConfig) -> Result<u8, Failure> {
    let (conf, mut desc) = import_desc(files, &config.jurisdiction, config.site.clone())?;
    let mapped = map_gpu_models(&mut desc, &config.gpu_models).map_err(invalid)?;
    let topology =
        Topology::build(desc.clone()).map_err(|e| invalid(anyhow!("slurm import: {e}")))?;
    // The import validated the code.
    let jurisdiction = Jurisdiction::parse(&config.jurisdiction)
        .map_err(|e| invalid(anyhow!("slurm import: {e}")))?;
    let partitions = partitions(&conf, &desc, jurisdiction);

    let mut header = vec![
        "A sovra inventory (docs/inventory.md), converted from Slurm by `sovra slurm import`."
            .to_string(),
        format!("slurm.conf: {}", files.slurm_conf.display()),
    ];
    for (kind, path) in [
        ("topology.conf", &files.topology_conf),
        ("gres.conf", &files.gres_conf),
    ] {
        if let Some(path) = path {
            header.push(format!("{kind}: {}", path.display()));
        }
    }
    header.push(format!(
        "Jurisdiction {jurisdiction} was given on the command line: Slurm has none."
    ));
    for m in &mapped {
        header.push(format!("GPU type {}", m.line()));
    }
    for p in &partitions {
        header.push(format!("Slurm partition {}", p.line()));
    }
    if partitions.iter().any(|p| p.subset.is_some()) {
        header.push(format!(
            "A sovra queue is bound to jurisdictions, not nodes: jobs of queue {} may run on \
             any node of {jurisdiction}.",
            jurisdiction.as_str().to_ascii_lowercase()
        ));
    }
    let text = write_inventory(&desc, &header.join("\n")).map_err(|e| {
        invalid(anyhow!(
            "{}: cannot write an inventory: {e}",
            files.slurm_conf.display()
        ))
    })?;

    match &config.output {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| runtime(anyhow!("cannot write {}: {e}", path.display())))?,
        None => print!("{text}"),
    }
    if config.json {
        let mut summary = crate::report::topology_json(&topology);
        summary["output"] = config
            .output
            .as_ref()
            .map(|p| p.display().to_string())
            .into();
        summary["gpu_models"] = mapped.iter().map(MappedModel::json).collect();
        summary["partitions"] = partitions.iter().map(PartitionMap::json).collect();
        println!("{summary}");
        return Ok(0);
    }
    let mut summary = crate::report::topology_text(&topology);
    for m in &mapped {
        summary += &format!("gpu type {}\n", m.line());
    }
    for p in &partitions {
        summary += &format!("partition {}\n", p.line());
    }
    if let Some(path) = &config.output {
        summary += &format!("inventory written to {}\n", path.display());
    }
    eprint!("{summary}");
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// GPU models.

/// A Slurm GPU type and the sovra model it became.
struct MappedModel {
    slurm_type: String,
    model: GpuModelDesc,
    how: &'static str,
}

impl MappedModel {
    fn line(&self) -> String {
        let m = &self.model;
        let mut specs = format!("{} GiB", m.memory_mib / 1024);
        if m.nvlink_gbit_per_s > 0 {
            specs += &format!(", nvlink {} gbit/s", m.nvlink_gbit_per_s);
        }
        if !m.mig_profiles.is_empty() {
            specs += ", mig";
        }
        format!(
            "{} -> model {}: {specs} ({})",
            self.slurm_type, m.name, self.how
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "slurm_type": self.slurm_type,
            "model": self.model.name,
            "memory_mib": self.model.memory_mib,
        })
    }
}

/// Gives each Slurm GPU type (a model without memory) the specs of a sovra model: the one
/// `--gpu-model TYPE=MODEL` names, a model of `--gpu-model TYPE=GIB`, or the built-in model
/// the type is named after (`h100` is `H100`). Nodes' GPUs follow the new names.
fn map_gpu_models(
    desc: &mut TopologyDesc,
    flags: &[String],
) -> Result<Vec<MappedModel>, anyhow::Error> {
    let builtins = || builtin_model_names().collect::<Vec<_>>().join(", ");
    // Every flag is checked before any type is mapped, so a typo is reported as such.
    let mut given: Vec<(&str, GpuModelDesc)> = Vec::new();
    for flag in flags {
        let Some((slurm_type, target)) = flag.split_once('=') else {
            return Err(anyhow!(
                "--gpu-model {flag:?}: expected TYPE=MODEL or TYPE=GIB"
            ));
        };
        let Some(m) = desc
            .models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(slurm_type))
        else {
            let types: Vec<&str> = desc.models.iter().map(|m| m.name.as_str()).collect();
            let types = if types.is_empty() {
                "none".to_string()
            } else {
                types.join(", ")
            };
            return Err(anyhow!(
                "--gpu-model {flag:?}: the slurm files have no gpu type {slurm_type:?} \
                 (they have: {types})"
            ));
        };
        let model = match (target.parse::<u64>(), builtin_model(target)) {
            (Ok(gib), _) if gib > 0 && gib <= u64::MAX / 1024 => GpuModelDesc {
                name: m.name.clone(),
                memory_mib: gib * 1024,
                nvlink_gbit_per_s: 0,
                mig_profiles: Vec::new(),
            },
            (_, Some(model)) => model,
            _ => {
                return Err(anyhow!(
                    "--gpu-model {flag:?}: {target:?} is neither a built-in model ({}) nor a \
                     memory in GiB",
                    builtins()
                ))
            }
        };
        given.push((slurm_type, model));
    }
    let mut mapped = Vec::new();
    for m in &desc.models {
        let flag = given
            .iter()
            .rev()
            .find(|(t, _)| t.eq_ignore_ascii_case(&m.name));
        let (model, how) = match flag {
            Some((_, model)) => (model.clone(), "--gpu-model"),
            None => match builtin_model(&m.name) {
                Some(model) => (model, "built in"),
                None => {
                    return Err(anyhow!(
                        "gpu type {:?}: slurm does not say how much memory it has; map it onto \
                         a sovra model with --gpu-model {}=MODEL (built in: {}) or {}=GIB",
                        m.name,
                        m.name,
                        builtins(),
                        m.name
                    ))
                }
            },
        };
        mapped.push(MappedModel {
            slurm_type: m.name.clone(),
            model,
            how,
        });
    }
    // Several types may become one model; each model is declared once, where first used.
    let mut models: Vec<GpuModelDesc> = Vec::new();
    for m in &mapped {
        match models
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(&m.model.name))
        {
            Some(x) if *x != m.model => {
                return Err(anyhow!(
                    "gpu types map onto two different models named {:?}",
                    m.model.name
                ))
            }
            Some(_) => {}
            None => models.push(m.model.clone()),
        }
    }
    for gpu in desc.nodes.iter_mut().flat_map(|n| &mut n.gpus) {
        let m = mapped
            .iter()
            .find(|m| m.slurm_type == gpu.model)
            .ok_or_else(|| anyhow!("gpu model {:?} of the import is unknown", gpu.model))?;
        let name = &models
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(&m.model.name))
            .expect("every mapped model is declared")
            .name;
        gpu.model = name.clone();
    }
    desc.models = models;
    Ok(mapped)
}

// ---------------------------------------------------------------------------------------------
// Partitions.

/// A Slurm partition and the sovra queue it becomes.
struct PartitionMap {
    name: String,
    /// The partition's nodes as a hostlist, or `ALL`.
    nodes: String,
    default: bool,
    queue: String,
    jurisdiction: Jurisdiction,
    /// The partition has only some of the site's nodes: a queue cannot be limited so.
    subset: Option<(usize, usize)>,
}

impl PartitionMap {
    fn line(&self) -> String {
        let default = if self.default { ", default" } else { "" };
        let mut line = format!(
            "{} (nodes {}{default}) -> queue {} (jurisdiction {})",
            self.name, self.nodes, self.queue, self.jurisdiction
        );
        if let Some((listed, total)) = self.subset {
            line += &format!(
                ", not limited to these {listed} of {total} nodes: a queue spans its jurisdiction"
            );
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "partition": self.name,
            "nodes": self.nodes,
            "default": self.default,
            "queue": self.queue,
            "jurisdiction": self.jurisdiction.as_str(),
            "subset": self.subset.is_some(),
        })
    }
}

/// How each partition maps: all of them onto the jurisdiction's queue, named by its code in
/// lower case.
fn partitions(
    conf: &SlurmConf,
    desc: &TopologyDesc,
    jurisdiction: Jurisdiction,
) -> Vec<PartitionMap> {
    let queue = jurisdiction.as_str().to_ascii_lowercase();
    conf.partitions
        .iter()
        .map(|p| {
            let (nodes, subset) = match &p.nodes {
                PartitionNodes::All => ("ALL".to_string(), None),
                PartitionNodes::Names(names) => {
                    let names_set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                    let listed = desc
                        .nodes
                        .iter()
                        .filter(|n| names_set.contains(n.name.as_str()))
                        .count();
                    let total = desc.nodes.len();
                    let text = if names.is_empty() {
                        "none".to_string()
                    } else {
                        slurm::hostlist::compress(names)
                    };
                    (text, (listed < total).then_some((listed, total)))
                }
            };
            PartitionMap {
                name: p.name.clone(),
                nodes,
                default: p.default,
                queue: queue.clone(),
                jurisdiction,
                subset,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn files_are_told_apart_by_content() {
        let cases = [
            "SwitchName=s1 Nodes=n[1-4]",
            "  blockname = b1 Nodes=n[1-4]",
            "NodeName=n[1-4] Name=gpu Type=h100 File=/dev/nvidia[0-3]",
            "Name=gpu File=/dev/nvidia0",
            "Name\t=  gpu",
            "AutoDetect=nvml # SwitchName=s1",
            "ClusterName=x\nNodeName=n1 CPUs=4",
            "SwitchName=s1 Nodes=n1\nName=gpu",
            "",
        ];
        let out: String = cases
            .iter()
            .map(|text| {
                let kind = kind_by_content(text).map(|k| k.to_string());
                format!("{text:?} => {}\n", kind.unwrap_or_else(|e| e))
            })
            .collect();
        expect![[r#"
            "SwitchName=s1 Nodes=n[1-4]" => topology.conf
            "  blockname = b1 Nodes=n[1-4]" => topology.conf
            "NodeName=n[1-4] Name=gpu Type=h100 File=/dev/nvidia[0-3]" => gres.conf
            "Name=gpu File=/dev/nvidia0" => gres.conf
            "Name\t=  gpu" => gres.conf
            "AutoDetect=nvml # SwitchName=s1" => not recognised as gres.conf (no Name= line) or topology.conf (no SwitchName= or BlockName= line)
            "ClusterName=x\nNodeName=n1 CPUs=4" => not recognised as gres.conf (no Name= line) or topology.conf (no SwitchName= or BlockName= line)
            "SwitchName=s1 Nodes=n1\nName=gpu" => has both SwitchName=/BlockName= and Name= lines; name it topology.conf or gres.conf
            "" => not recognised as gres.conf (no Name= line) or topology.conf (no SwitchName= or BlockName= line)
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn gpu_types_become_models() {
        let conf = "NodeName=a[1-2] Gres=gpu:a100:4,gpu:H100:4\nNodeName=b1 Gres=gpu:x:1";
        let conf = slurm::parse_slurm_conf(conf).unwrap();
        let opts = slurm::ImportOptions {
            site: Some("s".to_string()),
            jurisdiction: Some("AU".to_string()),
            ..Default::default()
        };
        let desc = slurm::import(&conf, None, None, &opts).unwrap();
        let run = |flags: &[&str]| {
            let mut desc = desc.clone();
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            match map_gpu_models(&mut desc, &flags) {
                Err(e) => format!("error: {e}\n"),
                Ok(mapped) => {
                    let mut out: String = mapped.iter().map(|m| m.line() + "\n").collect();
                    let gpus: Vec<&str> = desc
                        .nodes
                        .iter()
                        .flat_map(|n| &n.gpus)
                        .map(|g| g.model.as_str())
                        .collect();
                    out += &format!("gpus {}\n", gpus.join(" "));
                    out
                }
            }
        };
        let out = [
            run(&[]),
            run(&["a100=A100-40GB", "x=16"]),
            run(&["a100=h100", "x=16"]),
            run(&["a100=A100-40GB", "x=16", "y=1"]),
            run(&["a100=A100-40GB", "x=nope"]),
            run(&["a100"]),
        ]
        .join("--\n");
        expect![[r#"
            error: gpu type "a100": slurm does not say how much memory it has; map it onto a sovra model with --gpu-model a100=MODEL (built in: H100, H200, A100-40GB, A100-80GB, B200, GB200, L40S, L4, A10, T4, V100) or a100=GIB
            --
            a100 -> model A100-40GB: 40 GiB, nvlink 4800 gbit/s, mig (--gpu-model)
            H100 -> model H100: 80 GiB, nvlink 7200 gbit/s, mig (built in)
            x -> model x: 16 GiB (--gpu-model)
            gpus A100-40GB A100-40GB A100-40GB A100-40GB H100 H100 H100 H100 A100-40GB A100-40GB A100-40GB A100-40GB H100 H100 H100 H100 x
            --
            a100 -> model H100: 80 GiB, nvlink 7200 gbit/s, mig (--gpu-model)
            H100 -> model H100: 80 GiB, nvlink 7200 gbit/s, mig (built in)
            x -> model x: 16 GiB (--gpu-model)
            gpus H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 H100 x
            --
            error: --gpu-model "y=1": the slurm files have no gpu type "y" (they have: a100, H100, x)
            --
            error: --gpu-model "x=nope": "nope" is neither a built-in model (H100, H200, A100-40GB, A100-80GB, B200, GB200, L40S, L4, A10, T4, V100) nor a memory in GiB
            --
            error: --gpu-model "a100": expected TYPE=MODEL or TYPE=GIB
        "#]]
        .assert_eq(&out);
    }
}
