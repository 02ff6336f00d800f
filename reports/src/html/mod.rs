//! `report html`: one self-contained page (inline CSS and SVG, no fetches) to look at when a verdict is red.
//!
//! Charts: the latency percentile spectrum (HDR-plot style: the x axis is log10(1 / (1 − q)), so 90%, 99%, 99.9%
//! are evenly spaced), latency (p50, p99) and throughput over time, and the outcome of requests by error class;
//! baselines are overlaid dashed. A tiny inline script measures each chart after layout and writes the result
//! into `#chart-check` (used by the browser test; harmless for readers).

use std::fmt::Write;

use crate::compare::{self, Named};
use crate::file::AnyReport;
use crate::load::{Hist, LoadReport, micros};
use crate::render::junit::esc;
use crate::render::{self, thousands, thousands_f1};
use crate::replay::ReplayReport;

pub mod svg;

use svg::{Axis, Bar, Line, Scale};

const CANDIDATE: &str = "#1f6feb";
const CANDIDATE_DARK: &str = "#0a3069";
const CANDIDATE_LIGHT: &str = "#7fb0f5";
const BASELINES: [&str; 5] = ["#d9822b", "#8250df", "#2da44e", "#cf222e", "#6e7781"];
const OK: &str = "#2da44e";
const ERRORS: [&str; 6] = ["#cf222e", "#d9822b", "#8250df", "#bf3989", "#6e7781", "#953800"];

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// A damaged histogram.
    #[error("{file}: {place}: {source}")]
    Histogram {
        /// Which report.
        file: String,
        /// Which histogram.
        place: String,
        /// What is wrong.
        source: crate::load::HistError,
    },
    /// Baselines of another kind.
    #[error("{file}: a {kind} report; the page's baselines must be {want} reports like the report itself")]
    Kind {
        /// The baseline.
        file: String,
        /// Its kind.
        kind: &'static str,
        /// The main report's kind.
        want: &'static str,
    },
}

/// The page for `report` (a load or replay report) with `baselines` overlaid.
pub fn page(report: &Named, baselines: &[Named]) -> Result<String, HtmlError> {
    for b in baselines {
        if b.report.kind() != report.report.kind() {
            return Err(HtmlError::Kind {
                file: b.name.clone(),
                kind: b.report.kind(),
                want: report.report.kind(),
            });
        }
    }
    let (title, body) = match &report.report {
        AnyReport::Load(r) => {
            let bl: Vec<(&str, &LoadReport)> = baselines
                .iter()
                .filter_map(|b| match &b.report {
                    AnyReport::Load(x) => Some((b.name.as_str(), x)),
                    AnyReport::Replay(_) => None,
                })
                .collect();
            (
                format!("mcptape load report: {}", r.target),
                load_body(&report.name, r, &bl, report, baselines)?,
            )
        }
        AnyReport::Replay(r) => {
            let bl: Vec<(&str, &ReplayReport)> = baselines
                .iter()
                .filter_map(|b| match &b.report {
                    AnyReport::Replay(x) => Some((b.name.as_str(), x)),
                    AnyReport::Load(_) => None,
                })
                .collect();
            (
                format!("mcptape replay report: {}", r.target),
                replay_body(&report.name, r, &bl, report, baselines),
            )
        }
    };
    Ok(wrap(&title, &body))
}

/// The charts of a load report, each an `<svg>` with its id: `spectrum`, `latency-time`, `throughput-time`,
/// `errors`.
pub fn load_charts(name: &str, r: &LoadReport, baselines: &[(&str, &LoadReport)]) -> Result<Vec<String>, HtmlError> {
    let hist_err = |file: &str, place: &str| {
        let (file, place) = (file.to_string(), place.to_string());
        move |source| HtmlError::Histogram { file, place, source }
    };
    // Spectrum.
    let mut lines = vec![Line {
        label: format!("{name} (corrected)"),
        color: CANDIDATE.into(),
        dashed: false,
        points: spectrum(&r.totals.corrected).map_err(hist_err(name, "totals.corrected"))?,
    }];
    lines.push(Line {
        label: format!("{name} (service)"),
        color: CANDIDATE_LIGHT.into(),
        dashed: false,
        points: spectrum(&r.totals.service).map_err(hist_err(name, "totals.service"))?,
    });
    for (i, (bn, b)) in baselines.iter().enumerate() {
        lines.push(Line {
            label: format!("baseline {bn}"),
            color: BASELINES[i % BASELINES.len()].into(),
            dashed: true,
            points: spectrum(&b.totals.corrected).map_err(hist_err(bn, "totals.corrected"))?,
        });
    }
    let nines = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
    let spectrum_svg = svg::line_chart(
        "spectrum",
        "Latency by percentile (all methods)",
        &Axis {
            title: "percentile".into(),
            scale: Scale::Linear,
            ticks: nines_label,
        },
        &Axis {
            title: "latency (log scale)".into(),
            scale: Scale::Log,
            ticks: us_label,
        },
        &lines,
        Some(&nines),
    );

    // Latency over time.
    let series = |r: &LoadReport, f: fn(&crate::load::SecondPoint) -> u64| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter(|p| f(p) > 0)
            .map(|p| (p.t as f64, f(p) as f64))
            .collect()
    };
    let mut lines = vec![
        Line {
            label: format!("{name} p50"),
            color: CANDIDATE.into(),
            dashed: false,
            points: series(r, |p| p.p50_us),
        },
        Line {
            label: format!("{name} p99"),
            color: CANDIDATE_DARK.into(),
            dashed: false,
            points: series(r, |p| p.p99_us),
        },
    ];
    for (i, (bn, b)) in baselines.iter().enumerate() {
        let color = BASELINES[i % BASELINES.len()];
        lines.push(Line {
            label: format!("baseline {bn} p50"),
            color: color.into(),
            dashed: true,
            points: series(b, |p| p.p50_us),
        });
        lines.push(Line {
            label: format!("baseline {bn} p99"),
            color: color.into(),
            dashed: true,
            points: series(b, |p| p.p99_us),
        });
    }
    let secs = Axis {
        title: "seconds since start".into(),
        scale: Scale::Linear,
        ticks: secs_label,
    };
    let latency_svg = svg::line_chart(
        "latency-time",
        "Latency over time (corrected, per second)",
        &secs,
        &Axis {
            title: "latency (log scale)".into(),
            scale: Scale::Log,
            ticks: us_label,
        },
        &lines,
        None,
    );

    // Throughput over time.
    let reqs =
        |r: &LoadReport| -> Vec<(f64, f64)> { r.series.iter().map(|p| (p.t as f64, p.requests as f64)).collect() };
    let mut lines = vec![Line {
        label: name.to_string(),
        color: CANDIDATE.into(),
        dashed: false,
        points: reqs(r),
    }];
    for (i, (bn, b)) in baselines.iter().enumerate() {
        lines.push(Line {
            label: format!("baseline {bn}"),
            color: BASELINES[i % BASELINES.len()].into(),
            dashed: true,
            points: reqs(b),
        });
    }
    let throughput_svg = svg::line_chart(
        "throughput-time",
        "Throughput over time (requests answered per second)",
        &secs,
        &Axis {
            title: "requests/s".into(),
            scale: Scale::Linear,
            ticks: count_label,
        },
        &lines,
        None,
    );

    // Outcomes.
    let mut classes: Vec<&str> = r.errors.keys().map(String::as_str).collect();
    for (_, b) in baselines {
        for k in b.errors.keys() {
            if !classes.contains(&k.as_str()) {
                classes.push(k);
            }
        }
    }
    classes.sort_unstable();
    let bar = |label: String, r: &LoadReport| Bar {
        label,
        parts: std::iter::once((
            "answered".to_string(),
            OK.to_string(),
            r.totals.requests.saturating_sub(r.totals.errors) as f64,
        ))
        .chain(classes.iter().enumerate().map(|(i, c)| {
            (
                c.to_string(),
                ERRORS[i % ERRORS.len()].to_string(),
                r.errors.get(*c).copied().unwrap_or(0) as f64,
            )
        }))
        .collect(),
    };
    let mut bars = vec![bar(short(name), r)];
    for (bn, b) in baselines {
        bars.push(bar(format!("baseline {}", short(bn)), b));
    }
    let errors_svg = svg::stacked_bars("errors", "Outcome of requests, by error class", &bars);
    Ok(vec![spectrum_svg, latency_svg, throughput_svg, errors_svg])
}

/// (nines, latency µs) points of a histogram's percentile spectrum, up to the resolution its count allows.
fn spectrum(h: &Hist) -> Result<Vec<(f64, f64)>, crate::load::HistError> {
    if h.count == 0 {
        return Ok(Vec::new());
    }
    let hist = h.histogram()?;
    let max_nines = (h.count as f64).log10().min(5.0);
    let steps = (max_nines / 0.05).floor() as usize;
    let mut out: Vec<(f64, f64)> = (0..=steps)
        .map(|k| {
            let x = k as f64 * 0.05;
            let q = 1.0 - 10f64.powf(-x);
            (x, hist.value_at_quantile(q) as f64)
        })
        .collect();
    if max_nines > steps as f64 * 0.05 + 1e-9 {
        out.push((max_nines, hist.value_at_quantile(1.0 - 10f64.powf(-max_nines)) as f64));
    }
    Ok(out)
}

fn nines_label(x: f64) -> String {
    match x.round() as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        3 => "99.9%".into(),
        4 => "99.99%".into(),
        _ => "99.999%".into(),
    }
}

fn us_label(v: f64) -> String {
    micros(v.round() as u64)
}

fn secs_label(v: f64) -> String {
    format!("{v:.0} s")
}

fn count_label(v: f64) -> String {
    thousands(v.round() as u64, false)
}

/// A file name without its folders, for legends.
fn short(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

fn load_body(
    name: &str,
    r: &LoadReport,
    baselines: &[(&str, &LoadReport)],
    named: &Named,
    named_baselines: &[Named],
) -> Result<String, HtmlError> {
    let mut s = String::new();
    let _ = writeln!(s, "<h1>mcptape load report</h1>");
    let _ = writeln!(
        s,
        "<p class=\"meta\"><b>{}</b> against <code>{}</code>, started {}, {:.1} s measured, workload <code>{}</code>, mcptape {}</p>",
        esc(name),
        esc(&r.target),
        esc(&r.started),
        r.duration_s,
        esc(short_fp(&r.workload.fingerprint)),
        esc(&r.tool_version)
    );
    let _ = writeln!(s, "<p class=\"summary\">{}</p>", esc(&r.summary_line()));
    if !named_baselines.is_empty() {
        comparison_section(&mut s, named, named_baselines);
    }
    let _ = writeln!(s, "<section class=\"charts\">");
    for chart in load_charts(
        &short(name),
        r,
        &baselines
            .iter()
            .map(|(n, b)| (n.rsplit('/').next().unwrap_or(n), *b))
            .collect::<Vec<_>>(),
    )? {
        let _ = writeln!(s, "<figure>{chart}</figure>");
    }
    let _ = writeln!(s, "</section>");
    let _ = writeln!(s, "<h2>Per method</h2>");
    let _ = writeln!(
        s,
        "<table><tr><th>method</th><th>requests</th><th>req/s</th><th>error rate</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>service p50</th><th>service p99</th></tr>"
    );
    let mut rows = vec![("all", &r.totals)];
    rows.extend(r.methods.iter().map(|(m, x)| (m.as_str(), x)));
    for (m, x) in rows {
        let l = |h: &Hist, v: u64| if h.count == 0 { "—".to_string() } else { micros(v) };
        let c = &x.corrected;
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(m),
            thousands(x.requests, false),
            thousands_f1(x.throughput_rps),
            if x.requests == 0 {
                "—".to_string()
            } else {
                format!("{:.2}%", x.errors as f64 * 100.0 / x.requests as f64)
            },
            l(c, c.p50_us),
            l(c, c.p90_us),
            l(c, c.p99_us),
            l(c, c.p999_us),
            l(c, c.max_us),
            l(&x.service, x.service.p50_us),
            l(&x.service, x.service.p99_us)
        );
    }
    let _ = writeln!(s, "</table>");
    if !r.errors.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Errors by class</h2><table><tr><th>class</th><th>count</th></tr>"
        );
        for (k, n) in &r.errors {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(k),
                thousands(*n, false)
            );
        }
        let _ = writeln!(s, "</table>");
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "<h2>Warnings</h2><ul>");
        for w in &r.warnings {
            let _ = writeln!(s, "<li>{}</li>", esc(w));
        }
        let _ = writeln!(s, "</ul>");
    }
    Ok(s)
}

fn short_fp(fp: &str) -> &str {
    let end = fp.char_indices().nth(7 + 12).map_or(fp.len(), |(i, _)| i);
    &fp[..end]
}

/// The default-budget comparison of the report against its baselines, as a table (or why there is none).
fn comparison_section(s: &mut String, candidate: &Named, baselines: &[Named]) {
    let _ = writeln!(s, "<h2>Against the baseline</h2>");
    let opts = compare::Options {
        any_workload: true,
        ..compare::Options::default()
    };
    match compare::compare(baselines, std::slice::from_ref(candidate), &opts) {
        Err(e) => {
            let _ = writeln!(s, "<p class=\"warn\">Not compared: {}</p>", esc(&e.to_string()));
        }
        Ok(c) => {
            let cls = if c.passed() { "pass" } else { "fail" };
            let _ = writeln!(
                s,
                "<p class=\"verdict {cls}\">{}: {}</p>",
                if c.passed() { "pass" } else { "regression" },
                esc(&render::verdict_sentence(&c))
            );
            let _ = writeln!(s, "<p class=\"meta\">{} (default budgets)</p>", esc(&c.guard.note));
            let _ = writeln!(
                s,
                "<table><tr><th>check</th><th>baseline</th><th>candidate</th><th>change</th><th>budget</th><th>test</th><th>verdict</th></tr>"
            );
            for x in &c.checks {
                let unit = x.metric.unit();
                let show = |v: Option<f64>| v.map(|v| render::value(unit, v)).unwrap_or_else(|| "—".into());
                let _ = writeln!(
                    s,
                    "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    if x.status == compare::Status::Regression {
                        "fail"
                    } else {
                        ""
                    },
                    esc(&render::check_name(x)),
                    esc(&show(x.baseline)),
                    esc(&show(x.candidate)),
                    esc(&render::change(x)),
                    esc(&x.budget.limit_text()),
                    esc(&render::test_cell(x)),
                    esc(x.status.label())
                );
            }
            let _ = writeln!(s, "</table>");
        }
    }
}

fn replay_body(
    name: &str,
    r: &ReplayReport,
    baselines: &[(&str, &ReplayReport)],
    named: &Named,
    named_baselines: &[Named],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<h1>mcptape replay report</h1>");
    let _ = writeln!(
        s,
        "<p class=\"meta\"><b>{}</b> against <code>{}</code>, started {}, {} session(s), {} failed</p>",
        esc(name),
        esc(&r.target),
        esc(&r.started),
        r.sessions.len(),
        r.failed()
    );
    if !named_baselines.is_empty() {
        comparison_section(&mut s, named, named_baselines);
    }
    let parts = |c: &crate::replay::Counts| {
        vec![
            ("matched".to_string(), OK.to_string(), c.matched as f64),
            ("differed".to_string(), ERRORS[0].to_string(), c.differed as f64),
            ("missing".to_string(), ERRORS[1].to_string(), c.missing as f64),
            ("extra".to_string(), ERRORS[2].to_string(), c.extra as f64),
        ]
    };
    let mut bars = vec![Bar {
        label: short(name),
        parts: parts(&r.totals),
    }];
    for (bn, b) in baselines {
        bars.push(Bar {
            label: format!("baseline {}", short(bn)),
            parts: parts(&b.totals),
        });
    }
    for (m, c) in &r.methods {
        bars.push(Bar {
            label: m.clone(),
            parts: parts(c),
        });
    }
    bars.truncate(8);
    let _ = writeln!(
        s,
        "<section class=\"charts\"><figure>{}</figure></section>",
        svg::stacked_bars("outcomes", "Answers by outcome", &bars)
    );
    let _ = writeln!(s, "<pre>{}</pre>", esc(&r.to_text()));
    s
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;\
color:#1f2328;padding:0 16px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}code{font-size:12px}\
.meta{color:#59636e;font-size:13px}.summary{font-weight:600}.verdict{font-weight:700;padding:6px 10px;border-radius:6px}\
.verdict.pass{background:#dafbe1}.verdict.fail{background:#ffebe9}.warn{color:#9a6700}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}\
figure{margin:0;border:1px solid #d1d9e0;border-radius:6px;overflow:hidden}svg.chart{display:block;width:100%;height:auto;\
font-family:inherit}table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d1d9e0;\
padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}tr.fail{background:#ffebe9}";

/// Measures each chart after layout: its box and how many of its marks drew with a size. Writes
/// `charts-ok id:WxH:drawn/marks …` (or `charts-bad …`) into `#chart-check`.
const CHECK: &str = "(function(){var out=[],ok=true,svgs=document.querySelectorAll('svg.chart');\
svgs.forEach(function(svg){var b=svg.getBBox(),r=svg.getBoundingClientRect(),marks=svg.querySelectorAll('.mark'),drawn=0;\
marks.forEach(function(m){var mb=m.getBBox();if(mb.width>0||mb.height>0)drawn++;});\
var good=b.width>0&&b.height>0&&r.width>0&&r.height>0&&drawn>0;ok=ok&&good;\
out.push(svg.id+':'+Math.round(r.width)+'x'+Math.round(r.height)+':'+drawn+'/'+marks.length);});\
document.getElementById('chart-check').textContent=(ok&&svgs.length>0?'charts-ok ':'charts-bad ')+out.join(' ');})();";

fn wrap(title: &str, body: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    );
    let _ = writeln!(
        s,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    let _ = writeln!(
        s,
        "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        esc(title)
    );
    s.push_str(body);
    let _ = writeln!(
        s,
        "<p class=\"meta\">Made by <code>mcptape report html</code>. Latencies are HdrHistogram percentiles; corrected latency is measured from the intended send time.</p>"
    );
    let _ = writeln!(
        s,
        "<output id=\"chart-check\" hidden></output>\n<script>{CHECK}</script>\n</body>\n</html>"
    );
    s
}
