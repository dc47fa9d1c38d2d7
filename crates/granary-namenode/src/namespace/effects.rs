//! What a mutation changes, as data: the keys it puts and deletes in each
//! column family. A namenode that runs alone writes it as one RocksDB
//! batch; a Raft leader also ships it, as is, in a log entry, so every
//! namenode applies exactly the same bytes (ids, generation stamps and
//! times were chosen once, by the leader).

use rocksdb::{DB, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::inode::ALL_CFS;

/// One key set or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Index into [`ALL_CFS`].
    pub cf: u8,
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// A mutation's changes, applied atomically and in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    ops: Vec<Op>,
}

fn cf_index(name: &str) -> u8 {
    // Every caller names one of the constants in ALL_CFS.
    ALL_CFS.iter().position(|c| *c == name).unwrap_or(usize::MAX) as u8
}

impl Effects {
    pub fn put_cf(&mut self, cf: &'static str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops.push(Op {
            cf: cf_index(cf),
            key: key.as_ref().to_vec(),
            value: Some(value.as_ref().to_vec()),
        });
    }

    pub fn delete_cf(&mut self, cf: &'static str, key: impl AsRef<[u8]>) {
        self.ops.push(Op {
            cf: cf_index(cf),
            key: key.as_ref().to_vec(),
            value: None,
        });
    }

    /// Appends `other`'s changes after these.
    pub fn extend(&mut self, other: Effects) {
        self.ops.extend(other.ops);
    }

    /// Keeps only the changes `keep` (given column family, key, value) says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&'static str, &[u8], Option<&[u8]>) -> bool) {
        self.ops.retain(|op| match ALL_CFS.get(usize::from(op.cf)) {
            Some(cf) => keep(cf, &op.key, op.value.as_deref()),
            None => true,
        });
    }

    /// The changes to column family `cf`, in order.
    pub fn ops_in(&self, cf: &'static str) -> impl Iterator<Item = &Op> {
        let cf = cf_index(cf);
        self.ops.iter().filter(move |op| op.cf == cf)
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The last change to `key` in column family `cf`: `Some(None)` when
    /// it is deleted, `None` when these changes leave it alone.
    pub fn last_change(&self, cf: &'static str, key: &[u8]) -> Option<Option<&[u8]>> {
        let cf = cf_index(cf);
        self.ops
            .iter()
            .rev()
            .find(|op| op.cf == cf && op.key == key)
            .map(|op| op.value.as_deref())
    }

    /// Every key of `cf` these changes touch, once, in the order first
    /// touched, with its final value (`None`: deleted).
    pub fn final_values(&self, cf: &'static str) -> Vec<(&[u8], Option<&[u8]>)> {
        let cf = cf_index(cf);
        let mut at: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        let mut out: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        for op in self.ops.iter().filter(|op| op.cf == cf) {
            match at.get(op.key.as_slice()) {
                Some(&i) => out[i].1 = op.value.as_deref(),
                None => {
                    at.insert(op.key.as_slice(), out.len());
                    out.push((op.key.as_slice(), op.value.as_deref()));
                }
            }
        }
        out
    }

    /// Adds these changes to `batch` (which may hold others already).
    /// Fails on a column family index no namenode writes: an entry that
    /// lies is refused whole, never half applied.
    pub fn write_to(&self, db: &DB, batch: &mut WriteBatch) -> Result<()> {
        for op in &self.ops {
            let name = ALL_CFS
                .get(usize::from(op.cf))
                .ok_or_else(|| NnError::Corrupt(format!("change names column family {}", op.cf)))?;
            let cf = db
                .cf_handle(name)
                .ok_or_else(|| NnError::Corrupt(format!("column family {name} missing")))?;
            match &op.value {
                Some(v) => batch.put_cf(cf, &op.key, v),
                None => batch.delete_cf(cf, &op.key),
            }
        }
        Ok(())
    }

    /// The changes that put back what these ones overwrite, read from `db`
    /// before they are written: applied after them, they leave `db` as it was.
    pub fn undo(&self, db: &DB) -> Result<Effects> {
        let mut undo = Vec::with_capacity(self.ops.len());
        let mut seen = std::collections::HashSet::new();
        for op in &self.ops {
            // A key changed twice: its value before the first change counts.
            if !seen.insert((op.cf, op.key.as_slice())) {
                continue;
            }
            let name = ALL_CFS
                .get(usize::from(op.cf))
                .ok_or_else(|| NnError::Corrupt(format!("change names column family {}", op.cf)))?;
            let cf = db
                .cf_handle(name)
                .ok_or_else(|| NnError::Corrupt(format!("column family {name} missing")))?;
            undo.push(Op {
                cf: op.cf,
                key: op.key.clone(),
                value: db.get_cf(cf, &op.key)?,
            });
        }
        Ok(Effects { ops: undo })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::{CF_INODES, CF_META};

    #[test]
    fn undo_puts_back_what_the_changes_overwrote() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, tmp.path(), ALL_CFS).expect("db");
        let mut first = Effects::default();
        first.put_cf(CF_META, b"a", b"1");
        first.put_cf(CF_INODES, b"b", b"2");
        let mut batch = WriteBatch::default();
        first.write_to(&db, &mut batch).expect("batch");
        db.write(batch).expect("write");

        let mut change = Effects::default();
        change.put_cf(CF_META, b"a", b"changed");
        change.put_cf(CF_META, b"a", b"twice");
        change.delete_cf(CF_INODES, b"b");
        change.put_cf(CF_INODES, b"c", b"new");
        let undo = change.undo(&db).expect("undo");
        let mut batch = WriteBatch::default();
        change.write_to(&db, &mut batch).expect("batch");
        db.write(batch).expect("write");
        let meta = db.cf_handle(CF_META).expect("cf");
        assert_eq!(
            db.get_cf(meta, b"a").expect("get").as_deref(),
            Some(&b"twice"[..])
        );

        let mut batch = WriteBatch::default();
        undo.write_to(&db, &mut batch).expect("batch");
        db.write(batch).expect("write");
        let inodes = db.cf_handle(CF_INODES).expect("cf");
        assert_eq!(db.get_cf(meta, b"a").expect("get").as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get_cf(inodes, b"b").expect("get").as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get_cf(inodes, b"c").expect("get"), None);

        let lying = Effects {
            ops: vec![Op {
                cf: 9,
                key: b"x".to_vec(),
                value: None,
            }],
        };
        let err = lying
            .write_to(&db, &mut WriteBatch::default())
            .expect_err("refused");
        assert!(err.to_string().contains("column family 9"), "{err}");
    }
}
