//! TOML configuration files: the lowest layer under env vars and flags.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A setting that moved from the top level of a daemon's file into a
/// section: `old = v` at the top level is read as `key = v` in `[section]`.
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    pub old: &'static str,
    pub section: &'static str,
    pub key: &'static str,
}

impl Moved {
    pub const fn new(old: &'static str, section: &'static str, key: &'static str) -> Self {
        Self { old, section, key }
    }
}

/// Parses `path` into `T`, or gives `T::default()` when no file is named.
/// Unknown keys are errors (`deny_unknown_fields` on `T`), so typos surface.
/// Settings at their former top-level keys (`moved`) are read in their
/// sections; the second element names each one found, for a warning.
pub fn load_toml_moving<T>(path: Option<&Path>, moved: &[Moved]) -> Result<(T, Vec<String>), ConfigError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let Some(path) = path else {
        return Ok((T::default(), Vec::new()));
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    if !moved.iter().any(|m| table.contains_key(m.old)) {
        // The usual case: parsed from the text, so errors show the line.
        let value = toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        return Ok((value, Vec::new()));
    }
    let mut notes = Vec::new();
    for m in moved {
        let Some(v) = table.remove(m.old) else {
            continue;
        };
        let section = table
            .entry(m.section)
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let Some(section) = section.as_table_mut() else {
            return Err(parse_error(format!("`{}` must be a table", m.section)));
        };
        if section.contains_key(m.key) {
            return Err(parse_error(format!(
                "`{}` is set twice: as `{}` and as `{}` in [{}]",
                m.key, m.old, m.key, m.section
            )));
        }
        section.insert(m.key.to_string(), v);
        notes.push(format!("`{}` is now `{}` in [{}]", m.old, m.key, m.section));
    }
    let value = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    Ok((value, notes))
}

/// How a daemon knows who its callers are (`auth`, `GRANARY_AUTH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A caller is who it says it is (HDFS's simple mode).
    #[default]
    Simple,
    /// A caller proves who it is with a certificate of the cluster CA, on
    /// every connection (TLS must be set up).
    Tls,
    /// A caller proves who it is with a certificate or with a delegation
    /// token (`authorization: Bearer TOKEN`); TLS must be set up.
    Token,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "simple" => Ok(Self::Simple),
            "tls" => Ok(Self::Tls),
            "token" => Ok(Self::Token),
            other => Err(format!("auth must be simple, tls or token, not {other:?}")),
        }
    }
}

/// `[tls]`: this daemon's certificate, its key and the cluster CA (PEM
/// files). All empty: no TLS; all set: TLS on every port and connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Which user a user certificate's name is (HDFS's auth_to_local):
    /// `{ pattern = "(.*)@EXAMPLE\\.COM", user = "$1" }`, first match wins.
    pub user_rules: Vec<crate::tls::UserRule>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        [&self.cert, &self.key, &self.ca]
            .iter()
            .any(|p| !p.as_os_str().is_empty())
    }

    pub fn files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }

    /// Checks that the settings go together: all three files or none, and
    /// `auth = "tls"` only with them.
    pub fn validate(&self, auth: AuthMode) -> Result<(), ConfigError> {
        crate::tls::UserMap::new(&self.user_rules).map_err(ConfigError::Invalid)?;
        if self.enabled() {
            for (key, path) in [("cert", &self.cert), ("key", &self.key), ("ca", &self.ca)] {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "[tls] {key} is not set: TLS needs cert, key and ca"
                    )));
                }
            }
        } else if auth != AuthMode::Simple {
            return Err(ConfigError::Invalid(format!(
                "auth = {auth:?} needs [tls] cert, key and ca (credentials never cross the network in clear)"
            )));
        }
        Ok(())
    }

    /// The daemon's TLS, loaded from the files; None when not set up. With
    /// `auth = "tls"` its RPC port requires client certificates.
    pub fn load(
        &self,
        auth: AuthMode,
    ) -> Result<Option<std::sync::Arc<crate::tls::Tls>>, crate::tls::TlsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let clients = match auth {
            AuthMode::Tls => crate::tls::ClientAuth::Required,
            // A token holder comes without a certificate.
            AuthMode::Simple | AuthMode::Token => crate::tls::ClientAuth::Optional,
        };
        let users = crate::tls::UserMap::new(&self.user_rules).map_err(crate::tls::TlsError::Config)?;
        crate::tls::Tls::daemon(self.files(), clients, users).map(Some)
    }
}
