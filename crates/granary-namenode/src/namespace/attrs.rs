//! An inode's attributes (replication, permission, owner, times), and the
//! datanodes kept out of service.

use rocksdb::{Direction, IteratorMode};

use super::{Namespace, Written};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};

impl Namespace {
    /// Runs `f` on the inode at `path` and stores the result.
    fn update(
        &self,
        caller: &Caller,
        path: &str,
        f: impl FnOnce(&Caller, &mut Inode) -> Result<()>,
    ) -> Result<Written<Inode>> {
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let mut inode = r.existing()?.clone();
            f(caller, &mut inode)?;
            self.put_inode(batch, &inode)?;
            Ok(inode)
        })
    }

    /// Returns the file with its new replication.
    pub fn set_replication(&self, caller: &Caller, path: &str, replication: u32) -> Result<Written<Inode>> {
        if replication == 0 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: replication must be at least 1"
            )));
        }
        let replication = self.check_replication(path, replication)?;
        self.update(caller, path, |c, inode| {
            if inode.is_dir {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            c.check(inode, Access::Write, path)?;
            inode.replication = replication;
            Ok(())
        })
    }

    pub fn set_permission(&self, caller: &Caller, path: &str, mode: u32) -> Result<Written<()>> {
        if mode > 0o7777 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: invalid permission {mode:o}"
            )));
        }
        self.update(caller, path, |c, inode| {
            c.check_owner(inode, path)?;
            inode.mode = mode;
            Ok(())
        })
        .map(|w| w.map(|_| ()))
    }

    pub fn set_owner(
        &self,
        caller: &Caller,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<Written<()>> {
        for n in [owner, group].into_iter().flatten() {
            if n.is_empty() || n.contains([':', '\0', '\n']) {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: invalid user or group name {n:?}"
                )));
            }
        }
        self.update(caller, path, |c, inode| {
            c.check_owner(inode, path)?;
            if let Some(o) = owner {
                if !c.is_super && o != inode.owner {
                    return Err(NnError::PermissionDenied {
                        user: c.user().to_string(),
                        access: "CHOWN (superuser only)".into(),
                        inode: format!("\"{path}\""),
                    });
                }
                inode.owner = o.to_string();
            }
            if let Some(g) = group {
                if !c.is_super && !c.in_group(g) {
                    return Err(NnError::PermissionDenied {
                        user: c.user().to_string(),
                        access: format!("CHGRP to {g} (not a member)"),
                        inode: format!("\"{path}\""),
                    });
                }
                inode.group = g.to_string();
            }
            Ok(())
        })
        .map(|w| w.map(|_| ()))
    }

    /// Datanodes (by uuid) an operator decommissioned and did not return to
    /// service. Kept with the namespace, as HDFS keeps them in its exclude
    /// file, so a restarted namenode does not place replicas on them again.
    pub fn out_of_service(&self) -> Result<Vec<String>> {
        let mut uuids = Vec::new();
        let from = IteratorMode::From(META_OUT_OF_SERVICE, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META)?, from) {
            let (k, _) = item?;
            let Some(uuid) = k.strip_prefix(META_OUT_OF_SERVICE) else {
                break;
            };
            uuids.push(String::from_utf8_lossy(uuid).into_owned());
        }
        Ok(uuids)
    }

    /// Records that datanode `uuid` is out of service (decommissioned or
    /// being decommissioned), or back in service.
    pub fn set_out_of_service(&self, uuid: &str, out: bool) -> Result<Written<()>> {
        let key = [META_OUT_OF_SERVICE, uuid.as_bytes()].concat();
        self.mutate_marked(|batch| {
            if out {
                batch.put_cf(CF_META, key, b"");
            } else {
                batch.delete_cf(CF_META, key);
            }
            Ok(((), false))
        })
    }

    /// Binds datanode `uuid` to its node key (by fingerprint) at its first
    /// registration; true when `fingerprint` is the key it is bound to (or
    /// now is), false when another key holds the uuid.
    pub fn bind_datanode(&self, uuid: &str, fingerprint: &[u8]) -> Result<Written<bool>> {
        let key = [META_DATANODE_KEY, uuid.as_bytes()].concat();
        if let Some(r) = self.replication.get()
            && r.check_leader().is_err()
        {
            // A follower only checks: binding a new key is the leader's to
            // write (the datanode registers with the leader too).
            let bound = self.db.get_pinned_cf(self.cf(CF_META)?, &key)?;
            return Ok(Written::unchanged(
                bound.is_none_or(|b| b.as_ref() == fingerprint),
            ));
        }
        self.mutate_marked(|batch| {
            let cf = self.cf(CF_META)?;
            match self.db.get_pinned_cf(cf, &key)? {
                Some(bound) => Ok((bound.as_ref() == fingerprint, false)),
                None => {
                    batch.put_cf(CF_META, &key, fingerprint);
                    Ok((true, false))
                }
            }
        })
    }

    pub fn set_times(
        &self,
        caller: &Caller,
        path: &str,
        mtime: Option<i64>,
        atime: Option<i64>,
    ) -> Result<Written<()>> {
        self.update(caller, path, |c, inode| {
            c.check(inode, Access::Write, path)?;
            if let Some(m) = mtime {
                inode.mtime = m;
            }
            if let Some(a) = atime {
                inode.atime = a;
            }
            Ok(())
        })
        .map(|w| w.map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::namespace;

    /// Decommissioned datanodes are kept in the metadata store until they
    /// are returned to service; other metadata keys are not mistaken for them.
    #[test]
    fn out_of_service_datanodes_are_kept_until_recommissioned() {
        let (_tmp, ns, _su) = namespace();
        assert!(ns.out_of_service().expect("read").is_empty());
        ns.set_out_of_service("dn-b", true)
            .durably()
            .expect("decommission");
        ns.set_out_of_service("dn-a", true)
            .durably()
            .expect("decommission");
        ns.set_out_of_service("dn-a", true).durably().expect("again");
        assert_eq!(ns.out_of_service().expect("read"), ["dn-a", "dn-b"]);
        ns.set_out_of_service("dn-a", false)
            .durably()
            .expect("recommission");
        ns.set_out_of_service("dn-never", false)
            .durably()
            .expect("unknown: nothing to forget");
        assert_eq!(ns.out_of_service().expect("read"), ["dn-b"]);
    }
}
