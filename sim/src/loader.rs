//! The OpenB trace format (Alibaba `cluster-trace-gpu-v2023`): node list and pod list CSVs.
//!
//! Parsing takes the file's text and the name to report errors under; reading the file is the
//! binary's job, so this module stays pure. Every error names the file and the 1-based line:
//! `openb_pod_list_default.csv:17: gpu_milli: "x" is not an integer`.
//!
//! Node list: `sn,cpu_milli,memory_mib,gpu,model` (`model` empty for CPU-only nodes).
//! Pod list: at least `name,cpu_milli,memory_mib,num_gpu,gpu_milli`, optionally `gpu_spec`
//! (`|`-separated allowed models, empty for any), `qos`, and `creation_time`, `deletion_time`,
//! `scheduled_time` (seconds; the time-driven replay in [`crate::trace`] reads them).
//! Columns are found by header name, so their order and any extra columns do not matter.
//! Values follow the reference simulator's conversion (`pod_csv_to_yaml.py`): `gpu_milli` is
//! clamped to 0..=1000 and ignored when `num_gpu` is 0; a GPU count with 0 milli asks for no
//! GPU. Fields are never quoted in these files; a quote is reported rather than guessed at.
//!
//! Plain `split(',')` is all the format needs, and it keeps exact line numbers without a new
//! dependency (house style: conservative dependencies).

use std::collections::HashMap;
use std::fmt;

use sovra_fabric::topology::GPUS_PER_NODE_MAX;

/// One node of the node list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// `sn`.
    pub name: String,
    /// CPU in milli-CPU.
    pub cpu_milli: u64,
    /// Memory.
    pub memory_mib: u64,
    /// GPUs, all of `model`.
    pub gpus: u32,
    /// GPU model; empty when the node has no GPU.
    pub model: String,
}

/// One pod of the pod list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRow {
    /// Pod name.
    pub name: String,
    /// CPU in milli-CPU.
    pub cpu_milli: u64,
    /// Memory.
    pub memory_mib: u64,
    /// GPUs: 0 for a CPU-only pod.
    pub num_gpu: u32,
    /// Milli-GPU per GPU, 1..=1000; 0 exactly when `num_gpu` is 0.
    pub gpu_milli: u32,
    /// Allowed GPU models as written (`V100M16|V100M32`); empty for any.
    pub gpu_spec: String,
    /// Creation time, seconds, when the file has it.
    pub creation_s: Option<u64>,
    /// Deletion time, seconds, when the file has it.
    pub deletion_s: Option<u64>,
    /// Time the original cluster scheduled the pod, seconds, when the file has it (pods that
    /// were never scheduled have none).
    pub scheduled_s: Option<u64>,
    /// QoS class (`LS`, `BE`, `Burstable`, `Guaranteed`); empty when the file has none.
    pub qos: String,
    /// The 1-based line of the pod in its file, for errors found after parsing.
    pub line: usize,
}

impl PodRow {
    /// GPU milli the pod asks for in all: `num_gpu × gpu_milli`.
    pub fn total_milli(&self) -> u64 {
        self.num_gpu as u64 * self.gpu_milli as u64
    }

    /// The allowed models, without empty entries.
    pub fn models(&self) -> Vec<String> {
        self.gpu_spec
            .split('|')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A malformed file: where, and what is wrong. Displays as `file:line: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LoadError {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong, lower case.
    pub message: String,
}

/// The header of a CSV file: column name → index.
struct Header {
    columns: HashMap<String, usize>,
    width: usize,
}

impl Header {
    fn get(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }
}

/// Lines of a file as (1-based line number, fields), skipping blank lines.
struct Csv<'t> {
    file: &'t str,
    lines: std::iter::Enumerate<std::str::Lines<'t>>,
}

impl<'t> Csv<'t> {
    fn new(file: &'t str, text: &'t str) -> Csv<'t> {
        Csv {
            file,
            lines: text.lines().enumerate(),
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.to_string(),
            line,
            message: message.into(),
        }
    }

    fn next_row(&mut self) -> Option<Result<(usize, Vec<&'t str>), LoadError>> {
        for (i, line) in self.lines.by_ref() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let n = i + 1;
            if line.contains('"') {
                return Some(Err(LoadError {
                    file: self.file.to_string(),
                    line: n,
                    message: "quoted fields are not supported".into(),
                }));
            }
            return Some(Ok((n, line.split(',').map(str::trim).collect())));
        }
        None
    }

    fn header(&mut self, required: &[&str]) -> Result<Header, LoadError> {
        let (n, fields) = match self.next_row() {
            None => return Err(self.error(1, "empty file: expected a header line")),
            Some(row) => row?,
        };
        let mut columns = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            if columns.insert(f.to_string(), i).is_some() {
                return Err(self.error(n, format!("column {f:?} appears twice")));
            }
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !columns.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            return Err(self.error(n, format!("header lacks column(s) {}", missing.join(", "))));
        }
        Ok(Header {
            columns,
            width: fields.len(),
        })
    }
}

fn int(csv: &Csv<'_>, line: usize, column: &str, text: &str) -> Result<i64, LoadError> {
    text.parse::<i64>()
        .map_err(|_| csv.error(line, format!("{column}: {text:?} is not an integer")))
}

fn non_negative(csv: &Csv<'_>, line: usize, column: &str, text: &str) -> Result<u64, LoadError> {
    let v = int(csv, line, column, text)?;
    u64::try_from(v).map_err(|_| csv.error(line, format!("{column}: {v} is negative")))
}

fn check_width(csv: &Csv<'_>, header: &Header, line: usize, n: usize) -> Result<(), LoadError> {
    if n != header.width {
        return Err(csv.error(line, format!("{n} fields, the header has {}", header.width)));
    }
    Ok(())
}

/// Parses a node list.
pub fn parse_nodes(file: &str, text: &str) -> Result<Vec<NodeRow>, LoadError> {
    let mut csv = Csv::new(file, text);
    let h = csv.header(&["sn", "cpu_milli", "memory_mib", "gpu", "model"])?;
    let col = |name: &str| h.get(name).expect("checked by header");
    let (c_name, c_cpu, c_mem, c_gpu, c_model) = (
        col("sn"),
        col("cpu_milli"),
        col("memory_mib"),
        col("gpu"),
        col("model"),
    );
    let mut nodes: Vec<NodeRow> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(row) = csv.next_row() {
        let (n, f) = row?;
        check_width(&csv, &h, n, f.len())?;
        let name = f[c_name].to_string();
        if name.is_empty() {
            return Err(csv.error(n, "sn: empty node name"));
        }
        if let Some(first) = seen.insert(name.clone(), n) {
            return Err(csv.error(
                n,
                format!("duplicate node {name:?} (first on line {first})"),
            ));
        }
        let gpus = non_negative(&csv, n, "gpu", f[c_gpu])?;
        if gpus > GPUS_PER_NODE_MAX as u64 {
            return Err(csv.error(
                n,
                format!("gpu: {gpus} gpus, at most {GPUS_PER_NODE_MAX} per node"),
            ));
        }
        let model = match f[c_model] {
            "nan" => "",
            m => m,
        };
        if gpus > 0 && model.is_empty() {
            return Err(csv.error(n, format!("model: {gpus} gpus but no model")));
        }
        nodes.push(NodeRow {
            name,
            cpu_milli: non_negative(&csv, n, "cpu_milli", f[c_cpu])?,
            memory_mib: non_negative(&csv, n, "memory_mib", f[c_mem])?,
            gpus: gpus as u32,
            model: if gpus == 0 {
                String::new()
            } else {
                model.to_string()
            },
        });
    }
    if nodes.is_empty() {
        return Err(csv.error(1, "no nodes"));
    }
    Ok(nodes)
}

/// Parses a pod list.
pub fn parse_pods(file: &str, text: &str) -> Result<Vec<PodRow>, LoadError> {
    let mut csv = Csv::new(file, text);
    let h = csv.header(&["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"])?;
    let col = |name: &str| h.get(name).expect("checked by header");
    let (c_name, c_cpu, c_mem, c_num, c_milli) = (
        col("name"),
        col("cpu_milli"),
        col("memory_mib"),
        col("num_gpu"),
        col("gpu_milli"),
    );
    let (c_spec, c_created, c_deleted, c_scheduled, c_qos) = (
        h.get("gpu_spec"),
        h.get("creation_time"),
        h.get("deletion_time"),
        h.get("scheduled_time"),
        h.get("qos"),
    );
    let mut pods: Vec<PodRow> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(row) = csv.next_row() {
        let (n, f) = row?;
        check_width(&csv, &h, n, f.len())?;
        let name = f[c_name].to_string();
        if name.is_empty() {
            return Err(csv.error(n, "name: empty pod name"));
        }
        if let Some(first) = seen.insert(name.clone(), n) {
            return Err(csv.error(n, format!("duplicate pod {name:?} (first on line {first})")));
        }
        let mut num_gpu = non_negative(&csv, n, "num_gpu", f[c_num])?;
        if num_gpu > GPUS_PER_NODE_MAX as u64 {
            return Err(csv.error(
                n,
                format!("num_gpu: {num_gpu} gpus, at most {GPUS_PER_NODE_MAX} per node"),
            ));
        }
        let mut gpu_milli = int(&csv, n, "gpu_milli", f[c_milli])?.clamp(0, 1_000) as u32;
        if num_gpu == 0 || gpu_milli == 0 {
            (num_gpu, gpu_milli) = (0, 0);
        }
        if num_gpu > 1 && gpu_milli < 1_000 {
            return Err(csv.error(
                n,
                format!("{num_gpu} gpus of {gpu_milli} milli each: shares are of one gpu"),
            ));
        }
        let time = |c: Option<usize>, column: &str| -> Result<Option<u64>, LoadError> {
            match c.map(|c| f[c]) {
                None | Some("") | Some("nan") => Ok(None),
                Some(t) => non_negative(&csv, n, column, t).map(Some),
            }
        };
        let gpu_spec = match c_spec.map(|c| f[c]) {
            None | Some("nan") => String::new(),
            Some(s) => s.to_string(),
        };
        pods.push(PodRow {
            name,
            cpu_milli: non_negative(&csv, n, "cpu_milli", f[c_cpu])?,
            memory_mib: non_negative(&csv, n, "memory_mib", f[c_mem])?,
            num_gpu: num_gpu as u32,
            gpu_milli,
            gpu_spec,
            creation_s: time(c_created, "creation_time")?,
            deletion_s: time(c_deleted, "deletion_time")?,
            scheduled_s: time(c_scheduled, "scheduled_time")?,
            qos: match c_qos.map(|c| f[c]) {
                None | Some("nan") => String::new(),
                Some(q) => q.to_string(),
            },
            line: n,
        });
    }
    if pods.is_empty() {
        return Err(csv.error(1, "no pods"));
    }
    Ok(pods)
}

impl fmt::Display for NodeRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cpu={} mem={} gpus={}x{}",
            self.name, self.cpu_milli, self.memory_mib, self.gpus, self.model
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
                         n0,96000,393216,8,G2\n\
                         n1,32000,262144,0,\n";

    #[test]
    fn parses_nodes_and_pods() {
        let nodes = parse_nodes("nodes.csv", NODES).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].to_string(), "n0 cpu=96000 mem=393216 gpus=8xG2");
        assert_eq!(nodes[1].model, "");
        let pods = parse_pods(
            "pods.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\r\n\
             p0,4000,1024,1,460,\r\n\
             p1,8000,2048,2,1000,V100M16|V100M32\r\n\
             \r\n\
             p2,1000,10,0,0,\r\n\
             p3,1000,10,1,1500,\r\n",
        )
        .unwrap();
        assert_eq!(pods.len(), 4);
        assert_eq!((pods[0].num_gpu, pods[0].gpu_milli), (1, 460));
        assert_eq!(pods[1].models(), ["V100M16", "V100M32"]);
        assert_eq!(pods[1].total_milli(), 2_000);
        assert_eq!((pods[2].num_gpu, pods[2].gpu_milli), (0, 0));
        assert_eq!(
            pods[3].gpu_milli, 1_000,
            "clamped like the reference conversion"
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let pods = |text: &str| parse_pods("pods.csv", text).unwrap_err().to_string();
        let head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n";
        let cases = [
            (
                String::new(),
                "pods.csv:1: empty file: expected a header line",
            ),
            (
                "name,cpu_milli\np0,1\n".to_string(),
                "pods.csv:1: header lacks column(s) memory_mib, num_gpu, gpu_milli",
            ),
            (
                format!("{head}p0,1000,10,1,500\np1,x,10,1,500\n"),
                "pods.csv:3: cpu_milli: \"x\" is not an integer",
            ),
            (
                format!("{head}p0,1000,10,1\n"),
                "pods.csv:2: 4 fields, the header has 5",
            ),
            (
                format!("{head}p0,-5,10,1,500\n"),
                "pods.csv:2: cpu_milli: -5 is negative",
            ),
            (
                format!("{head}p0,1000,10,2,500\n"),
                "pods.csv:2: 2 gpus of 500 milli each: shares are of one gpu",
            ),
            (
                format!("{head}p0,1000,10,1,500\n\np0,1000,10,1,500\n"),
                "pods.csv:4: duplicate pod \"p0\" (first on line 2)",
            ),
            (
                format!("{head}\"p0\",1000,10,1,500\n"),
                "pods.csv:2: quoted fields are not supported",
            ),
            (head.to_string(), "pods.csv:1: no pods"),
        ];
        for (text, expect) in cases {
            assert_eq!(pods(&text), expect);
        }
        let nodes = |text: &str| parse_nodes("nodes.csv", text).unwrap_err().to_string();
        assert_eq!(
            nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,96000,1,40,G2\n"),
            "nodes.csv:2: gpu: 40 gpus, at most 32 per node"
        );
        assert_eq!(
            nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,96000,1,8,\n"),
            "nodes.csv:2: model: 8 gpus but no model"
        );
        assert_eq!(
            nodes(&format!("{NODES}n0,1,1,0,\n")),
            "nodes.csv:4: duplicate node \"n0\" (first on line 2)"
        );
    }
}
