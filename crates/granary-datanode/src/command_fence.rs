//! Which namenode's commands a datanode carries out. With namenodes in a
//! Raft group every namenode answers heartbeats, but only the active one
//! (the leader) may command replicas: a deposed leader that has not noticed
//! yet must never get a replica deleted. Each heartbeat reply says whether
//! its namenode is active and in which term; the datanode remembers the
//! highest term a namenode claiming to be active has shown, and refuses
//! commands from any namenode that is not active, or active in an older term.
//! A namenode running alone says active in term 0, always obeyed.

/// The highest term seen from a namenode claiming to be active.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandFence {
    highest: u64,
}

/// What to do with the commands of one heartbeat reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Obey,
    /// The namenode says it is a standby.
    NotActive,
    /// The namenode claims to be active in a term older than one already seen.
    StaleTerm {
        highest: u64,
    },
}

impl CommandFence {
    /// Decides on a reply from a namenode saying `active` in `term`, and
    /// remembers the term when it is the newest leader seen.
    pub fn admit(&mut self, active: bool, term: u64) -> Verdict {
        if !active {
            return Verdict::NotActive;
        }
        if term < self.highest {
            return Verdict::StaleTerm {
                highest: self.highest,
            };
        }
        self.highest = term;
        Verdict::Obey
    }

    pub fn highest(&self) -> u64 {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_namenode_in_term_zero_is_obeyed() {
        let mut f = CommandFence::default();
        assert_eq!(f.admit(true, 0), Verdict::Obey);
        assert_eq!(f.admit(true, 0), Verdict::Obey);
        assert_eq!(f.highest(), 0);
    }

    #[test]
    fn a_standby_is_refused_whatever_its_term() {
        let mut f = CommandFence::default();
        assert_eq!(f.admit(false, 0), Verdict::NotActive);
        assert_eq!(f.admit(false, 9), Verdict::NotActive);
        // A standby's term is no claim to leadership: it does not raise the fence.
        assert_eq!(f.highest(), 0);
        assert_eq!(f.admit(true, 3), Verdict::Obey);
    }

    #[test]
    fn a_deposed_leader_is_refused_once_a_newer_term_was_seen() {
        let mut f = CommandFence::default();
        assert_eq!(f.admit(true, 4), Verdict::Obey);
        assert_eq!(f.admit(true, 5), Verdict::Obey);
        // The leader of term 4 still thinks it leads.
        assert_eq!(f.admit(true, 4), Verdict::StaleTerm { highest: 5 });
        assert_eq!(f.highest(), 5);
    }

    #[test]
    fn the_current_leader_is_obeyed_again_in_the_same_term() {
        let mut f = CommandFence::default();
        assert_eq!(f.admit(true, 7), Verdict::Obey);
        assert_eq!(f.admit(true, 7), Verdict::Obey);
        assert_eq!(f.admit(false, 7), Verdict::NotActive);
        assert_eq!(f.admit(true, 7), Verdict::Obey);
    }
}
