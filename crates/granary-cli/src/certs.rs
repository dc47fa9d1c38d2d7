//! `granary admin certs ...`: the cluster CA and the certificates of secure
//! mode, written locally (no namenode is asked).

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use crate::error::{CliError, CliResult};
use crate::out::outln;
use granary_common::ErrorCode;
use granary_common::tls::issue::Authority;
use granary_common::tls::{Peer, Role};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a new cluster CA (ca.crt, ca.key) and certificates with keys
    /// into DIR: one per namenode (namenode.crt/.key, or NAME.crt/.key for
    /// several), per datanode (datanode.crt/.key, or datanodeN for several;
    /// each named by a new uuid) and per user (USER.crt/.key). Keys are
    /// readable by their owner only; existing files are never replaced.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The cluster the CA is named for.
        #[arg(long, default_value = "granary")]
        cluster: String,
        /// A namenode: NAME=HOST[,HOST...] (its node id and the names and
        /// addresses clients reach it by). Repeatable. (`--namenode` is the
        /// global flag naming the namenode to talk to.)
        #[arg(
            long = "nn",
            value_name = "NAME=HOSTS",
            default_value = "nn1=localhost,127.0.0.1"
        )]
        namenodes: Vec<String>,
        /// How many datanode certificates, valid for the hosts of --datanode-host.
        #[arg(long, default_value_t = 1)]
        datanodes: u32,
        /// Host names and addresses of the datanodes (clients dial them). Repeatable.
        #[arg(long = "datanode-host", value_name = "HOST", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        datanode_hosts: Vec<String>,
        /// A user to write a client certificate for (`--user` is the global
        /// flag naming who runs the command). Repeatable.
        #[arg(long = "client", value_name = "USER", default_value = "hdfs")]
        users: Vec<String>,
    },
    /// Sign one more certificate with the CA in DIR (written by `init`):
    /// NAME.crt and NAME.key there, or --out STEM.crt/.key.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(value_enum)]
        role: RoleArg,
        /// The holder's name: a namenode's node id, a datanode's uuid, a user.
        name: String,
        /// Names and addresses a namenode or datanode is reached by. Repeatable.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// File name stem (default NAME).
        #[arg(long)]
        out: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Namenode,
    Datanode,
    User,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Namenode => Role::Namenode,
            RoleArg::Datanode => Role::Datanode,
            RoleArg::User => Role::User,
        }
    }
}

impl CertsCommand {
    pub fn execute(&self) -> CliResult {
        match self {
            Self::Init {
                dir,
                cluster,
                namenodes,
                datanodes,
                datanode_hosts,
                users,
            } => init(dir, cluster, namenodes, *datanodes, datanode_hosts, users),
            Self::Issue {
                dir,
                role,
                name,
                hosts,
                out,
            } => issue(dir, (*role).into(), name, hosts, out.as_deref()),
        }
    }
}

fn usage(message: String) -> CliError {
    CliError::Refused {
        code: ErrorCode::InvalidArgument,
        message,
    }
}

/// `NAME=HOST,HOST`.
fn namenode_arg(arg: &str) -> CliResult<(String, Vec<String>)> {
    let (name, hosts) = arg
        .split_once('=')
        .ok_or_else(|| usage(format!("--nn {arg}: expected NAME=HOST[,HOST...]")))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    if hosts.is_empty() {
        return Err(usage(format!("--nn {arg}: no host")));
    }
    Ok((name.trim().to_string(), hosts))
}

/// File stems `init` writes besides the CA's, which no user may take.
const RESERVED: [&str; 3] = ["ca", "namenode", "datanode"];

fn init(
    dir: &Path,
    cluster: &str,
    namenodes: &[String],
    datanodes: u32,
    datanode_hosts: &[String],
    users: &[String],
) -> CliResult {
    let namenodes = namenodes
        .iter()
        .map(|a| namenode_arg(a))
        .collect::<CliResult<Vec<_>>>()?;
    // Everything is checked before anything is written.
    let mut plan = Vec::new();
    for (name, hosts) in &namenodes {
        let stem = if namenodes.len() == 1 {
            "namenode".to_string()
        } else {
            name.clone()
        };
        plan.push((stem, Peer::new(Role::Namenode, name)?, hosts.clone()));
    }
    for i in 1..=datanodes {
        let stem = if datanodes == 1 {
            "datanode".to_string()
        } else {
            format!("datanode{i}")
        };
        let uuid = uuid::Uuid::new_v4().to_string();
        plan.push((stem, Peer::new(Role::Datanode, &uuid)?, datanode_hosts.to_vec()));
    }
    for user in users {
        if RESERVED.contains(&user.as_str()) || user.starts_with("datanode") {
            return Err(usage(format!(
                "--client {user}: that name is taken by the files init writes; issue it with `certs issue --out`"
            )));
        }
        plan.push((user.clone(), Peer::new(Role::User, user)?, Vec::new()));
    }
    let mut stems: Vec<&str> = plan.iter().map(|(s, _, _)| s.as_str()).collect();
    stems.sort_unstable();
    if let Some(w) = stems.windows(2).find(|w| w[0] == w[1]) {
        return Err(usage(format!(
            "two certificates would be written to {}.crt",
            w[0]
        )));
    }
    for stem in std::iter::once("ca").chain(stems.iter().copied()) {
        for ext in ["crt", "key"] {
            let path = dir.join(format!("{stem}.{ext}"));
            if path.exists() {
                return Err(usage(format!(
                    "{} exists: init never replaces a file",
                    path.display()
                )));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        what: dir.display().to_string(),
        source,
    })?;
    let ca = Authority::new(cluster)?;
    ca.write(dir)?;
    outln!(
        "{}: the cluster CA (ca.key: keep it safe, off the cluster's machines)",
        dir.join("ca.crt").display()
    )?;
    for (stem, peer, hosts) in plan {
        ca.issue(&peer, &hosts)?.write(dir, &stem)?;
        outln!("{}: {}", dir.join(format!("{stem}.crt")).display(), peer.uri())?;
    }
    Ok(())
}

fn issue(dir: &Path, role: Role, name: &str, hosts: &[String], out: Option<&str>) -> CliResult {
    let peer = Peer::new(role, name)?;
    if role != Role::User && hosts.is_empty() {
        return Err(usage(format!(
            "a {} certificate needs --host (the names and addresses it is reached by)",
            role.as_str()
        )));
    }
    let stem = out.unwrap_or(name);
    if stem == "ca" || stem.contains('/') {
        return Err(usage(format!("--out {stem}: not a file name stem to write")));
    }
    let ca = Authority::load(dir)?;
    ca.issue(&peer, hosts)?.write(dir, stem)?;
    outln!("{}: {}", dir.join(format!("{stem}.crt")).display(), peer.uri())?;
    Ok(())
}
