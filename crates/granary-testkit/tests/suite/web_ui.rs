//! The namenode and datanode web pages, loaded in headless Chromium (Debian's
//! `chromium`) from a cluster of real processes: the test reads what a person
//! sees — the rendered DOM's tables and text — and takes screenshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use granary_testkit::binaries::ProcessCluster;
use granary_testkit::fixtures::{pseudo_random, put};

fn chromium() -> String {
    std::env::var("GRANARY_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn browser(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run ({e}): scripts/test.sh installs it", chromium()))
}

/// The page as the browser rendered it.
fn dom(profile: &Path, url: &str) -> String {
    let out = browser(profile, &["--dump-dom"], url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// The visible cells of table `#id`, row by row (header row first).
fn table(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id} in {dom}"));
    let end = start + dom[start..].find("</table>").unwrap();
    dom[start..end]
        .split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("</td>")
                .flat_map(|c| c.split("</th>"))
                .filter_map(|c| {
                    let cell = c.rsplit_once("<td>").or_else(|| c.rsplit_once("<th>"))?.1;
                    Some(text(cell))
                })
                .collect()
        })
        .collect()
}

fn row<'a>(t: &'a [Vec<String>], first: &str) -> &'a [String] {
    t.iter()
        .find(|r| r.first().is_some_and(|c| c == first))
        .unwrap_or_else(|| panic!("no row {first:?} in {t:?}"))
}

#[test]
fn web_pages_show_the_cluster_the_files_and_their_blocks() {
    let c = ProcessCluster::start(3, &["--min-block-size", "65536"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = pseudo_random(65536 + 1000, 5);
    rt.block_on(async {
        let client = c.client().await;
        put(&client, "/web/dir/a.bin", &bytes, 65536).await;
        put(&client, "/web/dir/x y&<z>.txt", b"odd name", 65536).await;
    });
    let profile = c.dir.path().join("chromium");
    let nn = format!("http://{}", c.http);

    let overview = dom(&profile, &format!("{nn}/"));
    let summary = table(&overview, "summary");
    assert_eq!(row(&summary, "Live datanodes")[1], "3");
    assert_eq!(row(&summary, "Safe mode")[1], "OFF");
    assert_eq!(row(&summary, "Blocks")[1], "3");
    assert_eq!(row(&summary, "Block health")[1], "HEALTHY");
    assert!(row(&summary, "Cluster ID")[1].starts_with("CID-"));

    let nodes = table(&dom(&profile, &format!("{nn}/datanodes")), "datanodes");
    assert_eq!(nodes[0][..4], ["Node", "Uuid", "Rack", "State"]);
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    for i in 0..3 {
        let r = row(&nodes, &c.datanode_addr(i));
        assert_eq!(r[1], c.datanode_uuid(i));
        assert_eq!((r[2].as_str(), r[3].as_str()), ("/default-rack", "live"));
    }
    let total: u64 = nodes[1..].iter().map(|r| r[7].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 9, "3 blocks x 3 replicas: {nodes:?}");

    let dir = dom(&profile, &format!("{nn}/explorer?path=/web/dir&user.name=hdfs"));
    let listing = table(&dir, "listing");
    let a = row(&listing, "-rw-r--r--");
    assert_eq!((a[1].as_str(), a[7].as_str()), ("hdfs", "a.bin"));
    assert_eq!(a[3], "65 K");
    assert!(
        listing
            .iter()
            .any(|r| r.last().is_some_and(|n| n == "x y&<z>.txt")),
        "{listing:?}"
    );

    let file = dom(
        &profile,
        &format!("{nn}/explorer?path=/web/dir/a.bin&user.name=hdfs"),
    );
    assert_eq!(row(&table(&file, "file"), "Size")[1], "66536 bytes (65 K)");
    let blocks = table(&file, "blocks");
    assert_eq!(blocks.len(), 3, "2 blocks: {blocks:?}");
    for b in &blocks[1..] {
        for i in 0..3 {
            assert!(b[4].contains(&c.datanode_addr(i)), "{b:?}");
        }
    }
    assert_eq!(blocks[2][3], "1000");
    // The download link goes through WebHDFS to a datanode and back to the bytes.
    let href = file
        .split("id=\"download\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let got = Command::new("curl")
        .args(["-sfL", &format!("{nn}{href}")])
        .output()
        .unwrap();
    assert!(
        got.stdout == bytes,
        "download differs ({} bytes)",
        got.stdout.len()
    );

    let missing = dom(&profile, &format!("{nn}/explorer?path=/nope"));
    assert!(
        text(&missing).contains("FileNotFoundException: File does not exist: /nope"),
        "{missing}"
    );

    let dn = dom(&profile, &format!("http://{}/", c.datanode_http(0)));
    let summary = table(&dn, "summary");
    assert_eq!(row(&summary, "Uuid")[1], c.datanode_uuid(0));
    assert_eq!(row(&summary, "Registered with the namenode")[1], "yes");
    assert_eq!(row(&summary, "Replicas")[1], "3");
    let storages = table(&dn, "storages");
    assert!(
        storages[1][0].starts_with(c.datanode_dir(0).to_str().unwrap()),
        "{storages:?}"
    );
    assert_eq!(storages[1][5], "in service");

    // Screenshots render (a blank page would be a few hundred bytes).
    for (name, url) in [
        ("overview", format!("{nn}/")),
        ("file", format!("{nn}/explorer?path=/web/dir/a.bin")),
    ] {
        let png = c.dir.path().join(format!("{name}.png"));
        let out = browser(
            &profile,
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1200,800",
            ],
            &url,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let size = std::fs::metadata(&png).unwrap().len();
        assert!(size > 10_000, "{name}.png is {size} bytes");
    }
}

/// The `href` of link `#id` in a rendered page.
fn link(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let href = tag.split("href=\"").nth(1)?.split('"').next()?;
    Some(href.replace("&amp;", "&"))
}

/// Issue 18, finding 10: the explorer shows a large directory one page at a
/// time, with a link to the next page that carries the last name shown
/// (URL-encoded), instead of building the whole directory.
#[test]
fn the_explorer_pages_a_large_directory() {
    const ENTRIES: usize = 1_050;
    let c = ProcessCluster::start(0, &[]);
    // The 1,000th entry, the last of the first page, has a name that must
    // be encoded in the next page's link.
    let name = |i: usize| {
        if i == 999 {
            "e0999 a&b=c?d#e%f+g".to_string()
        } else {
            format!("e{i:04}")
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.client().await;
        client.mkdirs("/many", None, false).await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..16 {
            let client = client.clone();
            writers.spawn(async move {
                for i in (w..ENTRIES).step_by(16) {
                    client
                        .mkdirs(&format!("/many/{}", name(i)), None, false)
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(r) = writers.join_next().await {
            r.unwrap();
        }
    });
    let profile = c.dir.path().join("chromium");
    let nn = format!("http://{}", c.http);
    let names = |dom: &str| -> Vec<String> {
        table(dom, "listing")[1..]
            .iter()
            .map(|r| r.last().unwrap().clone())
            .collect()
    };

    let first = dom(&profile, &format!("{nn}/explorer?path=/many&user.name=hdfs"));
    let shown = names(&first);
    assert_eq!(shown.len(), 1000, "one page");
    assert_eq!(shown, (0..1000).map(name).collect::<Vec<_>>());
    let page_note = |dom: &str| {
        let at = dom.find("id=\"page\">").unwrap() + "id=\"page\">".len();
        text(&dom[at..at + dom[at..].find("</p>").unwrap()])
    };
    assert_eq!(page_note(&first), format!("1000 of {ENTRIES} entries"));
    assert!(link(&first, "first").is_none(), "no way back from the first page");

    let next = link(&first, "next").expect("a next-page link");
    assert!(
        next.contains("start_after=e0999+a%26b%3Dc%3Fd%23e%25f%2Bg"),
        "{next}"
    );
    let second = dom(&profile, &format!("{nn}{next}"));
    assert_eq!(names(&second), (1000..ENTRIES).map(name).collect::<Vec<_>>());
    assert_eq!(
        page_note(&second),
        format!("50 of {ENTRIES} entries after {}", name(999))
    );
    assert!(link(&second, "next").is_none(), "the last page has no next page");
    let back = link(&second, "first").expect("a link to the first page");
    assert_eq!(names(&dom(&profile, &format!("{nn}{back}"))).len(), 1000);
}

/// The value of attribute `attr` on the element `#id` of a rendered page.
fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    Some(
        tag.split(&format!("{name}=\""))
            .nth(1)?
            .split('"')
            .next()?
            .to_string(),
    )
}

/// The overview charts the last hour's activity with the numbers a
/// running cluster makes (client calls, block bytes written and read), and
/// both pages draw each datanode's usage against the cluster's mean; the
/// charts and bars render in a screenshot.
#[test]
fn the_overview_charts_activity_and_the_datanodes_usage() {
    let conf = tempfile::tempdir().unwrap();
    let toml = conf.path().join("nn.toml");
    std::fs::write(&toml, "[web_ui]\nsample_interval_ms = 500\n").unwrap();
    let c = ProcessCluster::start(
        3,
        &["--config", toml.to_str().unwrap(), "--min-block-size", "65536"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = pseudo_random(6 << 20, 9);
    rt.block_on(async {
        let client = c.client().await;
        put(&client, "/charts/a.bin", &bytes, 1 << 20).await;
        assert!(granary_testkit::fixtures::get(&client, "/charts/a.bin").await == bytes);
        for i in 0..50 {
            client.mkdirs(&format!("/charts/d{i}"), None, true).await.unwrap();
        }
    });
    let nn = format!("http://{}", c.http);
    let peak = |page: &str, id: &str| -> f64 {
        attr(page, id, "data-peak")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no #{id} with a peak in {page}"))
    };
    // Samples every 500 ms. A datanode's counters come with its heartbeat,
    // and its first report is only a baseline (bytes from before it are
    // not one interval's): keep writing and reading a little until the
    // charts show it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut round = 0u64;
    let page = loop {
        let page = granary_testkit::binaries::http_get(&c.http, "/").unwrap_or_default();
        if page.contains("id=\"chart-ops\"")
            && ["chart-ops", "chart-write", "chart-read"]
                .iter()
                .all(|id| peak(&page, id) > 0.0)
        {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the charts never showed the activity:\n{page}"
        );
        round += 1;
        let more = pseudo_random(1 << 20, 100 + round);
        rt.block_on(async {
            let client = c.client().await;
            let path = format!("/charts/more{round}.bin");
            put(&client, &path, &more, 1 << 20).await;
            assert!(granary_testkit::fixtures::get(&client, &path).await == more);
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        page.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
        "{page}"
    );

    let profile = c.dir.path().join("chromium");
    let overview = dom(&profile, &format!("{nn}/"));
    // At least a MiB (x 3 replicas) written and read within a sample.
    assert!(peak(&overview, "chart-write") > 0.1, "{overview}");
    assert!(peak(&overview, "chart-read") > 0.05, "{overview}");
    assert!(peak(&overview, "chart-ops") >= 1.0, "{overview}");
    assert!(overview.contains("<polyline points=\""), "{overview}");
    let usage = table(&overview, "usage");
    assert_eq!(usage.len(), 4, "{usage:?}");
    // Each bar's hover text is that node's real usage (replicas on disk).
    assert_eq!(overview.matches("class=\"bar\"").count(), 3, "{overview}");
    for title in overview
        .split("class=\"bar\"")
        .skip(1)
        .map(|b| b.split("title=\"").nth(1).unwrap())
    {
        let used = title.split(" of ").next().unwrap();
        assert!(
            used.ends_with('M') && !used.starts_with('0'),
            "bar title {title:?}"
        );
    }
    let nodes = dom(&profile, &format!("{nn}/datanodes"));
    assert_eq!(nodes.matches("class=\"bar\"").count(), 3, "{nodes}");
    assert!(text(&nodes).contains("Cluster mean usage"), "{nodes}");

    let png = c.dir.path().join("activity.png");
    let out = browser(
        &profile,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1200",
        ],
        &format!("{nn}/"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shot = std::fs::read(&png).unwrap();
    if let Some(keep) = std::env::var_os("GRANARY_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 20_000,
        "{} bytes",
        shot.len()
    );
}
