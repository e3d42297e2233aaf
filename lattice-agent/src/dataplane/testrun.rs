//! Running the tc program on a packet without a network (BPF_PROG_TEST_RUN): the packet
//! fixture tier of the tests, where an input packet's verdict and output packet are
//! checked byte by byte.

use aya::{
    maps::HashMap as BpfHashMap,
    programs::{TestRun, TestRunOptions},
};
use lattice_common::{
    pins::programs,
    vpcs::{self, Iface},
};

use super::{
    loader::{classifier, map_err, open},
    Dataplane, DataplaneError,
};

/// Room for the program to grow a packet (it never does by more than a header).
const OUT_SLACK: usize = 256;
/// `struct __sk_buff`: its size and the offset of `ifindex` (uapi/linux/bpf.h).
const SK_BUFF_SIZE: usize = 192;
const SK_BUFF_IFINDEX: usize = 40;

impl Dataplane {
    /// Runs the tc ingress program once on `packet`, as if it arrived on interface
    /// `ifindex` of the calling thread's network namespace. Returns the verdict and the
    /// packet as the program left it; nothing is sent anywhere.
    pub fn run_tc_ingress(
        &mut self,
        packet: &[u8],
        ifindex: u32,
    ) -> Result<(u32, Vec<u8>), DataplaneError> {
        let name = programs::TC_INGRESS;
        let program = classifier(&mut self.ebpf, name)?;
        let mut out = vec![0u8; packet.len() + OUT_SLACK];
        // A __sk_buff whose only non-zero field is ifindex (the kernel refuses others).
        let mut ctx = [0u8; SK_BUFF_SIZE];
        ctx[SK_BUFF_IFINDEX..SK_BUFF_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.ctx_in = Some(&ctx);
        opts.data_out = Some(&mut out);
        let result = program
            .test_run(opts)
            .map_err(|source| DataplaneError::Program {
                op: "test-running",
                name,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Records an interface as a VPC link (what attaching a namespace does once the veth
    /// exists). For tests that drive the program without a veth.
    pub fn set_interface(&mut self, ifindex: u32, iface: Iface) -> Result<(), DataplaneError> {
        let mut map: BpfHashMap<_, u32, Iface> = open(&mut self.ebpf, vpcs::IFACES_MAP)?;
        map.insert(ifindex, iface, 0)
            .map_err(map_err("writing", vpcs::IFACES_MAP))
    }
}
