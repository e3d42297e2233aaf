//! The generation switch: which proxy generation new connections and requests get.
//!
//! A config change builds a whole new [`Proxy`] off to the side and swaps it in with one
//! atomic store. Connections accepted before keep the generation they started on for
//! what their handshake fixed (TLS certificate, passthrough target); every new request
//! reads the switch again (an atomic load, no lock), so requests in flight finish on
//! the config they started with and the next ones use the new one. An old generation
//! is freed when its last request ends.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use tracing::{debug, warn};

use super::{proxy::Proxy, sites::SiteKey};

pub struct ProxySwitch {
    current: ArcSwap<Proxy>,
}

impl ProxySwitch {
    pub fn new(proxy: Arc<Proxy>) -> Arc<ProxySwitch> {
        Arc::new(ProxySwitch {
            current: ArcSwap::new(proxy),
        })
    }

    /// The generation new connections and requests get.
    pub fn current(&self) -> Arc<Proxy> {
        self.current.load_full()
    }

    /// Makes `next` the current generation; returns the one it replaced.
    pub fn switch(&self, next: Arc<Proxy>) -> Arc<Proxy> {
        self.current.swap(next)
    }

    /// Accepts the connections of the site at `key` until the listener fails or the
    /// task is aborted (the site left the config); each connection is served on its
    /// own task by the generation current when it was accepted.
    pub async fn serve(self: Arc<Self>, listener: std::net::TcpListener, key: SiteKey) {
        let (place, vip, port) = &key;
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(%place, %vip, port, error = %e, "cannot serve site");
                return;
            }
        };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(%place, %vip, port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let proxy = self.current();
            // The site is stopped right after a switch that removed it; a connection
            // that slipped in between is closed.
            let Some(site) = proxy.site(&key).cloned() else {
                debug!(%peer, %vip, port, "connection to a site the config no longer has");
                continue;
            };
            // Requests and responses are small writes that must leave at once: Nagle
            // with the peer's delayed ACK would hold them ~40 ms.
            if let Err(e) = stream.set_nodelay(true) {
                debug!(%peer, error = %e, "TCP_NODELAY");
            }
            let switch = Arc::clone(&self);
            tokio::spawn(proxy.serve_connection(switch, stream, peer, site));
        }
    }
}
