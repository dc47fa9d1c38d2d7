//! Which user a certificate's name is (HDFS's `auth_to_local`): `[tls]
//! user_rules`, tried in order; the first whose pattern matches the whole
//! name gives the user (`$1` and friends refer to its groups). A name no
//! rule matches is the user of that name.
//!
//! ```toml
//! [tls]
//! user_rules = [
//!   { pattern = "(.*)@EXAMPLE\\.COM", user = "$1" },
//!   { pattern = "svc-(.*)", user = "$1" },
//! ]
//! ```

use serde::{Deserialize, Serialize};

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRule {
    pub pattern: String,
    pub user: String,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct UserMap(Vec<(regex::Regex, String)>);

impl UserMap {
    pub fn new(rules: &[UserRule]) -> Result<Self, String> {
        rules
            .iter()
            .map(|r| {
                regex::Regex::new(&format!("^(?:{})$", r.pattern))
                    .map(|re| (re, r.user.clone()))
                    .map_err(|e| format!("[tls] user_rules pattern {:?}: {e}", r.pattern))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The user certificate name `name` is; None when a rule maps it to
    /// nothing a user can be called (empty, a '/', spaces).
    pub fn user(&self, name: &str) -> Option<String> {
        let mapped = match self
            .0
            .iter()
            .find_map(|(re, user)| re.captures(name).map(|c| (c, user)))
        {
            Some((caps, user)) => {
                let mut out = String::new();
                caps.expand(user, &mut out);
                out
            }
            None => name.to_string(),
        };
        (!mapped.is_empty()
            && !mapped
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control()))
        .then_some(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_names_in_order_and_others_stay() {
        let m = UserMap::new(&[
            UserRule {
                pattern: "(.*)@EXAMPLE\\.COM".into(),
                user: "$1".into(),
            },
            UserRule {
                pattern: "svc-(.*)".into(),
                user: "${1}_svc".into(),
            },
            UserRule {
                pattern: "nobody-.*".into(),
                user: "".into(),
            },
        ])
        .unwrap();
        assert_eq!(m.user("alice@EXAMPLE.COM").as_deref(), Some("alice"));
        assert_eq!(m.user("svc-etl").as_deref(), Some("etl_svc"));
        assert_eq!(m.user("bob").as_deref(), Some("bob"));
        // Whole names only: no rule matches a part.
        assert_eq!(m.user("x-svc-etl").as_deref(), Some("x-svc-etl"));
        assert_eq!(m.user("nobody-1"), None, "mapped to no user");
        assert!(
            UserMap::new(&[UserRule {
                pattern: "(".into(),
                user: "x".into()
            }])
            .is_err()
        );
    }
}
