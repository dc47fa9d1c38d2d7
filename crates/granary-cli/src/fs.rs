//! `granary fs ...`: namespace commands.

use clap::{Args, Subcommand};

use crate::format;
use granary_client::{ClientError, DfsClient, FileStatus};

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
    /// Delete files and directories.
    Rm {
        /// Delete directories and their contents.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// No error if the path does not exist.
        #[arg(short = 'f')]
        force: bool,
        #[arg(required = true)]
        paths: Vec<String>,
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
    /// DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME.
    #[command(disable_help_flag = true)]
    Count {
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        #[arg(short = 'h')]
        human: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
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
fn abs(client: &DfsClient, p: &str) -> String {
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

struct Run<'a> {
    client: &'a DfsClient,
    failed: bool,
}

impl Run<'_> {
    fn fail(&mut self, e: impl std::fmt::Display) {
        eprintln!("granary: {e}");
        self.failed = true;
    }

    /// Every path at and below `path`, parents before children.
    async fn walk(&self, path: &str) -> Result<Vec<(String, FileStatus)>, ClientError> {
        let top = self.client.stat(path).await?;
        let mut out = vec![(path.to_string(), top)];
        let mut i = 0;
        while i < out.len() {
            if format::is_dir(&out[i].1) {
                let dir = out[i].0.clone();
                for st in self.client.list(&dir).await? {
                    let p = granary_common::path::join(&dir, &st.name);
                    out.push((p, st));
                }
            }
            i += 1;
        }
        Ok(out)
    }

    async fn targets(&self, path: &str, recursive: bool) -> Result<Vec<(String, FileStatus)>, ClientError> {
        if recursive {
            self.walk(path).await
        } else {
            Ok(vec![(path.to_string(), self.client.stat(path).await?)])
        }
    }
}

/// `ls DIR`: prints each page of the listing as it arrives, so a huge
/// directory is never held whole. The count is the directory's (from its
/// status, so entries made or removed during the listing are not in it),
/// printed once the first page shows the directory may be read.
async fn ls_pages(client: &DfsClient, dir: &str, top: &FileStatus, human: bool) -> Result<(), ClientError> {
    use futures::TryStreamExt;
    let mut pages = std::pin::pin!(client.list_pages(dir));
    let mut widths = format::LsWidths::default();
    let mut first = true;
    while let Some(page) = pages.try_next().await? {
        if first {
            println!("Found {} items", top.children_num);
            first = false;
        }
        let rows: Vec<(String, FileStatus)> = page
            .into_iter()
            .map(|s| (granary_common::path::join(dir, &s.name), s))
            .collect();
        widths.fit(&rows, human);
        for row in format::ls_rows_in(&rows, human, &widths) {
            println!("{row}");
        }
    }
    Ok(())
}

pub async fn run(client: &DfsClient, cmd: &FsCommand) -> i32 {
    let mut r = Run {
        client,
        failed: false,
    };
    let a = |p: &String| abs(client, p);
    match cmd {
        FsCommand::Mkdir { parents, paths } => {
            for p in paths.iter().map(a) {
                if !parents {
                    match client.get_file_info(&p).await {
                        Ok(Some(_)) => {
                            r.fail(format!("{p}: File exists"));
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            r.fail(e);
                            continue;
                        }
                    }
                }
                if let Err(e) = client.mkdirs(&p, None, *parents).await {
                    r.fail(e);
                }
            }
        }
        FsCommand::Ls {
            recursive,
            human,
            directory,
            paths,
            ..
        } => {
            let paths = if paths.is_empty() {
                vec![a(&String::new())]
            } else {
                paths.iter().map(a).collect()
            };
            for p in paths {
                let top = match client.stat(&p).await {
                    Ok(s) => s,
                    Err(e) => {
                        r.fail(e);
                        continue;
                    }
                };
                if *directory || !format::is_dir(&top) {
                    for row in format::ls_rows(&[(p.clone(), top)], *human) {
                        println!("{row}");
                    }
                    continue;
                }
                if !*recursive {
                    if let Err(e) = ls_pages(client, &p, &top, *human).await {
                        r.fail(e);
                    }
                    continue;
                }
                match r.walk(&p).await {
                    Ok(mut entries) => {
                        entries.remove(0);
                        for row in format::ls_rows(&entries, *human) {
                            println!("{row}");
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Stat { args } => {
            let (fmt, path) = match args.as_slice() {
                [p] => ("%y", p),
                [f, p] => (f.as_str(), p),
                _ => ("%y", &args[0]),
            };
            let p = a(path);
            match client.stat(&p).await {
                Ok(s) => println!("{}", format::stat(fmt, &p, &s)),
                Err(e) => r.fail(e),
            }
        }
        FsCommand::Rm {
            recursive,
            force,
            paths,
        } => {
            for p in paths.iter().map(a) {
                match client.get_file_info(&p).await {
                    Ok(None) if *force => continue,
                    Ok(None) => r.fail(format!("{p}: No such file or directory")),
                    Ok(Some(s)) if format::is_dir(&s) && !recursive => r.fail(format!("{p}: Is a directory")),
                    Ok(Some(_)) => match client.delete(&p, *recursive).await {
                        Ok(()) => println!("Deleted {p}"),
                        Err(e) => r.fail(e),
                    },
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Rmdir { paths } => {
            for p in paths.iter().map(a) {
                match client.stat(&p).await {
                    Ok(s) if !format::is_dir(&s) => r.fail(format!("{p}: Is not a directory")),
                    Ok(_) => {
                        if let Err(e) = client.delete(&p, false).await {
                            r.fail(e);
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Mv { paths } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            let dst = a(&dst[0]);
            if srcs.len() > 1 {
                match client.get_file_info(&dst).await {
                    Ok(Some(s)) if format::is_dir(&s) => {}
                    Ok(_) => {
                        r.fail(format!("{dst}: Is not a directory"));
                        return 1;
                    }
                    Err(e) => {
                        r.fail(e);
                        return 1;
                    }
                }
            }
            for s in srcs.iter().map(a) {
                if let Err(e) = client.rename(&s, &dst, false).await {
                    r.fail(e);
                }
            }
        }
        FsCommand::Touchz { paths } => {
            for p in paths.iter().map(a) {
                if let Err(e) = client.create_empty(&p, None).await {
                    r.fail(e);
                }
            }
        }
        FsCommand::Du {
            summary,
            human,
            paths,
            ..
        } => {
            let paths = if paths.is_empty() {
                vec![a(&String::new())]
            } else {
                paths.iter().map(a).collect()
            };
            let size = |n: u64| if *human { format::human(n) } else { n.to_string() };
            for p in paths {
                let rows: Result<Vec<(String, u64, u64)>, ClientError> = async {
                    let top = client.stat(&p).await?;
                    let items = if *summary || !format::is_dir(&top) {
                        vec![p.clone()]
                    } else {
                        client
                            .list(&p)
                            .await?
                            .into_iter()
                            .map(|s| granary_common::path::join(&p, &s.name))
                            .collect()
                    };
                    let mut rows = Vec::new();
                    for item in items {
                        let cs = client.content_summary(&item).await?;
                        rows.push((item, cs.length, cs.space_consumed));
                    }
                    Ok(rows)
                }
                .await;
                match rows {
                    Ok(rows) => {
                        for (item, len, space) in rows {
                            println!("{:<10} {:<10} {item}", size(len), size(space));
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Count { human, paths, .. } => {
            let size = |n: u64| if *human { format::human(n) } else { n.to_string() };
            for p in paths.iter().map(a) {
                match client.content_summary(&p).await {
                    Ok(cs) => println!(
                        "{:>12} {:>12} {:>18} {p}",
                        cs.directory_count,
                        cs.file_count,
                        size(cs.length)
                    ),
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Chmod(c) => {
            for p in c.paths.iter().map(a) {
                match r.targets(&p, c.recursive).await {
                    Ok(items) => {
                        for (path, st) in items {
                            match format::parse_mode(&c.value, st.permission, format::is_dir(&st)) {
                                Ok(mode) => {
                                    if let Err(e) = client.set_permission(&path, mode).await {
                                        r.fail(e);
                                    }
                                }
                                Err(e) => {
                                    r.fail(e);
                                    return 1;
                                }
                            }
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Chown(c) | FsCommand::Chgrp(c) => {
            let (owner, group) = if matches!(cmd, FsCommand::Chgrp(_)) {
                (None, Some(c.value.as_str()))
            } else {
                match c.value.split_once(':') {
                    Some((o, g)) => ((!o.is_empty()).then_some(o), (!g.is_empty()).then_some(g)),
                    None => (Some(c.value.as_str()), None),
                }
            };
            if owner.is_none() && group.is_none() {
                r.fail(format!("invalid owner/group {:?}", c.value));
                return 1;
            }
            for p in c.paths.iter().map(a) {
                match r.targets(&p, c.recursive).await {
                    Ok(items) => {
                        for (path, _) in items {
                            if let Err(e) = client.set_owner(&path, owner, group).await {
                                r.fail(e);
                            }
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Setrep(c) => {
            let n: u32 = match c.value.parse() {
                Ok(n) if n > 0 => n,
                _ => {
                    r.fail(format!(
                        "invalid replication {:?}: expected a positive number",
                        c.value
                    ));
                    return 1;
                }
            };
            for p in c.paths.iter().map(a) {
                match r.targets(&p, true).await {
                    Ok(items) => {
                        let files: Vec<_> = items.into_iter().filter(|(_, s)| !format::is_dir(s)).collect();
                        for (path, _) in files {
                            match client.set_replication(&path, n).await {
                                Ok(()) => println!("Replication {n} set: {path}"),
                                Err(e) => r.fail(e),
                            }
                        }
                    }
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Put {
            force,
            recursive,
            paths,
        } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            if let Err(e) = crate::data::put(client, srcs, &a(&dst[0]), *force, *recursive).await {
                r.fail(e);
            }
        }
        FsCommand::CopyFromLocal { force, paths } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            if let Err(e) = crate::data::put(client, srcs, &a(&dst[0]), *force, true).await {
                r.fail(e);
            }
        }
        FsCommand::Get { force, paths } | FsCommand::CopyToLocal { force, paths } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            let srcs: Vec<String> = srcs.iter().map(a).collect();
            if let Err(e) = crate::data::get(client, &srcs, &dst[0], *force).await {
                r.fail(e);
            }
        }
        FsCommand::Cat { paths } => {
            for p in paths.iter().map(a) {
                if let Err(e) = crate::data::cat_one(client, &p).await {
                    r.fail(e);
                }
            }
        }
        FsCommand::Tail { follow, path } => {
            if let Err(e) = crate::data::tail(client, &a(path), *follow).await {
                r.fail(e);
            }
        }
        FsCommand::Cp { force, paths } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            let srcs: Vec<String> = srcs.iter().map(a).collect();
            if let Err(e) = crate::data::cp(client, &srcs, &a(&dst[0]), *force).await {
                r.fail(e);
            }
        }
        FsCommand::AppendToFile { paths } => {
            let (srcs, dst) = paths.split_at(paths.len() - 1);
            if let Err(e) = crate::data::append(client, srcs, &a(&dst[0])).await {
                r.fail(e);
            }
        }
        FsCommand::Checksum { paths } => {
            for p in paths.iter().map(a) {
                match crate::data::checksum(client, &p).await {
                    Ok(line) => println!("{line}"),
                    Err(e) => r.fail(e),
                }
            }
        }
        FsCommand::Test(t) => {
            let p = a(&t.path);
            return match client.get_file_info(&p).await {
                Ok(s) => {
                    let holds = match &s {
                        None => false,
                        Some(s) if t.which.dir => format::is_dir(s),
                        Some(s) if t.which.file => !format::is_dir(s),
                        Some(s) if t.which.zero => s.length == 0,
                        Some(s) if t.which.nonempty => s.length > 0,
                        Some(_) => true,
                    };
                    if holds { 0 } else { 1 }
                }
                Err(e) => {
                    r.fail(e);
                    2
                }
            };
        }
    }
    if r.failed { 1 } else { 0 }
}
