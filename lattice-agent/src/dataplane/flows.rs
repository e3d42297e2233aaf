//! The kernel's reports of opened TCP flows (`LT_FLOWLOG_V1`), for access logs: turning
//! them on or off, and handing the ring buffer to its reader.

use aya::maps::{Array, MapData, RingBuf};
use lattice_common::flowlog::{FlowLogConfig, EVENTS_MAP, FLOWLOG_CONFIG_MAP};

use super::{
    loader::{map_err, open},
    Dataplane, DataplaneError,
};

impl Dataplane {
    /// Whether tc ingress reports the flows it opens (only when some access log
    /// subscription covers a TCP listener: otherwise each new flow costs one array
    /// lookup and nothing more).
    pub fn set_flow_logging(&mut self, on: bool) -> Result<(), DataplaneError> {
        let mut map: Array<_, FlowLogConfig> = open(&mut self.ebpf, FLOWLOG_CONFIG_MAP)?;
        let value = FlowLogConfig {
            enabled: u32::from(on),
        };
        map.set(0, value, 0)
            .map_err(map_err("writing", FLOWLOG_CONFIG_MAP))
    }

    /// The ring buffer of opened flows, for its one reader; `None` once taken.
    pub fn take_flow_events(&mut self) -> Option<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EVENTS_MAP)?;
        RingBuf::try_from(map).ok()
    }
}
