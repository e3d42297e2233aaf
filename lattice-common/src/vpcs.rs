//! The interfaces lattice owns and which VPC each belongs to.

/// `LT_IFACES_V1`: ifindex (`u32`, of the host end of a VPC's veth) -> [`Iface`].
/// Written by the agent when it attaches a VPC's namespace (before attaching the
/// program) and deleted when it detaches; read by the tc ingress program, which treats
/// packets of interfaces missing here as not lattice's. Max entries: [`MAX_IFACES`].
pub const IFACES_MAP: &str = "LT_IFACES_V1";

/// How many VPC attachments (veths) one host can have.
pub const MAX_IFACES: u32 = 4096;

/// A VPC's interface as the kernel needs it to deliver packets into the namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// The VPC this interface attaches (the agent's stable VPC key, never 0).
    pub vpc: u32,
    /// The SNAT address (network order) flows from this VPC get when they reach a target:
    /// a lattice link-local address, unique per VPC, so that VPCs with the same CIDR
    /// never collide at a target.
    pub snat_addr: u32,
    /// MAC of the host end (source of the frames lattice sends into the namespace).
    pub host_mac: [u8; 6],
    /// MAC of the namespace end (destination of those frames).
    pub peer_mac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<Iface>() == 20);

crate::user_pod!(Iface);
