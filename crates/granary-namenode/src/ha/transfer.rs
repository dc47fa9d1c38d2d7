//! Handing leadership to another member (`granary admin ha transfer-leader`).
//!
//! openraft 0.9 has no transfer of its own, and its members refuse to vote
//! while the leader they know holds its lease. So the leader stops taking
//! changes, lets those already proposed commit, waits until the chosen
//! member holds the whole log, then stops its heartbeats: once the lease
//! has run out everywhere, it asks that member to stand at once (before any
//! other member's election timer fires). The member's log is as long as
//! anyone's, so it wins; the old leader learns the new term and follows.

use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::{Ha, node_id};
use crate::error::{NnError, Result};

/// How long the chosen member may take to come near the end of the log
/// (writes go on meanwhile).
const SETTLE: Duration = Duration::from_secs(10);
/// "Near": entries it may lag when writes pause.
const NEAR: u64 = 1000;
/// How long writes stay paused for the last entries to commit and reach it.
const PAUSE_LIMIT: Duration = Duration::from_secs(3);

/// The leader's request to a follower to stand now.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TakeOver {
    /// The follower asked, by name.
    pub node: String,
    /// The leader's term: a request seen again in a later term is stale.
    pub term: u64,
}

/// Puts the leader back to work however a transfer ends.
struct Resume<'a>(&'a Ha);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.replicator.resume();
    }
}

impl Ha {
    /// Waits up to `within` for `cond` on this namenode's Raft metrics.
    async fn wait_metrics(
        &self,
        within: Duration,
        cond: impl Fn(&openraft::RaftMetrics<super::NodeId, super::NnNode>) -> bool,
    ) -> bool {
        let until = Instant::now() + within;
        loop {
            if cond(&self.raft.metrics().borrow()) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Makes the voting member `name` the leader; its name once it leads.
    pub async fn transfer_leader(&self, name: &str) -> Result<String> {
        self.check_leader()?;
        let id = node_id(name);
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let node = membership.get_node(&id).cloned().ok_or_else(|| {
            NnError::InvalidArgument(format!("namenode {name} is not a member of the group"))
        })?;
        if !membership.voter_ids().any(|v| v == id) {
            return Err(NnError::InvalidArgument(format!(
                "namenode {name} is a learner: only a voting member can lead"
            )));
        }
        if id == m.id {
            return Ok(name.to_string());
        }
        let _one = self
            .transfer
            .try_lock()
            .map_err(|_| NnError::InvalidArgument("a leadership transfer is already under way".into()))?;
        let lag = |m: &openraft::RaftMetrics<super::NodeId, super::NnNode>| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned())
                .flatten()
                .map(|l| l.index);
            match (m.state, matched, m.last_log_index) {
                (ServerState::Leader, Some(mi), Some(li)) => Some(li.saturating_sub(mi)),
                _ => None,
            }
        };
        // Before writes pause: the member answers and is nearly caught up
        // (a member that is down fails the transfer here, writes untouched).
        let answers =
            super::network::peer_status(&self.net, &node.rpc_addr, Duration::from_millis(500)).await;
        if answers.is_none_or(|s| s.node_id != name) {
            return Err(NnError::HandOver(format!(
                "namenode {name} at {} does not answer as {name}; {} leads on",
                node.rpc_addr, self.me.name
            )));
        }
        if !self
            .wait_metrics(SETTLE, |m| lag(m).is_some_and(|l| l <= NEAR))
            .await
        {
            return Err(NnError::HandOver(format!(
                "namenode {name} is not within {NEAR} entries of the log after {} s (down or far behind); {} leads on",
                SETTLE.as_secs(),
                self.me.name
            )));
        }
        self.replicator.hand_over(node.rpc_addr.clone());
        let _resume = Resume(self);
        tracing::info!(to = %name, "handing leadership over");
        // Writes paused: what was proposed commits, and reaches the member.
        if !self
            .wait_metrics(PAUSE_LIMIT, |m| {
                self.replicator.pending() == 0 && lag(m) == Some(0)
            })
            .await
        {
            return Err(NnError::HandOver(format!(
                "namenode {name} did not receive the whole log within {} ms of writes pausing; {} leads on",
                PAUSE_LIMIT.as_millis(),
                self.me.name
            )));
        }
        // Silence: every member's lease on this leader runs out.
        let started = Instant::now();
        self.raft.runtime_config().heartbeat(false);
        tokio::time::sleep(self.lease + Duration::from_millis(100)).await;
        let term = self.raft.metrics().borrow().current_term;
        super::network::send_take_over(
            &self.secret,
            &self.net,
            &node.rpc_addr,
            &TakeOver {
                node: name.to_string(),
                term,
            },
        )
        .await?;
        let won = self
            .wait_metrics(3 * self.lease, |m| m.current_leader == Some(id))
            .await;
        let now = self.raft.metrics().borrow().current_leader;
        if !won {
            let who = now
                .and_then(|l| membership.get_node(&l).map(|n| n.name.clone()))
                .unwrap_or_else(|| "no namenode".into());
            return Err(NnError::HandOver(format!(
                "namenode {name} stood for election but {who} leads"
            )));
        }
        tracing::info!(to = %name, took_ms = started.elapsed().as_millis() as u64, "leadership handed over");
        Ok(name.to_string())
    }

    /// The hand-over's last step, on the chosen follower: stand now.
    pub(super) async fn take_over(&self, req: TakeOver) -> Result<()> {
        let m = self.raft.metrics().borrow().clone();
        if req.node != self.me.name {
            return Err(NnError::InvalidArgument(format!(
                "a hand-over to {} reached {}",
                req.node, self.me.name
            )));
        }
        if req.term != m.current_term || m.state != ServerState::Follower {
            return Err(NnError::InvalidArgument(format!(
                "a stale hand-over (term {}): {} is a {} in term {}",
                req.term,
                self.me.name,
                super::role_name(m.state),
                m.current_term
            )));
        }
        tracing::info!(
            term = m.current_term,
            "standing for election: the leader hands over"
        );
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| NnError::Internal(format!("raft stopped: {e}")))
    }
}
