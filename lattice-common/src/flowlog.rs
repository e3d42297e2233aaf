//! TCP flow records: the kernel tells the agent of every flow it opens to a TCP listener,
//! so the agent can write access log records for flows no userspace hop sees.

/// `LT_FLOWLOG_V1`: ring buffer of [`FlowEvent`]. Written by tc ingress when it opens a
/// flow and [`FLOWLOG_CONFIG_MAP`] says flows are logged; read by the agent, which
/// writes the access log records of the subscriptions that want them. Size:
/// [`EVENTS_BYTES`]; when the agent falls behind, the ring is full and new events are
/// not written (the flow itself is never held up).
pub const EVENTS_MAP: &str = "LT_FLOWLOG_V1";
/// `LT_FLOWLOGCFG_V1`: array of one [`FlowLogConfig`]. Written by the agent on every
/// apply (whether any access log subscription covers a TCP listener); read by tc
/// ingress when it opens a flow.
pub const FLOWLOG_CONFIG_MAP: &str = "LT_FLOWLOGCFG_V1";

/// Bytes of the ring buffer: about 6,500 events of 40 bytes (plus the ring's own 8-byte
/// headers) before the agent must have read them.
pub const EVENTS_BYTES: u32 = 512 * 1024;

/// Whether tc ingress reports opened flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowLogConfig {
    /// Non-zero: report every flow opened to a TCP listener.
    pub enabled: u32,
}

const _: () = assert!(core::mem::size_of::<FlowLogConfig>() == 4);

/// One flow opened to a TCP listener. Addresses and ports in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the flow was opened.
    pub ts_ns: u64,
    /// The client's VPC key.
    pub vpc: u32,
    /// The target group key of the picked target.
    pub target_group: u32,
    /// The client's address, and the VIP it connected to.
    pub saddr: u32,
    pub vip: u32,
    /// The source address the target sees (the client VPC's SNAT address), and the
    /// target.
    pub snat_addr: u32,
    pub target_addr: u32,
    pub sport: u16,
    pub vport: u16,
    pub snat_port: u16,
    pub target_port: u16,
}

const _: () = assert!(core::mem::size_of::<FlowEvent>() == 40);

crate::user_pod!(FlowLogConfig, FlowEvent);
