//! Put and get with TLS on against off, in one run: two clusters of a
//! namenode and three datanodes in this process (loopback), one in the
//! clear and one in secure mode (`auth = "tls"`, certificates of a CA made
//! here); the same files written (replication 3) and read on each, rounds
//! alternating between them (docs/performance.md).

use std::time::Instant;

use granary_client::{ClientOptions, CreateOptions, DfsClient, Identity};
use granary_common::config::{AuthMode, TlsConfig};
use granary_common::tls::issue::Authority;
use granary_common::tls::{Peer, Role, Tls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::local;
use crate::stats::median;

const DATANODES: usize = 3;

struct Cluster {
    client: DfsClient,
    token: CancellationToken,
}

fn tls_config(certs: &std::path::Path, stem: &str) -> TlsConfig {
    TlsConfig {
        cert: certs.join(format!("{stem}.crt")),
        key: certs.join(format!("{stem}.key")),
        ca: certs.join("ca.crt"),
        user_rules: Vec::new(),
    }
}

/// A CA and certificates for a namenode, the datanodes and the bench user.
fn write_certs(certs: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(certs)?;
    let ca = Authority::new("granary bench")?;
    ca.write(certs)?;
    let loopback = ["127.0.0.1".to_string(), "localhost".to_string()];
    ca.issue(&Peer::new(Role::Namenode, "nn1")?, &loopback)?
        .write(certs, "namenode")?;
    for i in 0..DATANODES {
        let uuid = uuid_like(i);
        ca.issue(&Peer::new(Role::Datanode, &uuid)?, &loopback)?
            .write(certs, &format!("datanode{i}"))?;
    }
    ca.issue(&Peer::new(Role::User, local::SUPERUSER)?, &[])?
        .write(certs, local::SUPERUSER)?;
    Ok(())
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{:012}", i + 1)
}

impl Cluster {
    async fn start(dir: &std::path::Path, certs: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let token = CancellationToken::new();
        let mut cfg = local::config(&dir.join("name"));
        if let Some(certs) = certs {
            cfg.auth = AuthMode::Tls;
            cfg.tls = tls_config(certs, "namenode");
        }
        let secret = cfg.cluster_secret_path();
        granary_namenode::format(&cfg, false, None)?;
        let rpc = tokio::net::TcpListener::bind(cfg.rpc_addr).await?;
        let http = tokio::net::TcpListener::bind(cfg.http_addr).await?;
        let nn = granary_namenode::start(cfg, rpc, http, token.clone()).await?;
        let nn_addr = nn.rpc_addr.to_string();
        // Runs until the token is cancelled.
        std::mem::forget(nn);
        for i in 0..DATANODES {
            let mut d = granary_datanode::DatanodeConfig {
                namenode: nn_addr.clone(),
                data_dirs: vec![dir.join(format!("dn{i}"))],
                rpc_addr: "127.0.0.1:0".parse()?,
                http_addr: "127.0.0.1:0".parse()?,
                cluster_secret_file: secret.clone(),
                heartbeat_interval_ms: 300,
                ..Default::default()
            };
            if let Some(certs) = certs {
                d.auth = AuthMode::Tls;
                d.tls = tls_config(certs, &format!("datanode{i}"));
            }
            let rpc = tokio::net::TcpListener::bind(d.rpc_addr).await?;
            let http = tokio::net::TcpListener::bind(d.http_addr).await?;
            let dn = granary_datanode::start(d, rpc, http, token.clone()).await?;
            std::mem::forget(dn);
        }
        let tls = match certs {
            None => None,
            Some(certs) => Some(Tls::client(TlsFiles {
                cert: certs.join(format!("{}.crt", local::SUPERUSER)),
                key: certs.join(format!("{}.key", local::SUPERUSER)),
                ca: certs.join("ca.crt"),
            })?),
        };
        let options = ClientOptions {
            tls,
            ..Default::default()
        };
        let client = DfsClient::connect_with(&nn_addr, Identity::new(local::SUPERUSER), options).await?;
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while client.datanode_report().await?.len() < DATANODES {
            anyhow::ensure!(Instant::now() < deadline, "datanodes did not register in 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(Self { client, token })
    }

    /// Writes `files` files of `data` at once, then reads them back: the
    /// aggregate MiB/s of each.
    async fn put_get(&self, round: usize, files: usize, data: &bytes::Bytes) -> anyhow::Result<(f64, f64)> {
        let mib = (files * data.len()) as f64 / (1 << 20) as f64;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for f in 0..files {
            let (c, data) = (self.client.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let opts = CreateOptions {
                    replication: DATANODES as u32,
                    create_parent: true,
                    ..Default::default()
                };
                let mut w = c.create(&format!("/tls/r{round}/f{f}"), opts).await?;
                for chunk in data.chunks(4 << 20) {
                    w.write_all(chunk).await?;
                }
                w.shutdown().await?;
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let put = mib / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for f in 0..files {
            let c = self.client.clone();
            let want = data.len();
            tasks.push(tokio::spawn(async move {
                let mut r = c.open(&format!("/tls/r{round}/f{f}")).await?;
                let mut buf = vec![0u8; 4 << 20];
                let mut n = 0;
                loop {
                    match r.read(&mut buf).await? {
                        0 => break,
                        k => n += k,
                    }
                }
                anyhow::ensure!(n == want, "read {n} of {want} bytes");
                Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let get = mib / start.elapsed().as_secs_f64();
        self.client.delete(&format!("/tls/r{round}"), true).await?;
        Ok((put, get))
    }
}

pub async fn run(files: usize, size_mib: usize, rounds: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let certs = tmp.path().join("certs");
    write_certs(&certs)?;
    let plain = Cluster::start(&tmp.path().join("plain"), None).await?;
    let secure = Cluster::start(&tmp.path().join("secure"), Some(&certs)).await?;
    let data = crate::stats::incompressible(size_mib << 20, 0x2545f4914f6cdd1d);
    let (mut puts, mut gets) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        // Alternate which goes first: neither always gets the cooler machine.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = [&plain, &secure][i];
            let (p, g) = c.put_get(round, files, &data).await?;
            println!(
                "tls round={round} mode={} put_mib_per_s={p:.1} get_mib_per_s={g:.1}",
                ["plain", "tls"][i]
            );
            puts[i].push(p);
            gets[i].push(g);
        }
    }
    let (pp, pt) = (median(&mut puts[0]), median(&mut puts[1]));
    let (gp, gt) = (median(&mut gets[0]), median(&mut gets[1]));
    println!(
        "tls summary: files={files} size_mib={size_mib} replication={DATANODES} rounds={rounds} \
         put_plain={pp:.1} put_tls={pt:.1} put_ratio={:.2} get_plain={gp:.1} get_tls={gt:.1} get_ratio={:.2}",
        pt / pp,
        gt / gp
    );
    plain.token.cancel();
    secure.token.cancel();
    Ok(())
}
