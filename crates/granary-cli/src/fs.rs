//! `granary fs ...`: namespace commands.

use clap::{Args, Subcommand};

use crate::error::{CliError, CliResult, exit, report};
use crate::format;
use crate::out::{noteln, outln};
use granary_client::{DfsClient, FileStatus};
use granary_common::ErrorCode;

#[derive(Debug, Subcommand)]
pub enum FsCommand {
    /// Create directories.
    Mkdir {
        /// Create missing parents; no error if the directory exists.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List directories (or show files).
    #[command(disable_help_flag = true)]
    Ls {
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// Recurse into subdirectories.
        #[arg(short = 'R')]
        recursive: bool,
        /// Human-readable sizes.
        #[arg(short = 'h')]
        human: bool,
        /// List directories as plain files.
        #[arg(short = 'd')]
        directory: bool,
        paths: Vec<String>,
    },
    /// Print status in a format (%a %A %b %F %g %n %o %r %u %x %X %y %Y); default %y.
    Stat {
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
    /// Delete files and directories: into the trash when the namenode
    /// keeps one (its trash interval), else at once.
    Rm {
        /// Delete directories and their contents.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// No error if the path does not exist.
        #[arg(short = 'f')]
        force: bool,
        /// Delete at once, bypassing the trash (also `-skipTrash`).
        #[arg(long = "skipTrash", alias = "skip-trash")]
        skip_trash: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Delete trash checkpoints older than the trash interval, then
    /// checkpoint the current trash (HDFS's -expunge).
    Expunge {
        /// Delete the whole trash now.
        #[arg(long)]
        immediate: bool,
    },
    /// Delete empty directories.
    Rmdir {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move or rename; with several sources the destination must be a directory.
    Mv {
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Create empty files.
    Touchz {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Space used by files and directories.
    #[command(disable_help_flag = true)]
    Du {
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// One total per argument.
        #[arg(short = 's')]
        summary: bool,
        #[arg(short = 'h')]
        human: bool,
        paths: Vec<String>,
    },
    /// DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME; with -q first QUOTA
    /// REM_QUOTA SPACE_QUOTA REM_SPACE_QUOTA; -v prints a header.
    #[command(disable_help_flag = true)]
    Count {
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        #[arg(short = 'h')]
        human: bool,
        #[arg(short = 'q')]
        quotas: bool,
        #[arg(short = 'v')]
        header: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    #[command(flatten)]
    Snapshot(crate::snapshot::SnapshotCommand),
    /// Change permissions (octal or symbolic).
    Chmod(ChArgs),
    /// Change owner and/or group: OWNER[:GROUP] or :GROUP.
    Chown(ChArgs),
    /// Change group.
    Chgrp(ChArgs),
    /// Change the replication factor of files.
    Setrep(ChArgs),
    /// Upload local files or directories (`-` reads stdin).
    Put {
        /// Overwrite existing files.
        #[arg(short = 'f')]
        force: bool,
        /// Upload directories recursively.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Same as put.
    #[command(name = "copyFromLocal", alias = "copy-from-local")]
    CopyFromLocal {
        #[arg(short = 'f')]
        force: bool,
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Download files or directories (`-` writes stdout).
    Get {
        /// Overwrite existing local files.
        #[arg(short = 'f')]
        force: bool,
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Same as get.
    #[command(name = "copyToLocal", alias = "copy-to-local")]
    CopyToLocal {
        #[arg(short = 'f')]
        force: bool,
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Print files to stdout.
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Print the last KiB of a file; -f keeps following it.
    Tail {
        #[arg(short = 'f')]
        follow: bool,
        path: String,
    },
    /// Copy files within the cluster.
    Cp {
        #[arg(short = 'f')]
        force: bool,
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Append local files (or stdin, `-`) to a file, creating it if missing.
    #[command(name = "appendToFile", alias = "append-to-file")]
    AppendToFile {
        #[arg(num_args = 2.., required = true)]
        paths: Vec<String>,
    },
    /// Print the MD5-of-MD5-of-CRC32C checksum of files.
    Checksum {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Exit 0 if the test holds: -e exists, -d directory, -f file, -z empty, -s non-empty.
    /// Exit 1 if it does not; an error exits with its status (a failure of
    /// no listed kind with 2, so that 1 always means "does not hold").
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct ChArgs {
    /// Apply to everything below directories too.
    #[arg(short = 'R')]
    recursive: bool,
    /// Mode, owner, group or replication, depending on the command.
    value: String,
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    which: TestWhich,
    path: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TestWhich {
    #[arg(short = 'e')]
    exists: bool,
    #[arg(short = 'd')]
    dir: bool,
    #[arg(short = 'f')]
    file: bool,
    #[arg(short = 'z')]
    zero: bool,
    #[arg(short = 's')]
    nonempty: bool,
}

/// Makes a path absolute: relative paths are under the user's home, /user/NAME.
pub(crate) fn abs(client: &DfsClient, p: &str) -> String {
    let p = p
        .strip_prefix("granary://")
        .map_or(p, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let joined = if p.starts_with('/') {
        p.to_string()
    } else if p.is_empty() || p == "." {
        format!("/user/{}", client.identity().user)
    } else {
        format!("/user/{}/{}", client.identity().user, p)
    };
    if joined.len() > 1 {
        joined.trim_end_matches('/').to_string()
    } else {
        joined
    }
}

/// One command over its paths: a path that fails is reported and the
/// command goes on with the next, as `hdfs dfs` does; the exit status is
/// the first failure's.
struct Run<'a> {
    client: &'a DfsClient,
    status: u8,
}

impl<'a> Run<'a> {
    fn new(client: &'a DfsClient) -> Self {
        Self {
            client,
            status: exit::OK,
        }
    }

    /// `paths` made absolute; none means the user's home.
    fn abs_or_home(&self, paths: &[String]) -> Vec<String> {
        if paths.is_empty() {
            vec![abs(self.client, "")]
        } else {
            self.abs_all(paths)
        }
    }

    fn abs_all(&self, paths: &[String]) -> Vec<String> {
        paths.iter().map(|p| abs(self.client, p)).collect()
    }

    /// Reports a failure and goes on; a closed stdout stops the command.
    fn fail(&mut self, e: CliError) -> CliResult {
        if e.is_broken_pipe() {
            return Err(e);
        }
        let status = report(&e);
        if self.status == exit::OK {
            self.status = status;
        }
        Ok(())
    }

    /// The value of one step, or None once its failure is reported.
    fn check<T, E: Into<CliError>>(&mut self, res: Result<T, E>) -> CliResult<Option<T>> {
        match res {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.fail(e.into()).map(|()| None),
        }
    }
}

/// Every path at and below `path`, parents before children.
async fn walk(c: &DfsClient, path: &str) -> CliResult<Vec<(String, FileStatus)>> {
    let top = c.stat(path).await?;
    let mut out = vec![(path.to_string(), top)];
    let mut i = 0;
    while i < out.len() {
        if format::is_dir(&out[i].1) {
            let dir = out[i].0.clone();
            for st in c.list(&dir).await? {
                let p = granary_common::path::join(&dir, &st.name);
                out.push((p, st));
            }
        }
        i += 1;
    }
    Ok(out)
}

/// `path`, and with `recursive` everything below it.
async fn targets(c: &DfsClient, path: &str, recursive: bool) -> CliResult<Vec<(String, FileStatus)>> {
    if recursive {
        walk(c, path).await
    } else {
        Ok(vec![(path.to_string(), c.stat(path).await?)])
    }
}

fn refused(code: ErrorCode, path: &str, what: &str) -> CliError {
    CliError::refused(code, format!("{path}: {what}"))
}

/// The last of `paths` is the destination, the others the sources.
fn split_dest(paths: &[String]) -> (&[String], &String) {
    let (srcs, dst) = paths.split_at(paths.len() - 1);
    (srcs, &dst[0])
}

impl FsCommand {
    /// Runs the command; the exit status when it ran to its end.
    pub async fn execute(&self, client: &DfsClient) -> CliResult<u8> {
        let mut r = Run::new(client);
        let res = match self {
            Self::Mkdir { parents, paths } => mkdir(&mut r, *parents, paths).await,
            Self::Ls {
                recursive,
                human,
                directory,
                paths,
                ..
            } => ls(&mut r, paths, *recursive, *human, *directory).await,
            Self::Stat { args } => stat(&r, args).await,
            Self::Rm {
                recursive,
                force,
                skip_trash,
                paths,
            } => rm(&mut r, paths, *recursive, *force, *skip_trash).await,
            Self::Expunge { immediate } => expunge(&r, *immediate).await,
            Self::Rmdir { paths } => rmdir(&mut r, paths).await,
            Self::Mv { paths } => mv(&mut r, paths).await,
            Self::Touchz { paths } => touchz(&mut r, paths).await,
            Self::Du {
                summary,
                human,
                paths,
                ..
            } => du(&mut r, paths, *summary, *human).await,
            Self::Count {
                human,
                quotas,
                header,
                paths,
                ..
            } => count(&mut r, paths, *human, *quotas, *header).await,
            Self::Snapshot(cmd) => cmd.execute(client).await,
            Self::Chmod(c) => chmod(&mut r, c).await,
            Self::Chown(c) => chown(&mut r, c).await,
            Self::Chgrp(c) => set_owner(&mut r, c, None, Some(&c.value)).await,
            Self::Setrep(c) => setrep(&mut r, c).await,
            Self::Put {
                force,
                recursive,
                paths,
            } => put(&r, paths, *force, *recursive).await,
            Self::CopyFromLocal { force, paths } => put(&r, paths, *force, true).await,
            Self::Get { force, paths } | Self::CopyToLocal { force, paths } => get(&r, paths, *force).await,
            Self::Cat { paths } => cat(&mut r, paths).await,
            Self::Tail { follow, path } => crate::data::tail(client, &abs(client, path), *follow).await,
            Self::Cp { force, paths } => cp(&r, paths, *force).await,
            Self::AppendToFile { paths } => append_to_file(&r, paths).await,
            Self::Checksum { paths } => checksum(&mut r, paths).await,
            Self::Test(t) => return test(client, t).await,
        };
        // A failure that ends the command counts like any other.
        if let Err(e) = res {
            r.fail(e)?;
        }
        Ok(r.status)
    }
}

async fn mkdir(r: &mut Run<'_>, parents: bool, paths: &[String]) -> CliResult {
    for p in r.abs_all(paths) {
        r.check(mkdir_one(r.client, &p, parents).await)?;
    }
    Ok(())
}

async fn mkdir_one(c: &DfsClient, p: &str, parents: bool) -> CliResult {
    if !parents && c.get_file_info(p).await?.is_some() {
        return Err(refused(ErrorCode::FileAlreadyExists, p, "File exists"));
    }
    Ok(c.mkdirs(p, None, parents).await?)
}

async fn ls(r: &mut Run<'_>, paths: &[String], recursive: bool, human: bool, directory: bool) -> CliResult {
    for p in r.abs_or_home(paths) {
        r.check(ls_one(r.client, &p, recursive, human, directory).await)?;
    }
    Ok(())
}

async fn ls_one(c: &DfsClient, p: &str, recursive: bool, human: bool, directory: bool) -> CliResult {
    let top = c.stat(p).await?;
    if directory || !format::is_dir(&top) {
        for row in format::ls_rows(&[(p.to_string(), top)], human) {
            outln!("{row}")?;
        }
        return Ok(());
    }
    if !recursive {
        return ls_pages(c, p, &top, human).await;
    }
    let mut entries = walk(c, p).await?;
    entries.remove(0);
    for row in format::ls_rows(&entries, human) {
        outln!("{row}")?;
    }
    Ok(())
}

/// `ls DIR`: prints each page of the listing as it arrives, so a huge
/// directory is never held whole. The count is the directory's (from its
/// status, so entries made or removed during the listing are not in it),
/// printed once the first page shows the directory may be read.
async fn ls_pages(client: &DfsClient, dir: &str, top: &FileStatus, human: bool) -> CliResult {
    use futures::TryStreamExt;
    let mut pages = std::pin::pin!(client.list_pages(dir));
    let mut widths = format::LsWidths::default();
    let mut first = true;
    while let Some(page) = pages.try_next().await? {
        if first {
            outln!("Found {} items", top.children_num)?;
            first = false;
        }
        let rows: Vec<(String, FileStatus)> = page
            .into_iter()
            .map(|s| (granary_common::path::join(dir, &s.name), s))
            .collect();
        widths.fit(&rows, human);
        for row in format::ls_rows_in(&rows, human, &widths) {
            outln!("{row}")?;
        }
    }
    Ok(())
}

async fn stat(r: &Run<'_>, args: &[String]) -> CliResult {
    let (fmt, path) = match args {
        [p] => ("%y", p),
        [f, p] => (f.as_str(), p),
        _ => ("%y", &args[0]),
    };
    let p = abs(r.client, path);
    let s = r.client.stat(&p).await?;
    outln!("{}", format::stat(fmt, &p, &s))
}

async fn rm(r: &mut Run<'_>, paths: &[String], recursive: bool, force: bool, skip_trash: bool) -> CliResult {
    for p in r.abs_all(paths) {
        r.check(rm_one(r.client, &p, recursive, force, skip_trash).await)?;
    }
    Ok(())
}

async fn rm_one(c: &DfsClient, p: &str, recursive: bool, force: bool, skip_trash: bool) -> CliResult {
    match c.get_file_info(p).await? {
        None if force => Ok(()),
        None => Err(refused(ErrorCode::FileNotFound, p, "No such file or directory")),
        Some(s) if format::is_dir(&s) && !recursive => {
            Err(refused(ErrorCode::PathIsDirectory, p, "Is a directory"))
        }
        Some(_) => {
            if !skip_trash && let Some(t) = c.move_to_trash(p).await? {
                noteln!("Moved: '{}' to trash at: {}", t.from, t.to);
                return Ok(());
            }
            c.delete(p, recursive).await?;
            noteln!("Deleted {p}");
            Ok(())
        }
    }
}

async fn expunge(r: &Run<'_>, immediate: bool) -> CliResult {
    let done = r.client.expunge(immediate).await?;
    for d in &done.deleted {
        noteln!("Deleted trash checkpoint: {d}");
    }
    if let Some(c) = &done.checkpoint {
        noteln!("Created trash checkpoint: {c}");
    }
    Ok(())
}

async fn rmdir(r: &mut Run<'_>, paths: &[String]) -> CliResult {
    for p in r.abs_all(paths) {
        r.check(rmdir_one(r.client, &p).await)?;
    }
    Ok(())
}

async fn rmdir_one(c: &DfsClient, p: &str) -> CliResult {
    if !format::is_dir(&c.stat(p).await?) {
        return Err(refused(ErrorCode::ParentNotDirectory, p, "Is not a directory"));
    }
    Ok(c.delete(p, false).await?)
}

async fn mv(r: &mut Run<'_>, paths: &[String]) -> CliResult {
    let (srcs, dst) = split_dest(paths);
    let dst = abs(r.client, dst);
    if srcs.len() > 1 {
        match r.client.get_file_info(&dst).await? {
            Some(s) if format::is_dir(&s) => {}
            _ => return Err(refused(ErrorCode::ParentNotDirectory, &dst, "Is not a directory")),
        }
    }
    for s in r.abs_all(srcs) {
        r.check(r.client.rename(&s, &dst, false).await)?;
    }
    Ok(())
}

async fn touchz(r: &mut Run<'_>, paths: &[String]) -> CliResult {
    for p in r.abs_all(paths) {
        r.check(r.client.create_empty(&p, None).await)?;
    }
    Ok(())
}

fn size_column(n: u64, human: bool) -> String {
    if human { format::human(n) } else { n.to_string() }
}

async fn du(r: &mut Run<'_>, paths: &[String], summary: bool, human: bool) -> CliResult {
    for p in r.abs_or_home(paths) {
        let Some(rows) = r.check(du_rows(r.client, &p, summary).await)? else {
            continue;
        };
        for (item, len, space) in rows {
            outln!(
                "{:<10} {:<10} {item}",
                size_column(len, human),
                size_column(space, human)
            )?;
        }
    }
    Ok(())
}

/// (path, length, space consumed) of `p`, or of each entry of directory `p`.
async fn du_rows(c: &DfsClient, p: &str, summary: bool) -> CliResult<Vec<(String, u64, u64)>> {
    let top = c.stat(p).await?;
    let items = if summary || !format::is_dir(&top) {
        vec![p.to_string()]
    } else {
        c.list(p)
            .await?
            .into_iter()
            .map(|s| granary_common::path::join(p, &s.name))
            .collect()
    };
    let mut rows = Vec::new();
    for item in items {
        let cs = c.content_summary(&item).await?;
        rows.push((item, cs.length, cs.space_consumed));
    }
    Ok(rows)
}

async fn count(r: &mut Run<'_>, paths: &[String], human: bool, quotas: bool, header: bool) -> CliResult {
    if header {
        let all = crate::quota::HEADER;
        outln!("{}", if quotas { all } else { &all[61..] })?;
    }
    for p in r.abs_all(paths) {
        let Some(cs) = r.check(r.client.content_summary(&p).await)? else {
            continue;
        };
        let q = if quotas {
            crate::quota::columns(&cs, human)
        } else {
            String::new()
        };
        outln!(
            "{q}{:>12} {:>12} {:>18} {p}",
            cs.directory_count,
            cs.file_count,
            size_column(cs.length, human)
        )?;
    }
    Ok(())
}

async fn chmod(r: &mut Run<'_>, c: &ChArgs) -> CliResult {
    for p in r.abs_all(&c.paths) {
        let Some(items) = r.check(targets(r.client, &p, c.recursive).await)? else {
            continue;
        };
        for (path, st) in items {
            // A mode that does not parse ends the command: it would fail on every path.
            let mode =
                format::parse_mode(&c.value, st.permission, format::is_dir(&st)).map_err(CliError::usage)?;
            r.check(r.client.set_permission(&path, mode).await)?;
        }
    }
    Ok(())
}

/// `chown OWNER[:GROUP]` or `chown :GROUP`.
async fn chown(r: &mut Run<'_>, c: &ChArgs) -> CliResult {
    let (owner, group) = match c.value.split_once(':') {
        Some((o, g)) => ((!o.is_empty()).then_some(o), (!g.is_empty()).then_some(g)),
        None => (Some(c.value.as_str()), None),
    };
    set_owner(r, c, owner, group).await
}

async fn set_owner(r: &mut Run<'_>, c: &ChArgs, owner: Option<&str>, group: Option<&str>) -> CliResult {
    if owner.is_none() && group.is_none() {
        return Err(CliError::usage(format!("invalid owner/group {:?}", c.value)));
    }
    for p in r.abs_all(&c.paths) {
        let Some(items) = r.check(targets(r.client, &p, c.recursive).await)? else {
            continue;
        };
        for (path, _) in items {
            r.check(r.client.set_owner(&path, owner, group).await)?;
        }
    }
    Ok(())
}

async fn setrep(r: &mut Run<'_>, c: &ChArgs) -> CliResult {
    let n: u32 = match c.value.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(CliError::usage(format!(
                "invalid replication {:?}: expected a positive number",
                c.value
            )));
        }
    };
    for p in r.abs_all(&c.paths) {
        let Some(items) = r.check(targets(r.client, &p, true).await)? else {
            continue;
        };
        for (path, _) in items.into_iter().filter(|(_, s)| !format::is_dir(s)) {
            if r.check(r.client.set_replication(&path, n).await)?.is_some() {
                noteln!("Replication {n} set: {path}");
            }
        }
    }
    Ok(())
}

async fn put(r: &Run<'_>, paths: &[String], force: bool, recursive: bool) -> CliResult {
    let (srcs, dst) = split_dest(paths);
    crate::data::put(r.client, srcs, &abs(r.client, dst), force, recursive).await
}

async fn get(r: &Run<'_>, paths: &[String], force: bool) -> CliResult {
    let (srcs, dst) = split_dest(paths);
    crate::data::get(r.client, &r.abs_all(srcs), dst, force).await
}

async fn cat(r: &mut Run<'_>, paths: &[String]) -> CliResult {
    for p in r.abs_all(paths) {
        r.check(crate::data::cat_one(r.client, &p).await)?;
    }
    Ok(())
}

async fn cp(r: &Run<'_>, paths: &[String], force: bool) -> CliResult {
    let (srcs, dst) = split_dest(paths);
    crate::data::cp(r.client, &r.abs_all(srcs), &abs(r.client, dst), force).await
}

async fn append_to_file(r: &Run<'_>, paths: &[String]) -> CliResult {
    let (srcs, dst) = split_dest(paths);
    crate::data::append(r.client, srcs, &abs(r.client, dst)).await
}

async fn checksum(r: &mut Run<'_>, paths: &[String]) -> CliResult {
    for p in r.abs_all(paths) {
        if let Some(line) = r.check(crate::data::checksum(r.client, &p).await)? {
            outln!("{line}")?;
        }
    }
    Ok(())
}

/// `test -e|-d|-f|-z|-s PATH`: 0 when it holds, 1 when it does not.
async fn test(c: &DfsClient, t: &TestArgs) -> CliResult<u8> {
    let s = match c.get_file_info(&abs(c, &t.path)).await {
        Ok(s) => s,
        Err(e) => {
            let status = report(&e.into());
            return Ok(if status == exit::FAILED {
                exit::USAGE
            } else {
                status
            });
        }
    };
    let holds = match &s {
        None => false,
        Some(s) if t.which.dir => format::is_dir(s),
        Some(s) if t.which.file => !format::is_dir(s),
        Some(s) if t.which.zero => s.length == 0,
        Some(s) if t.which.nonempty => s.length > 0,
        Some(_) => true,
    };
    Ok(if holds { exit::OK } else { exit::FAILED })
}
