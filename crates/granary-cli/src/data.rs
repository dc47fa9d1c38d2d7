//! `granary fs` data commands: put, get, cat, tail, cp, checksum.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use granary_client::{ClientError, CreateOptions, DfsClient};

use crate::format::is_dir;

/// Files larger than this get a progress bar on a terminal.
const PROGRESS_MIN: u64 = 8 << 20;
const COPY_BUF: usize = 1 << 20;

pub type CmdResult = Result<(), String>;

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
async fn pump<R, W>(r: &mut R, w: &mut W, bar: Option<&indicatif::ProgressBar>) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
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
    let dest_status = c.get_file_info(dest).await.map_err(|e| e.to_string())?;
    let dest_is_dir = dest_status.as_ref().is_some_and(is_dir);
    if sources.len() > 1 && !dest_is_dir {
        return Err(format!("{dest}: Is not a directory"));
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
        let meta = std::fs::metadata(&local).map_err(|e| format!("{src}: {e}"))?;
        if meta.is_dir() {
            if !recursive {
                return Err(format!("{src}: Is a directory (use -r to upload directories)"));
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
        .map_err(|e| format!("{}: {e}", local.display()))?;
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
        c.mkdirs(target, None, true).await.map_err(|e| e.to_string())?;
        let mut entries: Vec<_> = std::fs::read_dir(local)
            .map_err(|e| format!("{}: {e}", local.display()))?
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
        .await
        .map_err(|e| e.to_string())?;
    let bar = progress(len, &format!("put {target}"));
    let res = pump(r, &mut w, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    res.map_err(|e| format!("{target}: {e}"))?;
    w.close().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Downloads `sources` to a local path (or stdout, `-`).
pub async fn get(c: &DfsClient, sources: &[String], dest: &str, force: bool) -> CmdResult {
    let local = PathBuf::from(dest);
    let dest_is_dir = local.is_dir();
    if sources.len() > 1 && !dest_is_dir && dest != "-" {
        return Err(format!("{dest}: Is not a directory"));
    }
    for src in sources {
        let st = c.stat(src).await.map_err(|e| e.to_string())?;
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
        std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
        for st in c.list(src).await.map_err(|e| e.to_string())? {
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
        return Err(format!("{}: File exists", target.display()));
    }
    // Written beside the target and renamed, so a failed copy leaves no partial file.
    let tmp = target.with_extension("granary-tmp");
    let res: CmdResult = async {
        let mut r = c.open(src).await.map_err(|e| e.to_string())?;
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let bar = progress(len, &format!("get {src}"));
        let res = pump(&mut r, &mut f, bar.as_ref()).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        res.map_err(|e| format!("{src}: {e}"))?;
        f.sync_all()
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        tokio::fs::rename(&tmp, target)
            .await
            .map_err(|e| format!("{}: {e}", target.display()))
    }
    .await;
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Appends local files (or stdin) to `dest`, creating it when missing.
pub async fn append(c: &DfsClient, sources: &[String], dest: &str) -> CmdResult {
    let exists = c.get_file_info(dest).await.map_err(|e| e.to_string())?.is_some();
    let mut w = if exists {
        c.append(dest).await.map_err(|e| e.to_string())?
    } else {
        c.create(dest, CreateOptions::default())
            .await
            .map_err(|e| e.to_string())?
    };
    for src in sources {
        let res = if src == "-" {
            pump(&mut tokio::io::stdin(), &mut w, None).await
        } else {
            match tokio::fs::File::open(src).await {
                Ok(mut f) => pump(&mut f, &mut w, None).await,
                Err(e) => return Err(format!("{src}: {e}")),
            }
        };
        res.map_err(|e| format!("{dest}: {e}"))?;
    }
    w.close().await.map_err(|e| e.to_string())?;
    Ok(())
}

pub async fn cat_one(c: &DfsClient, src: &str) -> CmdResult {
    let st = c.stat(src).await.map_err(|e| e.to_string())?;
    if is_dir(&st) {
        return Err(format!("{src}: Is a directory"));
    }
    let mut r = c.open(src).await.map_err(|e| e.to_string())?;
    let mut out = tokio::io::stdout();
    pump(&mut r, &mut out, None)
        .await
        .map_err(|e| format!("{src}: {e}"))?;
    out.flush().await.map_err(|e| e.to_string())
}

/// The last KiB; with `follow`, keeps printing what is appended.
pub async fn tail(c: &DfsClient, src: &str, follow: bool) -> CmdResult {
    use tokio::io::AsyncSeekExt;
    let mut printed = {
        let st = c.stat(src).await.map_err(|e| e.to_string())?;
        if is_dir(&st) {
            return Err(format!("{src}: Is a directory"));
        }
        st.length.saturating_sub(1024)
    };
    let mut out = tokio::io::stdout();
    loop {
        let mut r = c.open(src).await.map_err(|e| e.to_string())?;
        if r.len() > printed {
            r.seek(std::io::SeekFrom::Start(printed))
                .await
                .map_err(|e| e.to_string())?;
            printed += pump(&mut r, &mut out, None)
                .await
                .map_err(|e| format!("{src}: {e}"))?;
            out.flush().await.map_err(|e| e.to_string())?;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub async fn cp(c: &DfsClient, sources: &[String], dest: &str, force: bool) -> CmdResult {
    let dest_is_dir = c
        .get_file_info(dest)
        .await
        .map_err(|e| e.to_string())?
        .as_ref()
        .is_some_and(is_dir);
    if sources.len() > 1 && !dest_is_dir {
        return Err(format!("{dest}: Is not a directory"));
    }
    for src in sources {
        let st = c.stat(src).await.map_err(|e| e.to_string())?;
        if is_dir(&st) {
            return Err(format!(
                "{src}: Is a directory (copying directories is not supported)"
            ));
        }
        let target = if dest_is_dir {
            granary_common::path::join(dest, base_name(src))
        } else {
            dest.to_string()
        };
        let mut r = c.open(src).await.map_err(|e| e.to_string())?;
        upload(c, &mut r, &target, force, 0).await?;
    }
    Ok(())
}

/// `granary fs -checksum` line: path, algorithm, hex bytes (as `hadoop fs -checksum`).
pub async fn checksum(c: &DfsClient, src: &str) -> Result<String, ClientError> {
    let sum = c.file_checksum(src).await?;
    Ok(format!("{src}\t{}\t{}", sum.algorithm, sum.hex()))
}
