//! The NCCL topology file (`NCCL_TOPO_FILE`) of a task: its GPUs and this node's NICs.
//!
//! NCCL reads an XML system description (the format `NCCL_TOPO_DUMP_FILE` writes): `<cpu>`
//! elements per NUMA node holding `<pci>` devices, each GPU with its NVLinks, each NIC with its
//! `<net>` ports. NCCL matches GPUs by PCI bus id and fills in any attribute left out from the
//! system, so the file states only what sovra's model knows: which GPUs the task holds, their
//! NVLinks (peer GPUs, or the shared NVSwitch), compute capability, and the node's NICs with
//! their speeds. GPUs the task does not hold are left out, as CUDA hides them anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::devices::Device;
use super::inventory::{Inventory, NvLinkPeer};

/// PCI class of a 3D controller (data-centre GPUs).
const CLASS_GPU: &str = "0x030200";
/// PCI class of an InfiniBand controller.
const CLASS_NIC: &str = "0x020700";
/// PCI class NCCL gives an NVSwitch link target.
const CLASS_NVSWITCH: &str = "0x068000";

/// The topology XML for a task holding `devices`, or `None` when it holds no GPU.
pub fn topo_xml(inventory: &Inventory, devices: &[Device]) -> Option<String> {
    let held: BTreeSet<u32> = devices.iter().map(|d| d.gpu_index).collect();
    if held.is_empty() {
        return None;
    }
    // NUMA node → (GPUs, NICs); devices without one go to node 0.
    let mut numa: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, gpu) in inventory.gpus.iter().enumerate() {
        if held.contains(&gpu.index) {
            numa.entry(gpu.numa_node.unwrap_or(0))
                .or_default()
                .0
                .push(i);
        }
    }
    for (i, nic) in inventory.nics.iter().enumerate() {
        numa.entry(nic.numa_node.unwrap_or(0))
            .or_default()
            .1
            .push(i);
    }
    let bus_of: BTreeMap<u32, &str> = inventory
        .gpus
        .iter()
        .map(|g| (g.index, g.pci_bus_id.as_str()))
        .collect();
    let held_buses: BTreeSet<&str> = held.iter().filter_map(|i| bus_of.get(i).copied()).collect();

    let mut out = String::new();
    out.push_str("<system version=\"1\">\n");
    for (node, (gpus, nics)) in &numa {
        let _ = writeln!(out, "  <cpu numaid=\"{node}\">");
        for &i in gpus {
            let gpu = &inventory.gpus[i];
            let _ = writeln!(
                out,
                "    <pci busid=\"{}\" class=\"{CLASS_GPU}\">",
                escape(&gpu.pci_bus_id)
            );
            let sm = gpu
                .compute_capability
                .map(|(major, minor)| format!(" sm=\"{}\"", major * 10 + minor))
                .unwrap_or_default();
            let _ = writeln!(out, "      <gpu dev=\"{}\"{sm}>", gpu.index);
            for link in &gpu.nvlinks {
                let class = match link.peer {
                    NvLinkPeer::Switch => CLASS_NVSWITCH,
                    NvLinkPeer::Gpu if held_buses.contains(link.remote_pci_bus_id.as_str()) => {
                        CLASS_GPU
                    }
                    // A link to a GPU the task does not hold, or to something else.
                    NvLinkPeer::Gpu | NvLinkPeer::Other => continue,
                };
                let _ = writeln!(
                    out,
                    "        <nvlink target=\"{}\" count=\"{}\" tclass=\"{class}\"/>",
                    escape(&link.remote_pci_bus_id),
                    link.links
                );
            }
            out.push_str("      </gpu>\n    </pci>\n");
        }
        for &i in nics {
            let nic = &inventory.nics[i];
            let net = format!(
                "<net name=\"{}\" dev=\"{i}\" speed=\"{}\" port=\"1\"/>",
                escape(&nic.name),
                u64::from(nic.gbit_per_s) * 1000
            );
            match &nic.pci_bus_id {
                Some(bus) => {
                    let _ = writeln!(
                        out,
                        "    <pci busid=\"{}\" class=\"{CLASS_NIC}\">\n      <nic>\n        \
                         {net}\n      </nic>\n    </pci>",
                        escape(bus)
                    );
                }
                None => {
                    let _ = writeln!(out, "    <nic>\n      {net}\n    </nic>");
                }
            }
        }
        out.push_str("  </cpu>\n");
    }
    out.push_str("</system>\n");
    Some(out)
}

/// Escapes text for an XML attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use expect_test::expect;
    use sovra_fabric::GpuTake;

    use super::*;
    use crate::core::devices::resolve;
    use crate::core::inventory::{parse_fake_gpus, NvLink};

    #[test]
    fn simulated_hgx() {
        let inv = parse_fake_gpus("8xH100", Some("2x400"), "n1").unwrap();
        let devices = resolve(&inv, &GpuTake::Whole { mask: 0b110 }, &BTreeSet::new()).unwrap();
        expect![[r#"
            <system version="1">
              <cpu numaid="0">
                <pci busid="0000:14:00.0" class="0x030200">
                  <gpu dev="1" sm="90">
                    <nvlink target="fffffff:ffff:ff" count="18" tclass="0x068000"/>
                  </gpu>
                </pci>
                <pci busid="0000:18:00.0" class="0x030200">
                  <gpu dev="2" sm="90">
                    <nvlink target="fffffff:ffff:ff" count="18" tclass="0x068000"/>
                  </gpu>
                </pci>
                <pci busid="0000:a0:00.0" class="0x020700">
                  <nic>
                    <net name="mlx5_0" dev="0" speed="400000" port="1"/>
                  </nic>
                </pci>
                <pci busid="0000:a2:00.0" class="0x020700">
                  <nic>
                    <net name="mlx5_1" dev="1" speed="400000" port="1"/>
                  </nic>
                </pci>
              </cpu>
            </system>
        "#]]
        .assert_eq(&topo_xml(&inv, &devices).unwrap());
        assert_eq!(topo_xml(&inv, &[]), None);
    }

    #[test]
    fn direct_links_numa_and_escaping() {
        let mut inv = parse_fake_gpus("3xL40S", None, "n1").unwrap();
        inv.gpus[0].nvlinks = vec![
            NvLink {
                remote_pci_bus_id: inv.gpus[1].pci_bus_id.clone(),
                peer: NvLinkPeer::Gpu,
                links: 4,
            },
            NvLink {
                remote_pci_bus_id: inv.gpus[2].pci_bus_id.clone(),
                peer: NvLinkPeer::Gpu,
                links: 4,
            },
        ];
        inv.gpus[1].numa_node = Some(1);
        inv.nics = vec![crate::core::inventory::NicInfo {
            name: "eth<0>".into(),
            gbit_per_s: 100,
            pci_bus_id: None,
            numa_node: Some(1),
        }];
        let devices = resolve(&inv, &GpuTake::Whole { mask: 0b011 }, &BTreeSet::new()).unwrap();
        expect![[r#"
            <system version="1">
              <cpu numaid="0">
                <pci busid="0000:10:00.0" class="0x030200">
                  <gpu dev="0" sm="89">
                    <nvlink target="0000:14:00.0" count="4" tclass="0x030200"/>
                  </gpu>
                </pci>
              </cpu>
              <cpu numaid="1">
                <pci busid="0000:14:00.0" class="0x030200">
                  <gpu dev="1" sm="89">
                  </gpu>
                </pci>
                <nic>
                  <net name="eth&lt;0&gt;" dev="0" speed="100000" port="1"/>
                </nic>
              </cpu>
            </system>
        "#]]
        .assert_eq(&topo_xml(&inv, &devices).unwrap());
    }
}
