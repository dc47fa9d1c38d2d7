//! `granary fs` data commands: put, get, cat, tail, cp, checksum.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{CliError, CliResult};
use granary_client::{CreateOptions, DfsClient};

use crate::format::is_dir;
use granary_common::ErrorCode;

/// Files larger than this get a progress bar on a terminal.
const PROGRESS_MIN: u64 = 8 << 20;
const COPY_BUF: usize = 1 << 20;

pub type CmdResult = CliResult;

/// Which end of a copy failed.
enum Broke {
    Read(std::io::Error),
    Write(std::io::Error),
}

impl Broke {
    /// The error, naming `what` was being copied.
    fn naming(self, what: impl std::fmt::Display) -> CliError {
        match self {
            Self::Read(e) | Self::Write(e) => CliError::io(what)(e),
        }
    }

    /// For a copy to stdout: a closed stdout is [`CliError::BrokenPipe`].
    fn writing_stdout(self, what: impl std::fmt::Display) -> CliError {
        match self {
            Self::Read(e) => CliError::io(what)(e),
            Self::Write(e) => CliError::stdout(e),
        }
    }
}

/// `path: Is not a directory`, as `hdfs dfs` says when several sources go
/// to one destination that is not a directory.
fn not_a_directory(path: impl std::fmt::Display) -> CliError {
    CliError::refused(
        ErrorCode::ParentNotDirectory,
        format!("{path}: Is not a directory"),
    )
}

fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if len < PROGRESS_MIN || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    Some(pb)
}

/// Copies `r` to `w` in 1 MiB reads, ticking a progress bar.
async fn pump<R, W>(r: &mut R, w: &mut W, bar: Option<&indicatif::ProgressBar>) -> Result<u64, Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.map_err(Broke::Read)?;
        if n == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..n]).await.map_err(Broke::Write)?;
        total += n as u64;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
}

fn base_name(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

/// Uploads local files (or stdin, `-`) to `dest`.
pub async fn put(c: &DfsClient, sources: &[String], dest: &str, force: bool, recursive: bool) -> CmdResult {
    let dest_status = c.get_file_info(dest).await?;
    let dest_is_dir = dest_status.as_ref().is_some_and(is_dir);
    if sources.len() > 1 && !dest_is_dir {
        return Err(not_a_directory(dest));
    }
    for src in sources {
        let target = if dest_is_dir {
            granary_common::path::join(dest, base_name(src))
        } else {
            dest.to_string()
        };
        if src == "-" {
            let mut stdin = tokio::io::stdin();
            upload(c, &mut stdin, &target, force, 0).await?;
            continue;
        }
        let local = PathBuf::from(src);
        let meta = std::fs::metadata(&local).map_err(CliError::io(src))?;
        if meta.is_dir() {
            if !recursive {
                return Err(CliError::refused(
                    ErrorCode::PathIsDirectory,
                    format!("{src}: Is a directory (use -r to upload directories)"),
                ));
            }
            put_dir(c, &local, &target, force).await?;
        } else {
            upload_file(c, &local, &target, force).await?;
        }
    }
    Ok(())
}

async fn upload_file(c: &DfsClient, local: &Path, target: &str, force: bool) -> CmdResult {
    let mut f = tokio::fs::File::open(local)
        .await
        .map_err(CliError::io(local.display()))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    upload(c, &mut f, target, force, len).await
}

fn put_dir<'a>(
    c: &'a DfsClient,
    local: &'a Path,
    target: &'a str,
    force: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = CmdResult> + 'a>> {
    Box::pin(async move {
        c.mkdirs(target, None, true).await?;
        let mut entries: Vec<_> = std::fs::read_dir(local)
            .map_err(CliError::io(local.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = granary_common::path::join(target, &name);
            if e.path().is_dir() {
                put_dir(c, &e.path(), &child, force).await?;
            } else {
                upload_file(c, &e.path(), &child, force).await?;
            }
        }
        Ok(())
    })
}

async fn upload<R: AsyncRead + Unpin>(
    c: &DfsClient,
    r: &mut R,
    target: &str,
    force: bool,
    len: u64,
) -> CmdResult {
    let mut w = c
        .create(
            target,
            CreateOptions {
                overwrite: force,
                ..Default::default()
            },
        )
        .await?;
    let bar = progress(len, &format!("put {target}"));
    let res = pump(r, &mut w, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    res.map_err(|b| b.naming(target))?;
    w.close().await?;
    Ok(())
}

/// Downloads `sources` to a local path (or stdout, `-`).
pub async fn get(c: &DfsClient, sources: &[String], dest: &str, force: bool) -> CmdResult {
    let local = PathBuf::from(dest);
    let dest_is_dir = local.is_dir();
    if sources.len() > 1 && !dest_is_dir && dest != "-" {
        return Err(not_a_directory(dest));
    }
    for src in sources {
        let st = c.stat(src).await?;
        if dest == "-" {
            cat_one(c, src).await?;
            continue;
        }
        let target = if dest_is_dir {
            local.join(base_name(src))
        } else {
            local.clone()
        };
        if is_dir(&st) {
            get_dir(c, src, &target, force).await?;
        } else {
            download(c, src, &target, force, st.length).await?;
        }
    }
    Ok(())
}

fn get_dir<'a>(
    c: &'a DfsClient,
    src: &'a str,
    target: &'a Path,
    force: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = CmdResult> + 'a>> {
    Box::pin(async move {
        std::fs::create_dir_all(target).map_err(CliError::io(target.display()))?;
        for st in c.list(src).await? {
            let child = granary_common::path::join(src, &st.name);
            let t = target.join(&st.name);
            if is_dir(&st) {
                get_dir(c, &child, &t, force).await?;
            } else {
                download(c, &child, &t, force, st.length).await?;
            }
        }
        Ok(())
    })
}

async fn download(c: &DfsClient, src: &str, target: &Path, force: bool, len: u64) -> CmdResult {
    if target.exists() && !force {
        return Err(CliError::refused(
            ErrorCode::FileAlreadyExists,
            format!("{}: File exists", target.display()),
        ));
    }
    // Written beside the target and renamed, so a failed copy leaves no partial file.
    let tmp = target.with_extension("granary-tmp");
    let res: CmdResult = async {
        let mut r = c.open(src).await?;
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(CliError::io(tmp.display()))?;
        let bar = progress(len, &format!("get {src}"));
        let res = pump(&mut r, &mut f, bar.as_ref()).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        res.map_err(|b| b.naming(src))?;
        f.sync_all().await.map_err(CliError::io(tmp.display()))?;
        tokio::fs::rename(&tmp, target)
            .await
            .map_err(CliError::io(target.display()))
    }
    .await;
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Appends local files (or stdin) to `dest`, creating it when missing.
pub async fn append(c: &DfsClient, sources: &[String], dest: &str) -> CmdResult {
    let exists = c.get_file_info(dest).await?.is_some();
    let mut w = if exists {
        c.append(dest).await?
    } else {
        c.create(dest, CreateOptions::default()).await?
    };
    for src in sources {
        let res = if src == "-" {
            pump(&mut tokio::io::stdin(), &mut w, None).await
        } else {
            match tokio::fs::File::open(src).await {
                Ok(mut f) => pump(&mut f, &mut w, None).await,
                Err(e) => return Err(CliError::io(src)(e)),
            }
        };
        res.map_err(|b| b.naming(dest))?;
    }
    w.close().await?;
    Ok(())
}

pub async fn cat_one(c: &DfsClient, src: &str) -> CmdResult {
    let st = c.stat(src).await?;
    if is_dir(&st) {
        return Err(is_a_directory(src));
    }
    let mut r = c.open(src).await?;
    let mut out = tokio::io::stdout();
    pump(&mut r, &mut out, None)
        .await
        .map_err(|b| b.writing_stdout(src))?;
    out.flush().await.map_err(CliError::stdout)
}

fn is_a_directory(path: &str) -> CliError {
    CliError::refused(ErrorCode::PathIsDirectory, format!("{path}: Is a directory"))
}

/// The last KiB; with `follow`, keeps printing what is appended.
pub async fn tail(c: &DfsClient, src: &str, follow: bool) -> CmdResult {
    use tokio::io::AsyncSeekExt;
    let mut printed = {
        let st = c.stat(src).await?;
        if is_dir(&st) {
            return Err(is_a_directory(src));
        }
        st.length.saturating_sub(1024)
    };
    let mut out = tokio::io::stdout();
    loop {
        let mut r = c.open(src).await?;
        if r.len() > printed {
            r.seek(std::io::SeekFrom::Start(printed))
                .await
                .map_err(CliError::io(src))?;
            printed += pump(&mut r, &mut out, None)
                .await
                .map_err(|b| b.writing_stdout(src))?;
            out.flush().await.map_err(CliError::stdout)?;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub async fn cp(c: &DfsClient, sources: &[String], dest: &str, force: bool) -> CmdResult {
    let dest_is_dir = c.get_file_info(dest).await?.as_ref().is_some_and(is_dir);
    if sources.len() > 1 && !dest_is_dir {
        return Err(not_a_directory(dest));
    }
    for src in sources {
        let st = c.stat(src).await?;
        if is_dir(&st) {
            return Err(CliError::refused(
                ErrorCode::PathIsDirectory,
                format!("{src}: Is a directory (copying directories is not supported)"),
            ));
        }
        let target = if dest_is_dir {
            granary_common::path::join(dest, base_name(src))
        } else {
            dest.to_string()
        };
        let mut r = c.open(src).await?;
        upload(c, &mut r, &target, force, 0).await?;
    }
    Ok(())
}

/// `granary fs -checksum` line: path, algorithm, hex bytes (as `hadoop fs -checksum`).
pub async fn checksum(c: &DfsClient, src: &str) -> CliResult<String> {
    let sum = c.file_checksum(src).await?;
    Ok(format!("{src}\t{}\t{}", sum.algorithm, sum.hex()))
}
