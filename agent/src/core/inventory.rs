//! A node's GPU and NIC inventory, and the simulated inventory behind `--fake-gpus`.
//!
//! The shell fills an [`Inventory`] from NVML (and sysfs for NICs) when a driver is present.
//! Without one, [`parse_fake_gpus`] turns a declaration such as `8xH100` into a deterministic
//! inventory with stable fake UUIDs (`GPU-fake-…`), marked `simulated` so every place that shows
//! it can say so. Model memory, NVLink bandwidth and MIG capability come from the same built-in
//! model table the inventory format uses (`sovra_fabric::inventory::builtin_model`).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sovra_fabric::inventory::{builtin_model, builtin_model_names};
use sovra_fabric::topology::{GPUS_PER_NODE_MAX, MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES};

/// Most NICs a simulated inventory declares.
pub const FAKE_NICS_MAX: usize = 32;
/// The NVLink target NCCL reads as "an NVSwitch" when no switch bus id is known.
pub const NVSWITCH_BUS_ID: &str = "fffffff:ffff:ff";
/// NVLink line rate of one link (NVLink 4: 50 GB/s), used to turn a model's bandwidth into
/// a link count for simulated GPUs.
const NVLINK_GBIT_PER_LINK: u32 = 400;

/// A node's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// The node's name.
    pub node: String,
    /// Declared, not detected: no NVIDIA driver was asked.
    pub simulated: bool,
    /// Where it came from: `nvml`, or the fake declaration (`--fake-gpus 8xH100`).
    pub source: String,
    /// NVIDIA driver version, from NVML.
    pub driver_version: Option<String>,
    /// CUDA driver API version (`12.4`), from NVML.
    pub cuda_version: Option<String>,
    /// GPUs in NVML index order (the topology's local index order).
    pub gpus: Vec<GpuInfo>,
    /// Network interfaces for GPU traffic (InfiniBand / RoCE HCAs).
    pub nics: Vec<NicInfo>,
}

/// One physical GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML index, the local index placement uses.
    pub index: u32,
    /// `GPU-…` UUID (`GPU-fake-…` when simulated).
    pub uuid: String,
    /// Model name as NVML reports it (`NVIDIA H100 80GB HBM3`), or the built-in name when
    /// simulated.
    pub name: String,
    /// Device memory.
    pub memory_mib: u64,
    /// PCI bus id in NCCL's form, `0000:17:00.0`.
    pub pci_bus_id: String,
    /// NUMA node of the GPU's PCI root, when known.
    pub numa_node: Option<u32>,
    /// CUDA compute capability (major, minor).
    pub compute_capability: Option<(u32, u32)>,
    /// Whether MIG mode is on.
    pub mig_enabled: bool,
    /// MIG instances that exist now (empty when MIG is off; simulated GPUs create theirs on
    /// demand).
    pub mig_instances: Vec<MigInstance>,
    /// Active NVLinks, grouped by the device at the other end.
    pub nvlinks: Vec<NvLink>,
    /// Health counters.
    pub health: GpuHealth,
}

/// A MIG device (one GPU instance and its compute instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigInstance {
    /// `MIG-…` UUID.
    pub uuid: String,
    /// Compute slices (of 7).
    pub compute_slices: u8,
    /// Memory slices (of 8).
    pub memory_slices: u8,
    /// Memory of the instance.
    pub memory_mib: u64,
}

/// What sits at the other end of an NVLink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NvLinkPeer {
    /// Another GPU (direct NVLink).
    Gpu,
    /// An NVSwitch.
    Switch,
    /// Anything else NVML reports (IBM NPU, unknown).
    Other,
}

/// The NVLinks from one GPU to one remote device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvLink {
    /// Remote PCI bus id (NCCL form), or [`NVSWITCH_BUS_ID`].
    pub remote_pci_bus_id: String,
    /// What the remote device is.
    pub peer: NvLinkPeer,
    /// Number of links.
    pub links: u32,
}

/// Health counters of one GPU. `None` where NVML does not support the counter (or simulated).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuHealth {
    /// Die temperature.
    pub temperature_c: Option<u32>,
    /// Volatile uncorrected ECC errors (since the driver loaded).
    pub ecc_uncorrected: Option<u64>,
    /// Volatile corrected ECC errors.
    pub ecc_corrected: Option<u64>,
    /// The last critical XID seen since the agent started watching.
    pub xid_last: Option<u64>,
}

/// XIDs after which NVIDIA's guidance is to drain the GPU (double-bit ECC, row remap failure,
/// NVLink error, fallen off the bus, contained/uncontained ECC, GSP errors).
const FATAL_XIDS: [u64; 10] = [48, 62, 63, 64, 74, 79, 94, 95, 119, 120];

impl GpuHealth {
    /// Whether the GPU should take new work: no uncorrected ECC error and no fatal XID.
    pub fn healthy(&self) -> bool {
        self.ecc_uncorrected.unwrap_or(0) == 0
            && !self.xid_last.is_some_and(|x| FATAL_XIDS.contains(&x))
    }
}

/// One poll of a GPU's health counters, from the watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSample {
    /// The last critical XID seen, if any.
    pub xid_last: Option<u64>,
    /// Volatile uncorrected ECC errors, where the GPU counts them.
    pub ecc_uncorrected: Option<u64>,
    /// Die temperature.
    pub temperature_c: Option<u32>,
    /// The temperature at which the GPU slows itself down (NVML's slowdown threshold).
    pub slowdown_c: Option<u32>,
}

/// Degrees below the slowdown threshold a GPU must cool to before a new excursion is
/// reported again (hysteresis: no flapping around the threshold).
pub const TEMPERATURE_HYSTERESIS_C: u32 = 5;

/// Turns health samples into problem lines, each reported once: a new fatal XID, a rise in
/// uncorrected ECC errors, a temperature at or above the slowdown threshold (re-armed once the
/// GPU cools [`TEMPERATURE_HYSTERESIS_C`] below it). Pure: the agent's shell feeds samples and
/// sends the lines as `AgentHealth`; the leader drains the node.
#[derive(Clone, Debug, Default)]
pub struct HealthTracker {
    xid: BTreeMap<String, u64>,
    ecc: BTreeMap<String, u64>,
    hot: BTreeMap<String, bool>,
}

impl HealthTracker {
    /// The new problems in `samples` (by GPU UUID), as one line each.
    pub fn problems(&mut self, samples: &BTreeMap<String, HealthSample>) -> Vec<String> {
        let mut out = Vec::new();
        for (uuid, s) in samples {
            if let Some(xid) = s.xid_last {
                if self.xid.get(uuid) != Some(&xid) {
                    self.xid.insert(uuid.clone(), xid);
                    if FATAL_XIDS.contains(&xid) {
                        out.push(format!("GPU {uuid}: critical XID {xid}"));
                    }
                }
            }
            if let Some(ecc) = s.ecc_uncorrected {
                let before = self.ecc.insert(uuid.clone(), ecc).unwrap_or(0);
                if ecc > before {
                    out.push(format!("GPU {uuid}: {ecc} uncorrected ECC errors"));
                }
            }
            if let (Some(t), Some(limit)) = (s.temperature_c, s.slowdown_c) {
                let hot = self.hot.entry(uuid.clone()).or_default();
                if !*hot && t >= limit {
                    *hot = true;
                    out.push(format!(
                        "GPU {uuid}: {t} C, at or above its slowdown threshold of {limit} C"
                    ));
                } else if *hot && t + TEMPERATURE_HYSTERESIS_C <= limit {
                    *hot = false;
                }
            }
        }
        out
    }
}

/// A network interface used for GPU traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicInfo {
    /// Device name (`mlx5_0`).
    pub name: String,
    /// Line rate.
    pub gbit_per_s: u32,
    /// PCI bus id (NCCL form), when known.
    pub pci_bus_id: Option<String>,
    /// NUMA node, when known.
    pub numa_node: Option<u32>,
}

impl MigInstance {
    /// The profile name, `1g.10gb`.
    pub fn profile(&self) -> String {
        format!(
            "{}g.{}gb",
            self.compute_slices,
            self.memory_mib.div_ceil(1024).max(1)
        )
    }
}

impl GpuInfo {
    /// The model as sovra's inventory names it (`H100`, `A100-80GB`), matched from the NVML
    /// name; `None` when no built-in model matches.
    pub fn model_key(&self) -> Option<&'static str> {
        model_key(&self.name)
    }
}

/// Matches an NVML product name against the built-in models, most specific name first
/// (`GB200` before `B200`, `L40S` before `L4`); `A100` is split by memory.
pub fn model_key(nvml_name: &str) -> Option<&'static str> {
    let upper = nvml_name.to_ascii_uppercase();
    let tokens: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.contains(&"A100") {
        let big = tokens.contains(&"80GB");
        return Some(if big { "A100-80GB" } else { "A100-40GB" });
    }
    let mut names: Vec<&'static str> = builtin_model_names().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
        .into_iter()
        .find(|n| tokens.contains(&n.to_ascii_uppercase().as_str()))
}

/// CUDA compute capability of a built-in model, for simulated GPUs.
fn compute_capability(model: &str) -> Option<(u32, u32)> {
    let cc = match model {
        "H100" | "H200" => (9, 0),
        "A100-40GB" | "A100-80GB" => (8, 0),
        "B200" | "GB200" => (10, 0),
        "L40S" | "L4" => (8, 9),
        "A10" => (8, 6),
        "T4" => (7, 5),
        "V100" => (7, 0),
        _ => return None,
    };
    Some(cc)
}

/// A stable UUID-shaped id: `<prefix>-fake-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from a hash of
/// `parts`.
pub fn fake_uuid(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"sovra-fake-device");
    for part in parts {
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{prefix}-fake-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a fake GPU declaration into a simulated inventory for `node`.
///
/// Grammar: a comma list of `N x MODEL [:mig]`, e.g. `8xH100`, `4xA100-80GB:mig,4xA100-80GB`.
/// `MODEL` is a built-in model; `:mig` puts those GPUs in MIG mode (instances are made on
/// demand). `nics` is the inventory format's `COUNTxGBIT` shorthand (`8x400`), or `None`.
/// Errors are one line, lower case.
pub fn parse_fake_gpus(spec: &str, nics: Option<&str>, node: &str) -> Result<Inventory, String> {
    if node.is_empty() {
        return Err("node name is empty".into());
    }
    let mut gpus = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        let (count, rest) = count_x(item)
            .ok_or_else(|| format!("fake gpus {item:?}: expected COUNTxMODEL, e.g. 8xH100"))?;
        let (model_name, mig) = match rest.split_once(':') {
            None => (rest, false),
            Some((m, "mig")) => (m, true),
            Some((_, flag)) => {
                return Err(format!(
                    "fake gpus {item:?}: unknown flag {flag:?} (only :mig)"
                ))
            }
        };
        let model = builtin_model(model_name).ok_or_else(|| {
            let known: Vec<&str> = builtin_model_names().collect();
            format!(
                "fake gpus {item:?}: unknown model {model_name:?} (built in: {})",
                known.join(", ")
            )
        })?;
        if mig && model.mig_profiles.is_empty() {
            return Err(format!(
                "fake gpus {item:?}: {} is not mig-capable",
                model.name
            ));
        }
        if gpus.len() + count as usize > GPUS_PER_NODE_MAX {
            return Err(format!(
                "fake gpus {spec:?}: more than {GPUS_PER_NODE_MAX} gpus on one node"
            ));
        }
        for _ in 0..count {
            let index = gpus.len() as u32;
            let nvlinks = if model.nvlink_gbit_per_s > 0 {
                vec![NvLink {
                    remote_pci_bus_id: NVSWITCH_BUS_ID.to_string(),
                    peer: NvLinkPeer::Switch,
                    links: (model.nvlink_gbit_per_s / NVLINK_GBIT_PER_LINK).max(1),
                }]
            } else {
                Vec::new()
            };
            gpus.push(GpuInfo {
                index,
                uuid: fake_uuid("GPU", &[node, &index.to_string()]),
                name: model.name.clone(),
                memory_mib: model.memory_mib,
                pci_bus_id: format!("0000:{:02x}:00.0", 0x10 + 4 * index),
                numa_node: None,
                compute_capability: compute_capability(&model.name),
                mig_enabled: mig,
                mig_instances: Vec::new(),
                nvlinks,
                health: GpuHealth::default(),
            });
        }
    }
    let nic_list = match nics {
        None => Vec::new(),
        Some(text) => parse_fake_nics(text)?,
    };
    let mut source = format!("--fake-gpus {spec}");
    if let Some(text) = nics {
        source.push_str(&format!(" --fake-nics {text}"));
    }
    Ok(Inventory {
        node: node.to_string(),
        simulated: true,
        source,
        driver_version: None,
        cuda_version: None,
        gpus,
        nics: nic_list,
    })
}

/// `8x400` → eight NICs `mlx5_0..7` of 400 Gbit/s.
fn parse_fake_nics(text: &str) -> Result<Vec<NicInfo>, String> {
    let bad = || format!("fake nics {text:?}: expected COUNTxGBIT, e.g. 8x400");
    let (count, rate) = count_x(text.trim()).ok_or_else(bad)?;
    let gbit_per_s: u32 = rate.parse().map_err(|_| bad())?;
    if gbit_per_s == 0 || count as usize > FAKE_NICS_MAX {
        return Err(bad());
    }
    Ok((0..count)
        .map(|i| NicInfo {
            name: format!("mlx5_{i}"),
            gbit_per_s,
            pci_bus_id: Some(format!("0000:{:02x}:00.0", 0xa0 + 2 * i)),
            numa_node: None,
        })
        .collect())
}

/// `8xH100` → (8, "H100"); the count is positive.
fn count_x(item: &str) -> Option<(u32, &str)> {
    let digits = item.bytes().take_while(u8::is_ascii_digit).count();
    let (count, rest) = item.split_at(digits);
    let rest = rest.strip_prefix(['x', 'X'])?.trim();
    let count: u32 = count.parse().ok()?;
    if count == 0 || rest.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    Some((count, rest))
}

/// The MIG slices of a simulated instance must fit one GPU.
pub fn mig_slices_fit(compute: u8, memory: u8) -> bool {
    compute >= 1 && memory >= 1 && compute <= MIG_COMPUTE_SLICES && memory <= MIG_MEMORY_SLICES
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn render(inv: &Inventory) -> String {
        let mut out = format!(
            "node {} simulated={} source={:?}\n",
            inv.node, inv.simulated, inv.source
        );
        for g in &inv.gpus {
            out.push_str(&format!(
                "gpu {} {} {} {}MiB pci={} cc={:?} mig={} nvlink={:?}\n",
                g.index,
                g.uuid,
                g.name,
                g.memory_mib,
                g.pci_bus_id,
                g.compute_capability,
                g.mig_enabled,
                g.nvlinks.iter().map(|l| l.links).collect::<Vec<_>>()
            ));
        }
        for n in &inv.nics {
            out.push_str(&format!(
                "nic {} {} {:?}\n",
                n.name, n.gbit_per_s, n.pci_bus_id
            ));
        }
        out
    }

    #[test]
    fn fake_inventory() {
        let inv = parse_fake_gpus("2xH100,1xA100-80GB:mig", Some("2x400"), "n1").unwrap();
        expect![[r#"
            node n1 simulated=true source="--fake-gpus 2xH100,1xA100-80GB:mig --fake-nics 2x400"
            gpu 0 GPU-fake-bc4df47a-a179-4a54-4c13-fc457b3b7e38 H100 81920MiB pci=0000:10:00.0 cc=Some((9, 0)) mig=false nvlink=[18]
            gpu 1 GPU-fake-cda8ed79-f4af-7de8-a765-98d814ec3260 H100 81920MiB pci=0000:14:00.0 cc=Some((9, 0)) mig=false nvlink=[18]
            gpu 2 GPU-fake-9ce4652e-25a2-77f2-8191-23a0469b7bb9 A100-80GB 81920MiB pci=0000:18:00.0 cc=Some((8, 0)) mig=true nvlink=[12]
            nic mlx5_0 400 Some("0000:a0:00.0")
            nic mlx5_1 400 Some("0000:a2:00.0")
        "#]]
        .assert_eq(&render(&inv));
        // Stable: the same node gets the same UUIDs; another node gets others.
        let again = parse_fake_gpus("2xH100,1xA100-80GB:mig", Some("2x400"), "n1").unwrap();
        assert_eq!(inv, again);
        let other = parse_fake_gpus("2xH100", None, "n2").unwrap();
        assert_ne!(inv.gpus[0].uuid, other.gpus[0].uuid);
    }

    #[test]
    fn fake_inventory_errors() {
        let cases = [
            ("", None),
            ("H100", None),
            ("0xH100", None),
            ("8xH999", None),
            ("2xL40S:mig", None),
            ("2xH100:nvl", None),
            ("33xH100", None),
            ("8xH100", Some("8")),
            ("8xH100", Some("99x400")),
        ];
        let mut out = String::new();
        for (spec, nics) in cases {
            let err = parse_fake_gpus(spec, nics, "n1").unwrap_err();
            out.push_str(&format!("{spec:?} {nics:?}: {err}\n"));
        }
        expect![[r#"
            "" None: fake gpus "": expected COUNTxMODEL, e.g. 8xH100
            "H100" None: fake gpus "H100": expected COUNTxMODEL, e.g. 8xH100
            "0xH100" None: fake gpus "0xH100": expected COUNTxMODEL, e.g. 8xH100
            "8xH999" None: fake gpus "8xH999": unknown model "H999" (built in: H100, H200, A100-40GB, A100-80GB, B200, GB200, L40S, L4, A10, T4, V100)
            "2xL40S:mig" None: fake gpus "2xL40S:mig": L40S is not mig-capable
            "2xH100:nvl" None: fake gpus "2xH100:nvl": unknown flag "nvl" (only :mig)
            "33xH100" None: fake gpus "33xH100": more than 32 gpus on one node
            "8xH100" Some("8"): fake nics "8": expected COUNTxGBIT, e.g. 8x400
            "8xH100" Some("99x400"): fake nics "99x400": expected COUNTxGBIT, e.g. 8x400
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn model_keys() {
        let cases = [
            "NVIDIA H100 80GB HBM3",
            "NVIDIA H100 PCIe",
            "NVIDIA H200",
            "NVIDIA A100-SXM4-80GB",
            "NVIDIA A100-SXM4-40GB",
            "NVIDIA GB200",
            "NVIDIA B200",
            "NVIDIA L40S",
            "NVIDIA L4",
            "Tesla T4",
            "NVIDIA RTX 6000 Ada Generation",
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|c| format!("{c} => {:?}", model_key(c)))
            .collect();
        expect![[r#"
            NVIDIA H100 80GB HBM3 => Some("H100")
            NVIDIA H100 PCIe => Some("H100")
            NVIDIA H200 => Some("H200")
            NVIDIA A100-SXM4-80GB => Some("A100-80GB")
            NVIDIA A100-SXM4-40GB => Some("A100-40GB")
            NVIDIA GB200 => Some("GB200")
            NVIDIA B200 => Some("B200")
            NVIDIA L40S => Some("L40S")
            NVIDIA L4 => Some("L4")
            Tesla T4 => Some("T4")
            NVIDIA RTX 6000 Ada Generation => None"#]]
        .assert_eq(&out.join("\n"));
    }

    #[test]
    fn health_tracker_reports_each_problem_once() {
        let mut t = HealthTracker::default();
        let sample = |xid, ecc, temp| {
            let mut m = BTreeMap::new();
            m.insert(
                "GPU-a".to_string(),
                HealthSample {
                    xid_last: xid,
                    ecc_uncorrected: ecc,
                    temperature_c: temp,
                    slowdown_c: Some(90),
                },
            );
            m
        };
        assert!(t.problems(&sample(None, Some(0), Some(60))).is_empty());
        // An application XID is no node problem.
        assert!(t.problems(&sample(Some(13), Some(0), Some(60))).is_empty());
        let out = t.problems(&sample(Some(79), Some(2), Some(91)));
        expect![[r#"
            GPU GPU-a: critical XID 79
            GPU GPU-a: 2 uncorrected ECC errors
            GPU GPU-a: 91 C, at or above its slowdown threshold of 90 C"#]]
        .assert_eq(&out.join("\n"));
        // The same state again: nothing new; still hot within the hysteresis: nothing.
        assert!(t.problems(&sample(Some(79), Some(2), Some(87))).is_empty());
        // Cooled below the band, then hot again: reported again. More ECC errors: reported.
        assert!(t.problems(&sample(Some(79), Some(2), Some(85))).is_empty());
        assert_eq!(t.problems(&sample(Some(79), Some(3), Some(90))).len(), 2);
    }

    #[test]
    fn health() {
        let mut h = GpuHealth::default();
        assert!(h.healthy());
        h.xid_last = Some(13);
        assert!(
            h.healthy(),
            "xid 13 (graphics engine exception) is an application error"
        );
        h.xid_last = Some(79);
        assert!(!h.healthy());
        h.xid_last = None;
        h.ecc_uncorrected = Some(1);
        assert!(!h.healthy());
    }
}
