//! The trash emptier (HDFS's `TrashPolicyDefault.Emptier`): every
//! checkpoint interval the namenode, as the superuser, checkpoints each
//! user's trash (`/user/USER/.Trash/Current` renamed to the time) and
//! deletes checkpoints older than the trash interval. Its calls go through
//! the client service like anyone's (checks, audit lines, block deletion).
//! Clients move deleted paths into the trash themselves (`granary fs rm`);
//! the layout is `granary_common::trash`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::rpc::audited::Audited;
use crate::state::NamenodeState;
use granary_common::ErrorCode;
use granary_common::config::ConfigError;
use granary_common::identity::Identity;
use granary_common::trash;
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

/// `[trash]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrashConfig {
    /// Minutes a deleted path stays in its user's trash (HDFS's
    /// `fs.trash.interval`; fractions allowed). 0: `rm` deletes at once.
    pub interval_minutes: f64,
    /// Minutes between checkpoints of every user's trash (HDFS's
    /// `fs.trash.checkpoint.interval`); 0: the interval.
    pub checkpoint_interval_minutes: f64,
}

impl Default for TrashConfig {
    fn default() -> Self {
        // What the major Hadoop distributions ship: a day.
        Self {
            interval_minutes: 1440.0,
            checkpoint_interval_minutes: 0.0,
        }
    }
}

impl TrashConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("interval_minutes", self.interval_minutes),
            ("checkpoint_interval_minutes", self.checkpoint_interval_minutes),
        ] {
            if !v.is_finite() || !(0.0..=525_600.0 * 10.0).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "[trash] {name} = {v}: minutes from 0 to ten years"
                )));
            }
        }
        if self.checkpoint_interval_minutes > self.interval_minutes {
            return Err(ConfigError::Invalid(format!(
                "[trash] checkpoint_interval_minutes = {} is longer than interval_minutes = {}",
                self.checkpoint_interval_minutes, self.interval_minutes
            )));
        }
        Ok(())
    }

    /// How long deleted paths stay; zero when the trash is off.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_minutes * 60.0)
    }

    /// How often the emptier runs.
    pub fn checkpoint_every(&self) -> Duration {
        match self.checkpoint_interval_minutes {
            m if m > 0.0 => Duration::from_secs_f64(m * 60.0),
            _ => self.interval(),
        }
    }
}

/// Runs the emptier while the namenode serves (on a group's leader only);
/// nothing when the trash is off.
pub fn spawn_emptier(state: Arc<NamenodeState>, token: CancellationToken) -> Option<JoinHandle<()>> {
    let cfg = state.config().trash.clone();
    if cfg.interval().is_zero() {
        return None;
    }
    let every = cfg.checkpoint_every().max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        let svc = Audited::new(state.clone());
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !state.is_active() || state.check_writable().is_err() {
                continue;
            }
            let su = state.config().namespace.superuser.clone();
            match empty(&svc, &su, cfg.interval(), chrono::Utc::now(), &token).await {
                Ok(n) if n.checkpoints + n.expired > 0 => {
                    tracing::info!(checkpoints = n.checkpoints, expired = n.expired, "trash emptied");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.message(), "trash emptier failed; trying again next round")
                }
            }
        }
    }))
}

/// What one round did.
#[derive(Debug, Default, PartialEq)]
pub struct Emptied {
    pub checkpoints: usize,
    pub expired: usize,
}

/// One round over every user's trash: expired checkpoints deleted, then
/// `Current` checkpointed.
pub async fn empty(
    svc: &Audited,
    superuser: &str,
    interval: Duration,
    now: chrono::DateTime<chrono::Utc>,
    stop: &CancellationToken,
) -> Result<Emptied, Status> {
    let mut done = Emptied::default();
    for home in list(svc, superuser, "/user").await? {
        if stop.is_cancelled() {
            break;
        }
        if !home.is_dir() {
            continue;
        }
        // One user's trash failing leaves the others' to be emptied.
        let root = trash::root(&home.name);
        if let Err(e) = empty_one(svc, superuser, &root, interval, now, &mut done).await {
            tracing::warn!(user = %home.name, error = %e.message(), "cannot empty this user's trash; trying again next round");
        }
    }
    Ok(done)
}

/// One user's trash: expired checkpoints deleted, then `Current` checkpointed.
async fn empty_one(
    svc: &Audited,
    superuser: &str,
    root: &str,
    interval: Duration,
    now: chrono::DateTime<chrono::Utc>,
    done: &mut Emptied,
) -> Result<(), Status> {
    let entries = list(svc, superuser, root).await?;
    for e in &entries {
        if trash::expired(&e.name, now, interval) {
            let req = pb::DeleteRequest {
                path: format!("{root}/{}", e.name),
                recursive: true,
            };
            svc.delete(call(superuser, req)).await?;
            done.expired += 1;
        }
    }
    if entries.iter().any(|e| e.name == trash::CURRENT) {
        checkpoint(svc, superuser, root, now).await?;
        done.checkpoints += 1;
    }
    Ok(())
}

/// Renames `ROOT/Current` to a checkpoint named for `now` (a suffix when
/// one of that second exists).
pub async fn checkpoint(
    svc: &Audited,
    superuser: &str,
    root: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Status> {
    for n in 0..100 {
        let name = format!("{root}/{}", trash::checkpoint_name(now, n));
        // Taken: a rename onto a directory would move Current into it.
        let taken = pb::GetFileInfoRequest { path: name.clone() };
        match svc.get_file_info(call(superuser, taken)).await {
            Ok(r) if r.get_ref().status.is_some() => continue,
            Ok(_) => {}
            Err(st) if ErrorCode::from_status(&st) == ErrorCode::FileNotFound => {}
            Err(st) => return Err(st),
        }
        let req = pb::RenameRequest {
            src: format!("{root}/{}", trash::CURRENT),
            dst: name.clone(),
            overwrite: false,
        };
        svc.rename(call(superuser, req)).await?;
        return Ok(name);
    }
    Err(granary_common::error::status(
        ErrorCode::FileAlreadyExists,
        format!("{root}: no free checkpoint name for {now}"),
    ))
}

/// Every entry of `dir`, page by page; none when it is not there.
async fn list(svc: &Audited, superuser: &str, dir: &str) -> Result<Vec<pb::FileStatus>, Status> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let req = pb::GetListingRequest {
            path: dir.to_string(),
            start_after: after.clone(),
            limit: 1000,
        };
        let page = match svc.get_listing(call(superuser, req)).await {
            Ok(p) => p.into_inner(),
            Err(st)
                if matches!(
                    ErrorCode::from_status(&st),
                    ErrorCode::FileNotFound | ErrorCode::ParentNotDirectory
                ) =>
            {
                return Ok(out);
            }
            Err(st) => return Err(st),
        };
        let more = page.has_more;
        if let Some(last) = page.entries.last() {
            after = last.name.clone();
        }
        out.extend(page.entries);
        if !more || after.is_empty() {
            return Ok(out);
        }
    }
}

/// A call made in-process as the superuser (no connection: taken as it
/// claims, as WebHDFS on this namenode is).
fn call<T>(superuser: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    Identity::new(superuser).apply(r.metadata_mut());
    r
}
