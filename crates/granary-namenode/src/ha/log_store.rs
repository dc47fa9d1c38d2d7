//! The Raft log and vote, in their own RocksDB (`<data_dir>/raft`). Appends
//! are written at once and made durable by the group commit's syncer
//! thread: openraft hands over the next entries while the last fsync runs,
//! so many entries share one fsync.

// openraft's StorageError, which its traits return, is large.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::{NodeId, TypeConfig, decode, encode};
use crate::error::{NnError, Result};
use crate::group_commit::GroupCommit;

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

type StErr = StorageError<NodeId>;

fn write_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::read_logs(&e).into()
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    commit: Arc<GroupCommit<rocksdb::Error>>,
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| NnError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_manual_wal_flush(true);
        opts.set_max_background_jobs(1);
        let cfs = [CF_LOG, CF_STATE].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
        let syncing = db.clone();
        let commit = GroupCommit::start(move || syncing.flush_wal(true))
            .map_err(|e| NnError::Internal(format!("cannot start the raft log sync thread: {e}")))?;
        Ok(Self {
            db,
            commit: Arc::new(commit),
        })
    }

    fn cf(&self, name: &str) -> std::result::Result<&rocksdb::ColumnFamily, StErr> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| read_err(NnError::Corrupt(format!("raft column family {name} missing"))))
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> std::result::Result<Option<T>, StErr> {
        match self.db.get_cf(self.cf(CF_STATE)?, key).map_err(read_err)? {
            Some(b) => Ok(Some(decode("raft state", &b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    /// Writes `batch` and waits until it is on disk.
    async fn write_synced(&self, batch: WriteBatch) -> std::result::Result<(), StErr> {
        self.db.write(batch).map_err(write_err)?;
        self.commit
            .durable(self.commit.note_write())
            .wait()
            .await
            .map_err(write_err)
    }

    async fn put_state<T: serde::Serialize>(&self, key: &[u8], v: &T) -> std::result::Result<(), StErr> {
        let mut b = WriteBatch::default();
        b.put_cf(
            self.cf(CF_STATE)?,
            key,
            encode("raft state", v).map_err(write_err)?,
        );
        self.write_synced(b).await
    }

    /// The id of the last entry (or of the last purged one), read without
    /// decoding the entry's payload (an entry is encoded id first).
    pub fn last_log_id(&self) -> std::result::Result<Option<LogId<NodeId>>, StErr> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End);
        if let Some(kv) = it.next() {
            let (_, v) = kv.map_err(read_err)?;
            let (id, _) = postcard::take_from_bytes::<LogId<NodeId>>(&v)
                .map_err(|e| read_err(NnError::Corrupt(format!("undecodable raft log entry: {e}"))))?;
            return Ok(Some(id));
        }
        self.get_state(KEY_PURGED)
    }

    fn last_entry(&self) -> std::result::Result<Option<Entry<TypeConfig>>, StErr> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End);
        match it.next() {
            Some(kv) => {
                let (_, v) = kv.map_err(read_err)?;
                Ok(Some(decode("raft log entry", &v).map_err(read_err)?))
            }
            None => Ok(None),
        }
    }
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StErr> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_LOG)?,
            IteratorMode::From(&index_key(start), Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv.map_err(read_err)?;
            let idx = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| read_err(NnError::Corrupt("raft log key is not 8 bytes".into())))?,
            );
            if !range.contains(&idx) {
                break;
            }
            out.push(decode("raft log entry", &v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<TypeConfig>, StErr> {
        let last_purged: Option<LogId<NodeId>> = self.get_state(KEY_PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> std::result::Result<(), StErr> {
        self.put_state(KEY_VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote<NodeId>>, StErr> {
        self.get_state(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> std::result::Result<(), StErr> {
        // Not synced: a lost value is found again from a quorum.
        let v = encode("raft state", &committed).map_err(write_err)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db
            .put_cf_opt(self.cf(CF_STATE)?, KEY_COMMITTED, v, &wo)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId<NodeId>>, StErr> {
        Ok(self.get_state::<Option<LogId<NodeId>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(
                cf,
                index_key(e.log_id.index),
                encode("raft log entry", &e).map_err(write_err)?,
            );
        }
        self.db.write(batch).map_err(write_err)?;
        // Told once an fsync covers these entries, on the syncer thread.
        self.commit
            .durable(self.commit.note_write())
            .then(move |r| callback.log_io_completed(r.map_err(std::io::Error::other)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> std::result::Result<(), StErr> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.write_synced(batch).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> std::result::Result<(), StErr> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_STATE)?,
            KEY_PURGED,
            encode("raft state", &log_id).map_err(write_err)?,
        );
        batch.delete_range_cf(self.cf(CF_LOG)?, index_key(0), index_key(log_id.index + 1));
        self.write_synced(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    #[tokio::test]
    async fn the_last_log_id_is_read_without_its_payload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = LogStore::open(dir.path()).expect("open");
        assert_eq!(log.last_log_id().expect("read"), None);
        let mut batch = WriteBatch::default();
        for (term, index) in [(1, 1), (1, 2), (3, 3)] {
            let e: Entry<TypeConfig> = Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, 7), index),
                payload: EntryPayload::Blank,
            };
            batch.put_cf(
                log.cf(CF_LOG).expect("cf"),
                index_key(index),
                encode("raft log entry", &e).expect("encode"),
            );
        }
        log.write_synced(batch).await.expect("write");
        let last = log.last_log_id().expect("read").expect("an entry");
        assert_eq!((last.leader_id.term, last.index), (3, 3));
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(last));
    }
}
