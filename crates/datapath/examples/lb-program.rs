//! Programs N services into a pinned datapath and attaches it to two devices, then exits: the
//! benchmark `scripts/bench/service-lb.sh` uses it to put cilia's load balancer on a forwarding
//! namespace the same way it loads kube-proxy's iptables and nftables rules there. Pins keep the
//! programs attached and the maps filled after the process exits.
//!
//! Run inside the forwarding namespace, without remounting /sys (nsenter, not `ip netns exec`):
//! `nsenter --net=/run/netns/NODE lb-program PIN_DIR CLIENT_DEV BACKEND_DEV COUNT FIRST_VIP BACKEND_IP`
//! Services are `FIRST_VIP + i` port 80/TCP, i in 0..COUNT, each with the one backend `BACKEND_IP:80`.

use std::{net::Ipv4Addr, process::ExitCode};

use datapath::{Backend, BackendState, Datapath, LbDatapath as _, Protocol, ServiceEntry, ServiceKind};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-program: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pin, client_dev, backend_dev, count, first_vip, backend] = args.as_slice() else {
        return Err("usage: lb-program PIN_DIR CLIENT_DEV BACKEND_DEV COUNT FIRST_VIP BACKEND_IP".into());
    };
    let count: u32 = count.parse().map_err(|e| format!("COUNT {count:?}: {e}"))?;
    let first: Ipv4Addr = first_vip.parse().map_err(|e| format!("FIRST_VIP {first_vip:?}: {e}"))?;
    let backend: Ipv4Addr = backend.parse().map_err(|e| format!("BACKEND_IP {backend:?}: {e}"))?;
    let backends = vec![Backend { address: backend, port: 80, state: BackendState::Active, node_local: true }];
    let entries: Vec<ServiceEntry> = (0..count)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(first) + i);
            ServiceEntry::new(ServiceKind::ExternalIp, vip, 80, Protocol::Tcp, backends.clone())
        })
        .collect();
    let mut dp = Datapath::open(pin).map_err(|e| e.to_string())?;
    dp.attach_netdev(client_dev, None).map_err(|e| e.to_string())?;
    dp.attach_pod_device(backend_dev, backend).map_err(|e| e.to_string())?;
    let stats = dp.sync_services(&entries).map_err(|e| e.to_string())?;
    eprintln!("lb-program: {count} services programmed ({stats:?})");
    Ok(())
}
