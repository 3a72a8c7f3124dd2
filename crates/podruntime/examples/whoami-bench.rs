//! Requests per second of the whoami server over loopback: keep-alive connections, each sending
//! the guide's `curl` request and reading the full answer before the next.
//!
//! `cargo run --release -p podruntime --example whoami-bench [-- CONNECTIONS SECONDS]`

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use podruntime::whoami::{self, Whoami};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: webpod\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "172.20.1.94".parse().unwrap()];
        tokio::spawn(whoami::serve(listener, Arc::new(Whoami::new("webpod-5f6b6b4cd7-hwmcr", &ips))));
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut clients = Vec::new();
        for _ in 0..connections {
            let done = done.clone();
            clients.push(tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await?;
                conn.set_nodelay(true)?;
                let mut buf = vec![0u8; 4096];
                while Instant::now() < deadline {
                    conn.write_all(REQUEST).await?;
                    // The answer is one segment; read until its body is complete.
                    let mut got = 0;
                    loop {
                        got += conn.read(&mut buf[got..]).await?;
                        if buf[..got].ends_with(b"\r\n\r\n") && got > 200 {
                            break;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, std::io::Error>(())
            }));
        }
        for c in clients {
            c.await.expect("client task")?;
        }
        let n = done.load(Ordering::Relaxed);
        println!("{connections} connections, {seconds} s: {n} requests, {:.0} requests/s", n as f64 / seconds as f64);
        Ok(())
    })
}
