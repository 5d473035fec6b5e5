//! The real GPU inventory, from NVML.
//!
//! `nvml-wrapper` loads `libnvidia-ml.so.1` at run time, so the agent builds and starts on any
//! machine; [`probe`] fails with one line when the library or the driver is missing, and the
//! caller may fall back to a declared (simulated) inventory. Fields a GPU does not support
//! (ECC on consumer parts, MIG before Ampere) are left empty rather than failing the probe.
//!
//! [`HealthWatcher`] follows critical XID events and polls ECC and temperature on a dedicated
//! thread: NVML's event wait blocks, so it cannot share the agent's event loop. It is the one
//! thread this crate starts; [`crate::core::inventory::HealthTracker`] decides what to report.

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{cuda_driver_version_major, cuda_driver_version_minor, Device, Nvml};
use sovra_fabric::topology::GPUS_PER_NODE_MAX;

use crate::core::inventory::{
    GpuHealth, GpuInfo, HealthSample, Inventory, MigInstance, NvLink, NvLinkPeer, NVSWITCH_BUS_ID,
};

/// NVLinks per GPU NVML can report (`NVML_NVLINK_MAX_LINKS`).
const NVLINK_LINKS_MAX: u32 = 18;
/// MIG slices of memory on a MIG-capable GPU.
const MIG_MEMORY_SLICES: u64 = 8;
/// How long one XID wait blocks before the watcher checks whether it should stop.
const XID_WAIT_MS: u32 = 500;
/// How often the watcher reads ECC counters and temperatures.
pub const HEALTH_POLL_MS: u64 = 10_000;

/// Why there is no real inventory. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum NvmlProbeError {
    /// `libnvidia-ml.so.1` cannot be loaded: no NVIDIA driver installed.
    #[error(
        "no NVIDIA driver ({0}); declare a simulated inventory with --fake-gpus 8xH100, \
         or a node without gpus with --no-gpus"
    )]
    NoLibrary(String),
    /// The library loads but the kernel driver is not running.
    #[error("the NVIDIA driver is not loaded; declare a simulated inventory with --fake-gpus")]
    DriverNotLoaded,
    /// Any other NVML failure.
    #[error("nvml: {0}")]
    Nvml(#[from] NvmlError),
    /// The watcher thread could not start.
    #[error("cannot start the GPU health watcher thread: {0}")]
    Thread(std::io::Error),
    /// More GPUs than sovra handles on one node.
    #[error("{0} gpus on this node, at most {GPUS_PER_NODE_MAX} are supported")]
    TooManyGpus(u32),
}

fn init() -> Result<Nvml, NvmlProbeError> {
    Nvml::init().map_err(|e| match e {
        NvmlError::LibloadingError(e) => NvmlProbeError::NoLibrary(e.to_string()),
        NvmlError::LibraryNotFound => NvmlProbeError::NoLibrary("library not found".into()),
        NvmlError::DriverNotLoaded => NvmlProbeError::DriverNotLoaded,
        e => NvmlProbeError::Nvml(e),
    })
}

/// Reads this node's GPUs from NVML.
pub fn probe(node: &str) -> Result<Inventory, NvmlProbeError> {
    let nvml = init()?;
    let count = nvml.device_count()?;
    if count as usize > GPUS_PER_NODE_MAX {
        return Err(NvmlProbeError::TooManyGpus(count));
    }
    let mut gpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        let device = nvml.device_by_index(index)?;
        gpus.push(gpu_info(index, &device)?);
    }
    classify_links(&mut gpus);
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            cuda_driver_version_major(v),
            cuda_driver_version_minor(v)
        )
    });
    Ok(Inventory {
        node: node.to_string(),
        simulated: false,
        source: "nvml".into(),
        driver_version: nvml.sys_driver_version().ok(),
        cuda_version,
        gpus,
        nics: super::inventory::sysfs_nics(),
    })
}

fn gpu_info(index: u32, device: &Device<'_>) -> Result<GpuInfo, NvmlProbeError> {
    let uuid = device.uuid()?;
    let pci_bus_id = nccl_bus_id(&device.pci_info()?.bus_id);
    let memory_mib = device.memory_info().map_or(0, |m| m.total / (1024 * 1024));
    let mig_enabled = device.mig_mode().is_ok_and(|m| m.current == 1);
    let mig_instances = if mig_enabled {
        mig_instances(device, memory_mib)
    } else {
        Vec::new()
    };
    let mut nvlinks: BTreeMap<String, u32> = BTreeMap::new();
    for link in 0..NVLINK_LINKS_MAX {
        let wrapper = device.link_wrapper_for(link);
        if !wrapper.is_active().unwrap_or(false) {
            continue;
        }
        let remote = match wrapper.remote_pci_info() {
            Ok(pci) => nccl_bus_id(&pci.bus_id),
            Err(_) => NVSWITCH_BUS_ID.to_string(),
        };
        *nvlinks.entry(remote).or_default() += 1;
    }
    let health = GpuHealth {
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        ecc_uncorrected: device
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok(),
        ecc_corrected: device
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .ok(),
        xid_last: None,
    };
    Ok(GpuInfo {
        index,
        uuid,
        name: device.name().unwrap_or_else(|_| "unknown".into()),
        memory_mib,
        numa_node: pci_numa_node(&pci_bus_id),
        pci_bus_id,
        compute_capability: device
            .cuda_compute_capability()
            .ok()
            .map(|c| (c.major.max(0) as u32, c.minor.max(0) as u32)),
        mig_enabled,
        mig_instances,
        nvlinks: nvlinks
            .into_iter()
            .map(|(remote_pci_bus_id, links)| NvLink {
                remote_pci_bus_id,
                // Classified once every GPU's bus id is known.
                peer: NvLinkPeer::Other,
                links,
            })
            .collect(),
        health,
    })
}

/// The MIG devices of a MIG-mode GPU, with their slice counts.
fn mig_instances(device: &Device<'_>, parent_memory_mib: u64) -> Vec<MigInstance> {
    let count = device.mig_device_count().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..count {
        // Slots without an instance answer NotFound.
        let Ok(mig) = device.mig_device_by_index(i) else {
            continue;
        };
        let (Ok(uuid), Ok(attrs)) = (mig.uuid(), mig.attributes()) else {
            continue;
        };
        let memory_mib = attrs.memory_size_mb;
        let memory_slices = match parent_memory_mib {
            0 => 1,
            parent => ((memory_mib * MIG_MEMORY_SLICES + parent / 2) / parent).clamp(1, 8),
        };
        out.push(MigInstance {
            uuid,
            compute_slices: attrs.gpu_instance_slice_count.clamp(1, 7) as u8,
            memory_slices: memory_slices as u8,
            memory_mib,
        });
    }
    out
}

/// NVLink peers: a GPU of this node, or else an NVSwitch when sysfs says so (or cannot say,
/// which is how NCCL reads it too).
fn classify_links(gpus: &mut [GpuInfo]) {
    let buses: Vec<String> = gpus.iter().map(|g| g.pci_bus_id.clone()).collect();
    for gpu in gpus {
        for link in &mut gpu.nvlinks {
            link.peer = if buses.contains(&link.remote_pci_bus_id) {
                NvLinkPeer::Gpu
            } else {
                match pci_class(&link.remote_pci_bus_id) {
                    Some(class) if !class.starts_with("0x0680") => NvLinkPeer::Other,
                    _ => NvLinkPeer::Switch,
                }
            };
        }
    }
}

/// NVML writes bus ids with an 8-digit domain (`00000000:17:00.0`); NCCL and sysfs use 4
/// lower-case digits (`0000:17:00.0`).
pub fn nccl_bus_id(nvml: &str) -> String {
    let lower = nvml.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

fn pci_numa_node(bus_id: &str) -> Option<u32> {
    let text = fs::read_to_string(format!("/sys/bus/pci/devices/{bus_id}/numa_node")).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

fn pci_class(bus_id: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/sys/bus/pci/devices/{bus_id}/class")).ok()?;
    Some(text.trim().to_string())
}

/// Follows each GPU's health on a dedicated thread: critical XID events as they come, and
/// every [`HEALTH_POLL_MS`] the uncorrected ECC count and the temperature against the
/// slowdown threshold. See the module docs.
pub struct HealthWatcher {
    samples: Arc<Mutex<BTreeMap<String, HealthSample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthWatcher {
    /// Starts watching. Fails when NVML is unavailable.
    pub fn start() -> Result<HealthWatcher, NvmlProbeError> {
        // Probe once here so a missing driver is reported to the caller, not the thread.
        drop(init()?);
        let samples = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (samples_in, stop_in) = (Arc::clone(&samples), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("sovra-gpu-health".into())
            .spawn(move || {
                if let Err(e) = watch(&samples_in, &stop_in) {
                    tracing::warn!("gpu health watcher stopped: {e}");
                }
            })
            .map_err(NvmlProbeError::Thread)?;
        Ok(HealthWatcher {
            samples,
            stop,
            thread: Some(thread),
        })
    }

    /// The latest sample per GPU UUID.
    pub fn samples(&self) -> BTreeMap<String, HealthSample> {
        self.samples.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Copies the latest samples into an inventory's health fields.
    pub fn apply(&self, inventory: &mut Inventory) {
        let samples = self.samples();
        for gpu in &mut inventory.gpus {
            if let Some(s) = samples.get(&gpu.uuid) {
                gpu.health.xid_last = s.xid_last.or(gpu.health.xid_last);
                gpu.health.ecc_uncorrected = s.ecc_uncorrected.or(gpu.health.ecc_uncorrected);
                gpu.health.temperature_c = s.temperature_c.or(gpu.health.temperature_c);
            }
        }
    }
}

impl Drop for HealthWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls one GPU's counters into its sample (keeping the XID the events set).
fn poll(device: &Device<'_>, sample: &mut HealthSample) {
    sample.ecc_uncorrected = device
        .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
        .ok();
    sample.temperature_c = device.temperature(TemperatureSensor::Gpu).ok();
    if sample.slowdown_c.is_none() {
        sample.slowdown_c = device
            .temperature_threshold(TemperatureThreshold::Slowdown)
            .ok();
    }
}

fn watch(
    samples: &Mutex<BTreeMap<String, HealthSample>>,
    stop: &AtomicBool,
) -> Result<(), NvmlError> {
    let nvml = Nvml::init()?;
    let count = nvml.device_count()?;
    // XID events where the GPUs deliver them (not in every container); polling regardless.
    let mut events = Some(nvml.create_event_set()?);
    for index in 0..count {
        let device = nvml.device_by_index(index)?;
        if let Some(set) = events.take() {
            match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(set) => events = Some(set),
                Err(e) => tracing::warn!("no XID events from GPU {index}: {}", e.error),
            }
        }
    }
    let mut polled: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if polled.is_none_or(|p| p.elapsed() >= Duration::from_millis(HEALTH_POLL_MS)) {
            polled = Some(Instant::now());
            for index in 0..count {
                let device = nvml.device_by_index(index)?;
                let uuid = device.uuid()?;
                if let Ok(mut map) = samples.lock() {
                    poll(&device, map.entry(uuid).or_default());
                }
            }
        }
        let Some(set) = &events else {
            thread::sleep(Duration::from_millis(u64::from(XID_WAIT_MS)));
            continue;
        };
        match set.wait(XID_WAIT_MS) {
            Ok(event) => {
                let xid = match event.event_data {
                    Some(XidError::Value(x)) => x,
                    _ => continue,
                };
                if let Ok(uuid) = event.device.uuid() {
                    tracing::warn!(gpu = %uuid, xid, "critical xid");
                    if let Ok(mut map) = samples.lock() {
                        map.entry(uuid).or_default().xid_last = Some(xid);
                    }
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids() {
        assert_eq!(nccl_bus_id("00000000:17:00.0"), "0000:17:00.0");
        assert_eq!(nccl_bus_id("0000:AB:00.0"), "0000:ab:00.0");
        assert_eq!(nccl_bus_id("weird"), "weird");
    }

    #[test]
    fn missing_driver_is_one_clear_line() {
        // On a machine without the NVIDIA driver the probe fails with the hint; with one, it
        // succeeds. Either way it does not panic.
        match probe("n1") {
            Ok(inv) => assert!(!inv.simulated),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "{text}");
                if let NvmlProbeError::NoLibrary(_) = e {
                    assert!(text.contains("--fake-gpus"), "{text}");
                }
            }
        }
    }
}
