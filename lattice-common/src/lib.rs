//! The contract between the lattice agent (userspace) and its eBPF programs.
//!
//! Every map the programs share with the agent is described here, one module per map
//! family: the map's name (which is also its pin name under the agent's bpffs root), its
//! key and value types, and a `///` line saying key -> value, who writes, who reads and
//! how many entries it holds. Keys and values are `#[repr(C)]`, `Copy`, with explicit
//! padding and a compile-time size check, so the kernel and the agent can never disagree
//! about a layout without the build failing.
//!
//! Map names carry a layout version (`_V1`). A change to a key or value layout must bump
//! it: the agent refuses to adopt a pinned map whose shape differs from the compiled one.
#![no_std]

pub mod cgroups;
pub mod config;
pub mod conntrack;
pub mod flowlog;
pub mod ifstats;
pub mod pins;
pub mod services;
pub mod sockmap;
pub mod stats;
pub mod vpcs;

/// Implements `aya::Pod` for map types, only when the agent builds this crate.
#[cfg(feature = "user")]
macro_rules! user_pod {
    ($($t:ty),+ $(,)?) => {
        $(
            // SAFETY: the type is #[repr(C)], Copy, has no implicit padding (checked by the
            // size assertions next to its definition) and every bit pattern is valid.
            #[allow(unsafe_code)]
            unsafe impl aya::Pod for $t {}
        )+
    };
}
#[cfg(not(feature = "user"))]
macro_rules! user_pod {
    ($($t:ty),+ $(,)?) => {};
}
pub(crate) use user_pod;
