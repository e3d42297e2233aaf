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
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{proxy::Proxy, sites::SiteKey};

pub struct ProxySwitch {
    current: ArcSwap<Proxy>,
    /// Client connections the sites may hold at once, all sites together: past it,
    /// the sites stop accepting and new connections wait in the kernel's accept queue
    /// (HAProxy's `maxconn`), so that a flood cannot take the file descriptors the
    /// agent's other work needs.
    connections: Arc<Semaphore>,
}

impl ProxySwitch {
    /// A switch whose sites hold at most `max_connections` client connections.
    pub fn new(proxy: Arc<Proxy>, max_connections: usize) -> Arc<ProxySwitch> {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ProxySwitch {
            current: ArcSwap::new(proxy),
            connections: Arc::new(Semaphore::new(max_connections)),
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
            // While the budget is spent, the site does not accept. A permit is not held
            // across the wait for a connection: a site without callers would keep it
            // from the others (so a site may hold one accepted connection past the
            // budget until a permit frees). The semaphore is never closed.
            match self.connections.acquire().await {
                Ok(free) => drop(free),
                Err(_) => return,
            }
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(%place, %vip, port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.connections).acquire_owned().await else {
                return;
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
            tokio::spawn(async move {
                proxy.serve_connection(switch, stream, peer, site).await;
                drop(permit);
            });
        }
    }
}
