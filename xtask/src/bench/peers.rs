//! The userspace L4 peers, in the proxy namespace: Debian's HAProxy in `mode tcp` and
//! nginx's stream module, each with one worker (one thread), forwarding the three
//! benchmark ports of its own address to the same ports of the server. Configurations
//! are the packages' defaults plus what forwarding needs; no tuning for either.

use std::{fmt::Write as _, fs, net::SocketAddrV4, path::Path, time::Duration};

use anyhow::Context as _;

use super::{
    net::{self, BenchNet, CONNECT_PORT, HAPROXY_ADDR, NGINX_ADDR, PORTS, SERVER_ADDR},
    procs::Proc,
};

pub fn haproxy(net: &BenchNet, work: &Path) -> anyhow::Result<Proc> {
    let mut cfg = String::from(
        "global\n\
         \x20   nbthread 1\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n",
    );
    for (name, port) in PORTS {
        write!(
            cfg,
            "listen {name}\n    bind {HAPROXY_ADDR}:{port}\n    server s1 {SERVER_ADDR}:{port}\n"
        )?;
    }
    let path = work.join("haproxy.cfg");
    fs::write(&path, cfg)?;
    let path_s = path.to_string_lossy().into_owned();
    net.proxy
        .exec("haproxy", &["-c", "-q", "-f", &path_s])
        .context("haproxy refused the benchmark's configuration")?;
    let mut cmd = net.proxy.command("haproxy");
    cmd.args(["-db", "-f", &path_s]);
    let mut proc = Proc::spawn("haproxy", cmd, &work.join("haproxy.log"))?;
    wait_up(
        net,
        &mut proc,
        SocketAddrV4::new(HAPROXY_ADDR, CONNECT_PORT),
    )?;
    Ok(proc)
}

pub fn nginx(net: &BenchNet, work: &Path) -> anyhow::Result<Proc> {
    let mut cfg = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         worker_rlimit_nofile 16000;\n\
         pid {pid};\n\
         error_log {log} warn;\n\
         events {{ worker_connections 4000; }}\n\
         stream {{\n",
        pid = work.join("nginx.pid").display(),
        log = work.join("nginx-error.log").display(),
    );
    for (_, port) in PORTS {
        writeln!(
            cfg,
            "    server {{ listen {NGINX_ADDR}:{port}; proxy_pass {SERVER_ADDR}:{port}; }}"
        )?;
    }
    cfg.push_str("}\n");
    let path = work.join("nginx.conf");
    fs::write(&path, cfg)?;
    let path_s = path.to_string_lossy().into_owned();
    let errors = work.join("nginx-error.log").to_string_lossy().into_owned();
    let prefix = work.to_string_lossy().into_owned();
    let args = ["-c", &path_s, "-e", &errors, "-p", &prefix];
    net.proxy
        .exec("nginx", &[&["-t", "-q"], &args[..]].concat())
        .context("nginx refused the benchmark's configuration")?;
    let mut cmd = net.proxy.command("nginx");
    cmd.args(args);
    let mut proc = Proc::spawn("nginx", cmd, &work.join("nginx.log"))?;
    wait_up(net, &mut proc, SocketAddrV4::new(NGINX_ADDR, CONNECT_PORT))?;
    Ok(proc)
}

fn wait_up(net: &BenchNet, proc: &mut Proc, addr: SocketAddrV4) -> anyhow::Result<()> {
    let up = net::wait_tcp(&net.client, addr, Duration::from_secs(10));
    proc.check_running()?;
    up
}
