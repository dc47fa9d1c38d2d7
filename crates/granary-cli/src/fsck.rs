//! `granary fsck PATH [-files] [-blocks] [-locations]`: walks the tree and
//! checks every block's live replicas against its file's replication, with
//! HDFS fsck's report and verdict. Exit 0 when HEALTHY, 1 when CORRUPT (a
//! block has no live replica) or on error.

use clap::Args;

use crate::error::{CliError, CliResult, exit};
use crate::out::outln;
use granary_client::{DfsClient, FileStatus, LocatedBlock};

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Where to start (a directory or a file).
    #[arg(default_value = "/")]
    pub path: String,
    /// Print each file checked.
    #[arg(long = "files", short = 'f')]
    pub files: bool,
    /// With -files: print each block.
    #[arg(long = "blocks", short = 'b')]
    pub blocks: bool,
    /// With -blocks: print where each replica lives.
    #[arg(long = "locations", short = 'l')]
    pub locations: bool,
}

#[derive(Default)]
struct Totals {
    size: u64,
    files: u64,
    dirs: u64,
    blocks: u64,
    replicas: u64,
    min_replicated: u64,
    under: u64,
    missing: u64,
    open: u64,
}

/// Replicas that count: on nodes in normal service (decommissioning ones leave).
fn live(b: &LocatedBlock) -> usize {
    b.locations.iter().filter(|l| l.state.is_alive()).count()
}

/// Exit status 0 when HEALTHY, 1 when CORRUPT.
pub async fn run(c: &DfsClient, a: &FsckArgs) -> CliResult<u8> {
    match fsck(c, a).await {
        Ok(true) => Ok(exit::OK),
        Ok(false) => Ok(exit::FAILED),
        Err(CliError::BrokenPipe) => Err(CliError::BrokenPipe),
        Err(e) => Err(CliError::Context {
            context: format!("fsck {}", a.path),
            source: Box::new(e),
        }),
    }
}

async fn fsck(c: &DfsClient, a: &FsckArgs) -> CliResult<bool> {
    outln!(
        "FSCK started by {} for path {} at {}",
        c.identity().user,
        a.path,
        crate::format::date_utc(chrono::Utc::now().timestamp_millis())
    )?;
    // The datanode count is the superuser's to see (as the report is);
    // anyone may check the blocks of files they can read.
    let datanodes = match c.cluster_report().await {
        Ok(r) => Some(r.datanodes.len()),
        Err(e) if granary_common::HasErrorCode::code(&e) == granary_common::ErrorCode::AccessControl => None,
        Err(e) => return Err(e.into()),
    };
    let defaults = c.server_defaults().await?;
    let mut t = Totals::default();
    let mut stack = vec![c.stat(&a.path).await.map(|s| (a.path.clone(), s))?];
    while let Some((path, st)) = stack.pop() {
        if st.is_dir {
            t.dirs += 1;
            let mut children = c.list(&path).await?;
            children.reverse();
            for ch in children {
                let p = if path == "/" {
                    format!("/{}", ch.name)
                } else {
                    format!("{path}/{}", ch.name)
                };
                stack.push((p, ch));
            }
            continue;
        }
        check_file(c, a, &path, &st, &mut t).await?;
    }
    let pct = |n: u64| {
        if t.blocks == 0 {
            0.0
        } else {
            n as f64 * 100.0 / t.blocks as f64
        }
    };
    let healthy = t.missing == 0;
    outln!()?;
    outln!("Status: {}", if healthy { "HEALTHY" } else { "CORRUPT" })?;
    if let Some(n) = datanodes {
        outln!(" Number of data-nodes:\t{n}")?;
    }
    outln!(" Total size:\t{} B", t.size)?;
    outln!(" Total dirs:\t{}", t.dirs)?;
    outln!(" Total files:\t{}", t.files)?;
    outln!(" Files open for write:\t{}", t.open)?;
    let avg = t.size.checked_div(t.blocks).unwrap_or(0);
    outln!(
        " Total blocks (validated):\t{} (avg. block size {avg} B)",
        t.blocks
    )?;
    outln!(
        " Minimally replicated blocks:\t{} ({:.1} %)",
        t.min_replicated,
        pct(t.min_replicated)
    )?;
    outln!(" Under-replicated blocks:\t{} ({:.1} %)", t.under, pct(t.under))?;
    outln!(" Missing blocks:\t\t{}", t.missing)?;
    outln!(" Default replication factor:\t{}", defaults.replication)?;
    let avg_repl = if t.blocks == 0 {
        0.0
    } else {
        t.replicas as f64 / t.blocks as f64
    };
    outln!(" Average block replication:\t{avg_repl:.1}")?;
    outln!(
        "The filesystem under path '{}' is {}",
        a.path,
        if healthy { "HEALTHY" } else { "CORRUPT" }
    )?;
    Ok(healthy)
}

async fn check_file(c: &DfsClient, a: &FsckArgs, path: &str, st: &FileStatus, t: &mut Totals) -> CliResult {
    t.files += 1;
    t.size += st.length;
    if st.under_construction {
        t.open += 1;
    }
    let lb = c.block_locations(path, 0, 0).await?;
    let want = st.replication as usize;
    let mut lines = Vec::new();
    let mut file_ok = true;
    for (i, b) in lb.blocks.iter().enumerate() {
        let blk = b.block;
        let n = live(b);
        t.blocks += 1;
        t.replicas += n as u64;
        let status = if n == 0 {
            t.missing += 1;
            file_ok = false;
            " MISSING!"
        } else {
            t.min_replicated += 1;
            if n < want {
                t.under += 1;
                " Under replicated"
            } else {
                ""
            }
        };
        let mut line = format!(
            "{i}. {}_{} len={} Live_repl={n}{status}",
            blk.id, blk.generation_stamp, blk.num_bytes
        );
        if a.locations {
            let locs: Vec<String> = b
                .locations
                .iter()
                .map(|l| format!("{} ({}, {})", l.id.rpc_addr, l.id.rack, l.state))
                .collect();
            line.push_str(&format!(" [{}]", locs.join(", ")));
        }
        lines.push(line);
    }
    if a.files || !file_ok {
        outln!(
            "{path} {} bytes, replicated: replication={want}, {} block(s): {}",
            st.length,
            lb.blocks.len(),
            if file_ok { " OK" } else { " CORRUPT" }
        )?;
        if a.blocks || !file_ok {
            for l in lines {
                outln!("{l}")?;
            }
        }
    }
    Ok(())
}
