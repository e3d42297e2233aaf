//! The eBPF object embedded in the agent, and the check that pinned maps still fit it.

use std::path::Path;

use aya::maps::MapInfo;

use super::DataplaneError;

/// The object built from lattice-ebpf by the build script (never a stale one: the build
/// script rebuilds it whenever the eBPF or common sources change).
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LATTICE_BPF_OBJECT"));

/// The embedded object's bytes.
pub fn embedded_object() -> &'static [u8] {
    OBJECT
}

/// Which toolchain built the embedded object (for `--version` and logs).
pub fn toolchain_used() -> &'static str {
    env!("LATTICE_BPF_TOOLCHAIN")
}

/// A map as the object defines it: what a pinned map must match to be adopted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// The maps the object defines that the agent pins: named maps, not the sections
/// (`.rodata`, `.bss`, ...) that hold globals.
pub fn map_specs(object: &[u8]) -> Result<Vec<MapSpec>, DataplaneError> {
    let obj = aya_obj::Object::parse(object).map_err(DataplaneError::ParseObject)?;
    let mut specs: Vec<MapSpec> = obj
        .maps
        .iter()
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, map)| MapSpec {
            name: name.clone(),
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            map_flags: map.map_flags(),
        })
        .collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// Refuses to go on when a map pinned under `root` has another shape than the object's
/// map of the same name: adopting it would make the programs misread it. Missing pins
/// are fine (they are created).
pub fn check_pinned_maps(root: &Path, specs: &[MapSpec]) -> Result<(), DataplaneError> {
    for spec in specs {
        let path = root.join(&spec.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| DataplaneError::ReadPin {
            path: path.clone(),
            source,
        })?;
        let pinned_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        let fields = [
            ("map type", pinned_type, spec.map_type),
            ("key size", info.key_size(), spec.key_size),
            ("value size", info.value_size(), spec.value_size),
            ("max entries", info.max_entries(), spec.max_entries),
            ("flags", info.map_flags(), spec.map_flags),
        ];
        if let Some((field, pinned, compiled)) = fields.into_iter().find(|(_, p, c)| p != c) {
            return Err(DataplaneError::IncompatiblePin {
                path,
                name: spec.name.clone(),
                field,
                pinned,
                compiled,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_object_defines_the_common_maps() {
        let specs = map_specs(embedded_object()).expect("parse embedded object");
        let ifstats = specs
            .iter()
            .find(|s| s.name == lattice_common::ifstats::MAP_NAME)
            .expect("LT_IFSTATS_V1 in object");
        assert_eq!(ifstats.key_size, 4);
        assert_eq!(
            ifstats.value_size as usize,
            core::mem::size_of::<lattice_common::ifstats::IfaceCounters>()
        );
        assert_eq!(ifstats.max_entries, lattice_common::ifstats::MAX_INTERFACES);
    }
}
