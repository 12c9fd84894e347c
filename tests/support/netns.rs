//! Hosts of their own on this machine, for the tests of a deployment across servers: each is a
//! network namespace joined to this one by a veth pair, so that what runs in it reaches the
//! machine's engines only across that link. The engines listen on loopback, so a relay in this
//! namespace forwards each engine port from the link's address here to loopback.

use std::net::Ipv4Addr;
use std::process::Command;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A network namespace with a link to this one.
pub struct Host {
    /// The namespace's name (`ip netns`).
    pub netns: String,
    /// This namespace's end of the link: where the host reaches the engines.
    pub gateway: Ipv4Addr,
    relays: Vec<JoinHandle<()>>,
}

impl Host {
    /// Host `index` (0 to 3) of this test process, relaying `ports` (the engines it uses) from
    /// its gateway to loopback.
    pub async fn create(index: u8, ports: &[u16]) -> Host {
        let pid = std::process::id();
        let netns = format!("ik{pid}h{index}");
        // A /30 per host, chosen by pid so that tests running side by side do not collide.
        let block = ((pid % 16_000) * 4 + index as u32) * 4;
        let net = |last: u32| {
            let n = block + last;
            Ipv4Addr::new(10, 128 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
        };
        let (gateway, address) = (net(1), net(2));
        let (outside, inside) = (format!("{netns}o"), format!("{netns}i"));
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &netns]);
        ip(&["addr", "add", &format!("{gateway}/30"), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        let within = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        within(&["addr", "add", &format!("{address}/30"), "dev", &inside]);
        within(&["link", "set", &inside, "up"]);
        within(&["link", "set", "lo", "up"]);
        within(&["route", "add", "default", "via", &gateway.to_string()]);
        let mut relays = Vec::new();
        for &port in ports {
            relays.push(relay(gateway, port).await);
        }
        Host {
            netns,
            gateway,
            relays,
        }
    }

    /// `program` run inside this host.
    pub fn command(&self, program: &std::ffi::OsStr) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Whether `addr` answers a TCP connection from inside this host.
    pub fn reaches(&self, addr: &str) -> bool {
        let probe = format!("exec 3<>/dev/tcp/{}/{}", ip_of(addr), port_of(addr));
        let status = self
            .command("bash".as_ref())
            .args(["-c", &probe])
            .status()
            .expect("bash");
        status.success()
    }
}

fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(ip, _)| ip)
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, port)| port)
}

impl Drop for Host {
    fn drop(&mut self) {
        self.relays.iter().for_each(JoinHandle::abort);
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Runs `ip` with `args`; a failure stops the test, naming the command.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {} (these tests need root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Accepts connections on `gateway:port` and joins each to `127.0.0.1:port`.
async fn relay(gateway: Ipv4Addr, port: u16) -> JoinHandle<()> {
    let listener = TcpListener::bind((gateway, port))
        .await
        .unwrap_or_else(|e| panic!("relay on {gateway}:{port}: {e}"));
    tokio::spawn(async move {
        while let Ok((mut from, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut to) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
                }
            });
        }
    })
}
