//! lattice's kernel programs: one module per hook, all in one ELF object that the agent
//! embeds and loads. Maps are declared in `maps.rs`; their key/value types and names are
//! the contract in `lattice-common`.
#![no_std]
#![no_main]

mod cgroup_connect;
mod maps;
mod packet;
mod rst;
mod sockmap;
mod tc_ingress;

/// A panic can't happen in verified code; a reachable one makes the program fail to load
/// instead of misbehaving, because the verifier rejects the infinite loop.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// GPL-compatible, so the kernel lets the programs use every helper.
#[no_mangle]
#[link_section = "license"]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
