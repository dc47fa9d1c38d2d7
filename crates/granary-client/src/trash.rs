//! The trash, client side, as Hadoop's shell does it: `rm` moves a path
//! into its user's `/user/USER/.Trash/Current` when the namenode keeps a
//! trash (its trash interval, from getServerDefaults, is not 0), and
//! `expunge` deletes expired checkpoints and checkpoints `Current`. The
//! namenode's emptier does the same on its own every checkpoint interval.
//! Layout and names: `granary_common::trash`.

use granary_common::ErrorCode;
use granary_common::HasErrorCode;
use granary_common::trash;
use granary_proto as pb;

use crate::{ClientError, DfsClient, Result};

/// Where [`DfsClient::move_to_trash`] put a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trashed {
    pub from: String,
    pub to: String,
}

/// What [`DfsClient::expunge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    /// The checkpoint `Current` became, if there was one.
    pub checkpoint: Option<String>,
    /// Expired checkpoints deleted.
    pub deleted: Vec<String>,
}

impl DfsClient {
    /// The trash interval and the user the namenode takes this client
    /// for, asked each time (not cached: a gateway's clients act for
    /// several users).
    async fn trash_settings(&self) -> Result<(std::time::Duration, String)> {
        let d = nn_call!(self, get_server_defaults, pb::GetServerDefaultsRequest {}).await?;
        let user = match d.caller {
            u if u.is_empty() => self.caller.identity.user.clone(),
            u => u,
        };
        Ok((std::time::Duration::from_millis(d.trash_interval_ms), user))
    }

    /// Moves `path` (absolute) into its user's trash, as `rm` without
    /// `-skipTrash` does. None when it was not moved and is to be deleted
    /// instead: the trash is off, or `path` is in the trash already. A path
    /// holding the trash is refused, as HDFS refuses it.
    pub async fn move_to_trash(&self, path: &str) -> Result<Option<Trashed>> {
        let (interval, user) = self.trash_settings().await?;
        if interval.is_zero() || trash::is_in(&user, path) {
            return Ok(None);
        }
        if trash::contains(&user, path) {
            return Err(ClientError::Remote {
                code: ErrorCode::InvalidArgument,
                message: format!(
                    "Cannot move \"{path}\" to the trash, as it contains the trash. Consider using -skipTrash option"
                ),
            });
        }
        // The path must be there: a missing one is not moved (HDFS's message).
        self.stat(path).await?;
        // The directories leading to it in the trash; one that is a file
        // there (a path of that name deleted before) is stepped around with
        // the time as a suffix, as HDFS's trash does.
        let stamp = chrono::Utc::now().timestamp_millis();
        let mut parent = format!("{}/{}", trash::root(&user), trash::CURRENT);
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let Some((name, dirs)) = comps.split_last() else {
            return Ok(None);
        };
        for c in dirs {
            let mut next = format!("{parent}/{c}");
            if self.get_file_info(&next).await?.is_some_and(|s| !s.is_dir) {
                next = format!("{next}{stamp}");
            }
            parent = next;
        }
        self.mkdirs(&parent, Some(0o700), true).await?;
        let to = format!("{parent}/{name}");
        // Something of that name went to the trash before: this one gets
        // the time as a suffix, as HDFS's does. (A rename onto a directory
        // would move the path into it.)
        let to = match self.get_file_info(&to).await? {
            Some(_) => format!("{to}{}", chrono::Utc::now().timestamp_millis()),
            None => to,
        };
        self.rename(path, &to, false).await?;
        Ok(Some(Trashed {
            from: path.to_string(),
            to,
        }))
    }

    /// Deletes the checkpoints of this user's trash older than the trash
    /// interval, then makes `Current` a checkpoint (HDFS's `-expunge`);
    /// with `immediately`, deletes the whole trash (`-expunge -immediate`).
    pub async fn expunge(&self, immediately: bool) -> Result<Expunged> {
        let (interval, user) = self.trash_settings().await?;
        let root = trash::root(&user);
        let mut done = Expunged::default();
        let entries = match self.list(&root).await {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::FileNotFound => return Ok(done),
            Err(e) => return Err(e),
        };
        let now = chrono::Utc::now();
        for e in &entries {
            let path = format!("{root}/{}", e.name);
            let current = e.name == trash::CURRENT;
            if (immediately && (current || trash::checkpoint_time(&e.name).is_some()))
                || (!current && trash::expired(&e.name, now, interval))
            {
                self.delete(&path, true).await?;
                done.deleted.push(path);
            }
        }
        if !immediately && entries.iter().any(|e| e.name == trash::CURRENT) {
            let from = format!("{root}/{}", trash::CURRENT);
            for n in 0..100 {
                let to = format!("{root}/{}", trash::checkpoint_name(now, n));
                if self.get_file_info(&to).await?.is_some() {
                    continue;
                }
                self.rename(&from, &to, false).await?;
                done.checkpoint = Some(to);
                break;
            }
        }
        Ok(done)
    }
}
