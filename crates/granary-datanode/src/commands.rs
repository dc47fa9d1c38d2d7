//! Carrying out the namenode's commands on this datanode's replicas
//! (delete, verify, and the two steps of lease recovery). Each reports its
//! outcome through the incremental block report.

use std::sync::Arc;
use std::time::Duration;

use crate::context::{DatanodeContext, ReplicaEvent};
use granary_proto as pb;

/// How long lease recovery waits for a stopped write pipeline to hand its
/// replica over.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Deletes replicas, each only at the generation stamp named.
pub fn invalidate(ctx: &DatanodeContext, blocks: Vec<pb::ExtendedBlock>) {
    for b in blocks {
        // A half-written replica a broken pipeline left here.
        let kept = {
            let mut r = ctx.recoverable.lock();
            match r.get(&b.block_id) {
                Some((w, _)) if w.gs == b.generation_stamp => r.remove(&b.block_id).map(|(w, _)| w),
                _ => None,
            }
        };
        if let Some(w) = kept {
            w.abort();
            ctx.report(ReplicaEvent::Deleted(b));
            continue;
        }
        match ctx.storage.delete(&b) {
            Ok(true) => ctx.report(ReplicaEvent::Deleted(b)),
            Ok(false) => {
                tracing::debug!(
                    block_id = b.block_id,
                    gs = b.generation_stamp,
                    "no replica of that generation to delete"
                )
            }
            Err(e) => tracing::warn!(block_id = b.block_id, error = %e, "cannot delete replica"),
        }
    }
}

/// Re-reads replicas a reader reported corrupt and says what was found,
/// one verification at a time (the namenode asks at most once per replica
/// until it is answered, but commands can pile up).
pub fn verify(ctx: &DatanodeContext, blocks: Vec<pb::ExtendedBlock>) {
    let _turn = ctx.verify_turn.lock();
    for b in blocks {
        let Some(rep) = ctx.storage.get(b.block_id).filter(|r| r.gs == b.generation_stamp) else {
            continue;
        };
        let held = pb::ExtendedBlock {
            num_bytes: rep.len,
            ..b
        };
        let verdict = match ctx.storage.damage(b.block_id) {
            Some(why) => crate::block_scanner::Verdict::Corrupt(why),
            None => crate::block_scanner::scan_replica(ctx, b.block_id, 1 << 30),
        };
        match verdict {
            crate::block_scanner::Verdict::Good => {
                tracing::info!(block_id = b.block_id, "replica a reader reported is intact");
                ctx.report(ReplicaEvent::Verified(held));
            }
            crate::block_scanner::Verdict::Corrupt(why) => {
                tracing::warn!(block_id = b.block_id, error = %why, "replica a reader reported is corrupt");
                ctx.storage.mark_damaged(b.block_id, why.clone());
                ctx.report(ReplicaEvent::Corrupt(held, why));
            }
            crate::block_scanner::Verdict::Missing => {
                if ctx.storage.forget(b.block_id) {
                    ctx.report(ReplicaEvent::Deleted(held));
                }
            }
            crate::block_scanner::Verdict::Gone => {}
            crate::block_scanner::Verdict::Unreadable(why) => {
                tracing::error!(block_id = b.block_id, error = %why, "replica a reader reported cannot be read; left as it is");
            }
        }
    }
}

/// Lease recovery, first step: stop any pipeline still writing `block`,
/// keep its replica, and report what this node holds of it.
pub async fn recover_block(ctx: Arc<DatanodeContext>, block: pb::ExtendedBlock) {
    let id = block.block_id;
    let writing = ctx.active_writes.lock().get(&id).map(|(_, t)| t.clone());
    if let Some(stop) = writing {
        tracing::info!(
            block_id = id,
            "lease recovery stops the write pipeline of this block"
        );
        stop.cancel();
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while ctx.active_writes.lock().contains_key(&id) {
            if tokio::time::Instant::now() >= deadline {
                // Its last write is stuck (a hung disk): say nothing rather
                // than "not held"; the namenode asks again.
                tracing::warn!(
                    block_id = id,
                    "lease recovery: the write pipeline did not stop; not reporting yet"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let kept = ctx.recoverable.lock().get(&id).map(|(w, _)| pb::ExtendedBlock {
        block_id: id,
        generation_stamp: w.gs,
        num_bytes: w.written(),
    });
    let event = if let Some(b) = kept {
        ReplicaEvent::Waiting(b)
    } else if let Some(r) = ctx.storage.waiting(id) {
        ReplicaEvent::Waiting(pb::ExtendedBlock {
            block_id: id,
            generation_stamp: r.gs,
            num_bytes: r.len,
        })
    } else if let Some(r) = ctx.storage.get(id).filter(|_| ctx.storage.damage(id).is_none()) {
        ReplicaEvent::Received(pb::ExtendedBlock {
            block_id: id,
            generation_stamp: r.gs,
            num_bytes: r.len,
        })
    } else {
        ReplicaEvent::NotHeld(id)
    };
    tracing::info!(block_id = id, ?event, "lease recovery: replica reported");
    ctx.report(event);
}

/// Lease recovery, second step: finalize the replica of `block` at
/// `length` bytes under `new_gs` (fsynced), then report it received.
pub fn commit_replica(ctx: &DatanodeContext, block: pb::ExtendedBlock, new_gs: u64, length: u64) {
    let id = block.block_id;
    let writer = {
        let mut r = ctx.recoverable.lock();
        match r.get(&id) {
            Some((w, _)) if w.gs == block.generation_stamp => r.remove(&id).map(|(w, _)| w),
            _ => None,
        }
    };
    if writer.is_none()
        && ctx
            .storage
            .waiting(id)
            .is_none_or(|r| r.gs != block.generation_stamp)
    {
        // Finalized here already at that generation (the writer's last
        // packet arrived): cut and restamp it the same way.
        match ctx.storage.get(id) {
            Some(r) if r.gs == block.generation_stamp => match ctx.storage.reopen_finalized(id, new_gs) {
                Ok(w) => return finish(ctx, ctx.storage.commit(Some(w), &block, new_gs, length), id),
                Err(e) => {
                    tracing::warn!(block_id = id, error = %e, "lease recovery: cannot reopen the replica");
                    return;
                }
            },
            _ => {
                tracing::warn!(
                    block_id = id,
                    gs = block.generation_stamp,
                    "lease recovery: no replica of that generation here"
                );
                return;
            }
        }
    }
    finish(ctx, ctx.storage.commit(writer, &block, new_gs, length), id);
}

fn finish(ctx: &DatanodeContext, res: Result<pb::ExtendedBlock, crate::storage::StorageError>, id: u64) {
    match res {
        Ok(fin) => {
            tracing::info!(
                block_id = id,
                gs = fin.generation_stamp,
                bytes = fin.num_bytes,
                "lease recovery finalized the replica"
            );
            ctx.report(ReplicaEvent::Received(fin));
        }
        Err(e) => tracing::warn!(block_id = id, error = %e, "lease recovery could not finalize the replica"),
    }
}

/// Runs the disk balancer (unless a run is going on), off the executor.
pub fn disk_balance(ctx: Arc<DatanodeContext>, cmd: pb::DiskBalanceCommand) {
    use std::sync::atomic::Ordering;
    if ctx.disk_balancing.swap(true, Ordering::SeqCst) {
        tracing::info!("disk balancer already running; this request is left");
        return;
    }
    /// Lowers the flag however the run ends (a panic included).
    struct Running(Arc<DatanodeContext>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.disk_balancing.store(false, Ordering::SeqCst);
        }
    }
    tokio::task::spawn_blocking(move || {
        let running = Running(ctx.clone());
        let threshold = cmd.threshold_percent / 100.0;
        tracing::info!(threshold = cmd.threshold_percent, "disk balancer started");
        let stop = ctx.stop.clone();
        match ctx
            .storage
            .balance_volumes(threshold, cmd.bandwidth_bytes_per_sec, &|| stop.is_cancelled())
        {
            Ok(d) => {
                tracing::info!(moved = d.moved, bytes = d.bytes, failed = d.failed, utilization = ?d.utilization, "disk balancer done")
            }
            Err(e) => tracing::error!(error = %e, "disk balancer stopped"),
        }
        drop(running);
    });
}
