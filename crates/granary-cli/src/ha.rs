//! `granary admin ha`: the namenode group.

use clap::Subcommand;

use crate::error::CliResult;
use crate::out::outln;
use granary_client::DfsClient;
use granary_client::ha::{GroupStatus, group_status};

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// Each namenode's role, term, last log and applied index, and lag
    /// (asked of every namenode given; the leader knows the lags).
    Status,
    /// Add a namenode to the group (format it with the group's cluster id
    /// and start it first): it catches up, then votes. Superuser only.
    Add {
        /// Its name (its --node-id).
        node_id: String,
        /// Its RPC address, HOST:PORT.
        rpc_addr: String,
    },
    /// Remove a namenode from the group for good. Superuser only.
    Remove { node_id: String },
    /// Hand leadership to another voting namenode (for maintenance of the
    /// leader's machine): writes pause for about twice the election
    /// timeout. Superuser only.
    TransferLeader {
        /// The namenode to lead next (its --node-id).
        node_id: String,
    },
}

impl HaCommand {
    pub async fn execute(&self, c: &DfsClient) -> CliResult {
        match self {
            Self::Status => status(c.net(), &c.namenode_addrs().join(",")).await,
            Self::Add { node_id, rpc_addr } => add(c, node_id, rpc_addr).await,
            Self::Remove { node_id } => remove(c, node_id).await,
            Self::TransferLeader { node_id } => transfer_leader(c, node_id).await,
        }
    }
}

async fn add(c: &DfsClient, node_id: &str, rpc_addr: &str) -> CliResult {
    let voters = c.add_namenode(node_id, rpc_addr).await?;
    outln!(
        "added {node_id} ({rpc_addr}); voting namenodes: {}",
        voters.join(", ")
    )?;
    Ok(())
}

async fn remove(c: &DfsClient, node_id: &str) -> CliResult {
    let voters = c.remove_namenode(node_id).await?;
    outln!("removed {node_id}; voting namenodes: {}", voters.join(", "))?;
    Ok(())
}

async fn transfer_leader(c: &DfsClient, node_id: &str) -> CliResult {
    let (leader, took) = c.transfer_leadership(node_id).await?;
    outln!("{leader} leads (hand-over took {} ms)", took.as_millis())?;
    Ok(())
}

async fn status(net: &granary_common::net::Net, namenodes: &str) -> CliResult {
    let addrs: Vec<&str> = namenodes
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let mut views: Vec<GroupStatus> = Vec::new();
    let mut last_err = None;
    for a in &addrs {
        match group_status(net, a).await {
            Ok(s) => views.push(s),
            Err(e) => {
                outln!("{a}: not answering: {e}")?;
                last_err = Some(e);
            }
        }
    }
    // The leader's view, else any: it knows every member's lag.
    let best = views
        .iter()
        .find(|v| !v.alone() && v.leader_id == v.node_id)
        .or_else(|| views.first());
    let Some(v) = best else {
        return Err(last_err.map_or_else(
            || crate::error::CliError::usage("no namenode address given"),
            Into::into,
        ));
    };
    if v.alone() {
        outln!("namenode at {} runs alone (no group)", v.asked)?;
        return Ok(());
    }
    outln!(
        "leader: {}  term: {}  leader changes seen: {}  (as {} sees it)",
        if v.leader_id.is_empty() {
            "none (election running)"
        } else {
            &v.leader_id
        },
        v.term,
        v.leader_changes,
        v.node_id
    )?;
    outln!(
        "{:<8} {:<22} {:<10} {:>6} {:>10} {:>10} {:>8}",
        "NAME",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LAST-LOG",
        "APPLIED",
        "LAG"
    )?;
    for m in &v.members {
        // Each member's own numbers where it answered.
        let own = views
            .iter()
            .find(|o| o.node_id == m.node_id)
            .and_then(|o| o.members.iter().find(|x| x.node_id == m.node_id));
        let (role, term, last, applied) = match own {
            Some(o) => (o.role.as_str(), o.term, o.last_log_index, o.last_applied_index),
            None if views.iter().any(|o| o.node_id == m.node_id) => {
                (m.role.as_str(), m.term, m.last_log_index, m.last_applied_index)
            }
            None => ("unreachable", 0, m.last_log_index, 0),
        };
        outln!(
            "{:<8} {:<22} {:<10} {:>6} {:>10} {:>10} {:>8}",
            m.node_id,
            m.rpc_addr,
            role,
            term,
            last,
            applied,
            m.lag
        )?;
    }
    Ok(())
}
