//! Drawings of the web UI, server-rendered (no JavaScript): a datanode's
//! usage bar, with the cluster's mean as a mark (what the balancer evens
//! out), and a line chart of a rate over the last hour.

use maud::{Markup, html};

/// CSS for the drawings.
pub const STYLE: &str = ".bar{position:relative;width:16em;height:1.1em;background:#e8eef4;border:1px solid #9ab}\
.bar .used{height:100%;background:#3a7bd5}\
.bar .mean{position:absolute;top:-3px;bottom:-3px;width:2px;background:#d33}\
.chart{margin:.5em 2em 1em 0;display:inline-block}.chart svg{background:#fafcff;border:1px solid #ccd}\
.chart polyline{fill:none;stroke:#3a7bd5;stroke-width:2}.chart text{font-size:11px;fill:#555}";

/// Percent of `total` that `part` is (0 when there is no total).
pub fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// A usage bar: `used_pct` filled, a mark at `mean_pct`.
pub fn usage_bar(used_pct: f64, mean_pct: f64, label: &str) -> Markup {
    let used = used_pct.clamp(0.0, 100.0);
    let mean = mean_pct.clamp(0.0, 100.0);
    html! {
        div.bar data-used-pct=(format!("{used:.2}")) title=(label) {
            div.used style=(format!("width:{used:.2}%")) {}
            div.mean style=(format!("left:{mean:.2}%")) title=(format!("cluster mean {mean:.1}%")) {}
        }
    }
}

const W: f64 = 480.0;
const H: f64 = 120.0;

/// A line chart of `points` (milliseconds since the epoch, value) over the
/// `window_ms` before `now_ms`, from 0 to just over the peak; the peak and
/// the last value written beside it, in `unit` (values divided by `scale`).
pub fn line_chart(
    id: &str,
    title: &str,
    unit: &str,
    scale: f64,
    points: &[(i64, f64)],
    now_ms: i64,
    window_ms: i64,
) -> Markup {
    let scaled: Vec<(i64, f64)> = points.iter().map(|(t, v)| (*t, v / scale)).collect();
    let peak = scaled.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let last = scaled.last().map_or(0.0, |(_, v)| *v);
    let top = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    let from = now_ms - window_ms.max(1);
    let line: Vec<String> = scaled
        .iter()
        .map(|(t, v)| {
            let x = ((t - from) as f64 / window_ms.max(1) as f64 * W).clamp(0.0, W);
            let y = H - (v / top * H).clamp(0.0, H);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        div.chart {
            div { b { (title) } " — now " (format!("{last:.1}")) " " (unit) ", peak " (format!("{peak:.1}")) " " (unit) }
            svg id=(id) width=(W) height=(H + 14.0) viewBox=(format!("0 0 {W} {}", H + 14.0))
                data-peak=(format!("{peak:.3}")) data-last=(format!("{last:.3}")) data-points=(scaled.len())
                role="img" aria-label=(title) {
                line x1="0" y1=(H) x2=(W) y2=(H) stroke="#99a" {}
                text x="2" y="11" { (format!("{top:.1} {unit}")) }
                text x="2" y=(H + 12.0) { "-" (window_ms / 60_000) " min" }
                text x=(W - 24.0) y=(H + 12.0) { "now" }
                @if line.len() > 1 {
                    polyline points=(line.join(" ")) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_and_bars_carry_their_numbers() {
        let c = line_chart(
            "c",
            "ops",
            "ops/s",
            1.0,
            &[(1000, 2.0), (2000, 8.0), (3000, 4.0)],
            3000,
            3000,
        )
        .into_string();
        assert!(
            c.contains("data-peak=\"8.000\"") && c.contains("data-last=\"4.000\""),
            "{c}"
        );
        assert!(c.contains("<polyline points=\""), "{c}");
        let empty = line_chart("e", "ops", "ops/s", 1.0, &[], 3000, 3000).into_string();
        assert!(
            empty.contains("data-points=\"0\"") && !empty.contains("polyline"),
            "{empty}"
        );
        let b = usage_bar(150.0, 42.0, "x").into_string();
        assert!(
            b.contains("data-used-pct=\"100.00\"") && b.contains("left:42.00%"),
            "{b}"
        );
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(1, 0), 0.0);
    }
}
