//! Who stands for election when the leader goes quiet.
//!
//! A member votes only for a candidate whose log is at least as long as its
//! own, and openraft picks each member's election timeout once, at start.
//! So a member whose log is shorter (it restarted a moment ago, or the last
//! entries had not reached it) may stand first, be refused, and cost the
//! group another election timeout or two before the right member wins:
//! seconds without a leader. While no leader has been heard for a lease,
//! each member asks the others it can reach for their last log id and
//! holds back its own election while one of them holds a longer log, so
//! the member with the longest log stands first and wins at once.
//!
//! This only decides *when* openraft may start an election (its runtime
//! `elect` switch); voting and safety stay openraft's. A member is never
//! held back longer than [`HOLD_LIMIT_LEASES`] leases, so a longer log on
//! a member that cannot win (it reaches us but not the others) delays an
//! election and does not stop it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::{Ha, NodeId, network};

/// How often the switch is reviewed.
const TICK: Duration = Duration::from_millis(100);
/// How long a member waits for another's answer.
const ASK_WITHIN: Duration = Duration::from_millis(200);
/// The longest a member holds back, in leases.
const HOLD_LIMIT_LEASES: u32 = 2;

/// A log position as a vote compares it: (term, index).
type LogPos = (u64, u64);

pub(super) fn spawn(ha: Arc<Ha>, token: CancellationToken) {
    tokio::spawn(async move {
        let mut held_since: Option<Instant> = None;
        let mut open = true;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let longer = match ha.peer_with_longer_log().await {
                Some((peer, theirs, mine)) => {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    (since.elapsed() < HOLD_LIMIT_LEASES * ha.lease).then_some((peer, theirs, mine))
                }
                None => {
                    held_since = None;
                    None
                }
            };
            let hold = longer.is_some();
            if hold == open {
                open = !hold;
                ha.raft.runtime_config().elect(open);
                match longer {
                    Some((peer, theirs, mine)) => tracing::info!(
                        peer = %peer,
                        their_log = ?theirs,
                        my_log = ?mine,
                        "holding back from elections: another member holds a longer log"
                    ),
                    None => tracing::info!("may stand for election again"),
                }
            }
        }
    });
}

impl Ha {
    /// A voting member reachable now whose log is longer than this one's,
    /// when no leader has been heard for a lease (else `None`); with both
    /// logs' positions.
    async fn peer_with_longer_log(&self) -> Option<(String, LogPos, LogPos)> {
        if self.heard_within(self.lease) {
            return None;
        }
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            return None;
        }
        let membership = m.membership_config.membership();
        let others: Vec<(NodeId, super::NnNode)> = membership
            .voter_ids()
            .filter(|id| *id != m.id)
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect();
        if others.is_empty() {
            return None;
        }
        let mine = match self.log.last_log_id() {
            Ok(l) => l.map_or((0, 0), |l| (l.leader_id.term, l.index)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the raft log's last entry");
                return None;
            }
        };
        let asks = others
            .iter()
            .map(|(_, n)| network::peer_status(&self.net, &n.rpc_addr, ASK_WITHIN));
        let answers = futures::future::join_all(asks).await;
        answers
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let own = s.members.iter().find(|x| x.node_id == s.node_id)?;
                Some((s.node_id.clone(), (own.last_log_term, own.last_log_index)))
            })
            .filter(|(_, theirs)| *theirs > mine)
            .max_by_key(|(_, theirs)| *theirs)
            .map(|(peer, theirs)| (peer, theirs, mine))
    }
}
