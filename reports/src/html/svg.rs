//! Small deterministic SVG charts: line charts on linear or log axes and stacked bars.
//!
//! Why hand-made: the page must be one self-contained file with no scripts or fonts fetched, and golden files
//! pin the output, so every coordinate is printed with one decimal and nothing depends on the clock or locale.
//! Every data mark (a line, a bar) has class `mark`, which the page's self-check counts.

use std::fmt::Write;

use crate::render::junit::esc;

/// Chart size in user units (the SVG scales to the page width).
pub const WIDTH: f64 = 760.0;
/// Chart height.
pub const HEIGHT: f64 = 320.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 46.0;

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub color: String,
    /// Dashed (a baseline, or a secondary measure).
    pub dashed: bool,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Linear from 0.
    Linear,
    /// log10; values ≤ 0 are clamped to the lowest tick.
    Log,
}

/// An axis: scale, tick labels.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Title under or beside the axis.
    pub title: String,
    /// Scale.
    pub scale: Scale,
    /// Formats a tick value.
    pub ticks: fn(f64) -> String,
}

/// `1` decimal, never `-0.0`.
pub fn f1(x: f64) -> String {
    let s = format!("{x:.1}");
    if s == "-0.0" { "0.0".into() } else { s }
}

fn header(s: &mut String, id: &str, title: &str) {
    let _ = writeln!(
        s,
        "<svg class=\"chart\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        f1(WIDTH),
        f1(HEIGHT),
        esc(title)
    );
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>",
        f1(WIDTH),
        f1(HEIGHT)
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        f1(LEFT),
        esc(title)
    );
}

fn legend(s: &mut String, entries: &[(String, String, bool)]) {
    let mut x = LEFT;
    for (label, color, dashed) in entries {
        let dash = if *dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"32\" x2=\"{}\" y2=\"32\" stroke=\"{color}\" stroke-width=\"2.5\"{dash}/>",
            f1(x),
            f1(x + 22.0)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"36\" font-size=\"11\">{}</text>",
            f1(x + 26.0),
            esc(label)
        );
        x += 34.0 + 6.2 * label.chars().count() as f64;
    }
}

/// Ticks for an axis over [lo, hi]: decades for log, 5 steps of a nice size for linear.
fn ticks(scale: Scale, lo: f64, hi: f64) -> Vec<f64> {
    match scale {
        Scale::Log => {
            let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
            (a..=b.max(a + 1)).map(|e| 10f64.powi(e)).collect()
        }
        Scale::Linear => {
            let step = nice_step(hi / 5.0);
            let n = (hi / step).ceil().max(1.0) as usize;
            (0..=n).map(|i| i as f64 * step).collect()
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let nice = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

struct Map {
    scale: Scale,
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Map {
    fn new(scale: Scale, lo: f64, hi: f64, from: f64, to: f64) -> Map {
        Map {
            scale,
            lo,
            hi,
            from,
            to,
        }
    }
    fn at(&self, v: f64) -> f64 {
        let f = |x: f64| match self.scale {
            Scale::Linear => x,
            Scale::Log => x.max(self.lo).log10(),
        };
        let (a, b) = (f(self.lo), f(self.hi));
        let t = if b > a { (f(v) - a) / (b - a) } else { 0.0 };
        self.from + t.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// A line chart. `x_ticks` overrides the x tick positions (e.g. the percentile axis). Returns the `<svg>`
/// element; with no points at all it draws the axes and says "no data".
pub fn line_chart(id: &str, title: &str, x: &Axis, y: &Axis, lines: &[Line], x_ticks: Option<&[f64]>) -> String {
    let mut s = String::new();
    header(&mut s, id, title);
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (mut xhi, mut ylo, mut yhi) = (0.0f64, f64::INFINITY, 0.0f64);
    let mut xlo = f64::INFINITY;
    for &(px, py) in pts {
        xlo = xlo.min(px);
        xhi = xhi.max(px);
        if py > 0.0 {
            ylo = ylo.min(py);
        }
        yhi = yhi.max(py);
    }
    if !xlo.is_finite() {
        xlo = 0.0;
    }
    if x.scale == Scale::Linear {
        xlo = xlo.min(0.0);
    }
    if xhi <= xlo {
        xhi = xlo + 1.0;
    }
    if !ylo.is_finite() {
        ylo = 1.0;
    }
    if yhi <= 0.0 {
        yhi = 1.0;
    }
    let yt = ticks(y.scale, ylo, yhi);
    let (y0, y1) = match y.scale {
        Scale::Log => (yt[0], *yt.last().expect("ticks")),
        Scale::Linear => (0.0, *yt.last().expect("ticks")),
    };
    let xt: Vec<f64> = match x_ticks {
        Some(t) => t.iter().copied().filter(|&v| v >= xlo && v <= xhi + 1e-9).collect(),
        None => ticks(Scale::Linear, xlo, xhi)
            .into_iter()
            .filter(|&v| v <= xhi * 1.0001)
            .collect(),
    };
    let (px0, px1, py0, py1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let mx = Map::new(x.scale, xlo, xhi, px0, px1);
    let my = Map::new(y.scale, y0, y1, py0, py1);
    // Grid and tick labels.
    for &t in &yt {
        let py = my.at(t);
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e3e3e3\"/>",
            f1(px0),
            f1(py),
            f1(px1),
            f1(py)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            f1(px0 - 6.0),
            f1(py + 3.5),
            esc(&(y.ticks)(t))
        );
    }
    for &t in &xt {
        let px = mx.at(t);
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e3e3e3\"/>",
            f1(px),
            f1(py1),
            f1(px),
            f1(py0)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            f1(px),
            f1(py0 + 14.0),
            esc(&(x.ticks)(t))
        );
    }
    let _ = writeln!(
        s,
        "<path d=\"M{} {}V{}H{}\" fill=\"none\" stroke=\"#555\"/>",
        f1(px0),
        f1(py1),
        f1(py0),
        f1(px1)
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
        f1((px0 + px1) / 2.0),
        f1(HEIGHT - 8.0),
        esc(&x.title)
    );
    let _ = writeln!(
        s,
        "<text transform=\"translate(14 {}) rotate(-90)\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
        f1((py0 + py1) / 2.0),
        esc(&y.title)
    );
    // Data.
    let mut drawn = false;
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        drawn = true;
        let mut d = String::new();
        for (i, &(vx, vy)) in l.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if i == 0 { "M" } else { "L" },
                f1(mx.at(vx)),
                f1(my.at(vy))
            );
        }
        if l.points.len() == 1 {
            // A single point: a short tick so it is visible.
            let _ = write!(d, "h2");
        }
        let dash = if l.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            s,
            "<path class=\"mark\" d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}><title>{}</title></path>",
            l.color,
            esc(&l.label)
        );
    }
    if !drawn {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#888\">no data</text>",
            f1((px0 + px1) / 2.0),
            f1((py0 + py1) / 2.0)
        );
    }
    let entries: Vec<(String, String, bool)> = lines
        .iter()
        .map(|l| (l.label.clone(), l.color.clone(), l.dashed))
        .collect();
    legend(&mut s, &entries);
    s.push_str("</svg>\n");
    s
}

/// One stacked bar: a label and its parts (label, colour, value).
#[derive(Debug, Clone)]
pub struct Bar {
    /// Row label.
    pub label: String,
    /// Segments, drawn left to right.
    pub parts: Vec<(String, String, f64)>,
}

/// Horizontal 100% stacked bars, one row per bar; each segment's share is its value over the row's sum.
pub fn stacked_bars(id: &str, title: &str, bars: &[Bar]) -> String {
    let mut s = String::new();
    header(&mut s, id, title);
    let label_w = 150.0;
    let (x0, x1) = (LEFT + label_w - 60.0, WIDTH - RIGHT - 140.0);
    let row_h = ((HEIGHT - TOP - BOTTOM) / bars.len().max(1) as f64).min(44.0);
    let mut legend_entries: Vec<(String, String, bool)> = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * row_h;
        let h = row_h * 0.62;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            f1(x0 - 8.0),
            f1(y + h / 2.0 + 4.0),
            esc(&b.label)
        );
        let total: f64 = b.parts.iter().map(|p| p.2).sum();
        let mut x = x0;
        for (name, color, v) in &b.parts {
            if !legend_entries.iter().any(|e| &e.0 == name) {
                legend_entries.push((name.clone(), color.clone(), false));
            }
            if *v <= 0.0 || total <= 0.0 {
                continue;
            }
            // Every non-empty segment at least 2 units wide, so a rare error class stays visible.
            let w = ((v / total) * (x1 - x0)).max(2.0).min(x1 - x);
            let _ = writeln!(
                s,
                "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{}: {}</title></rect>",
                f1(x),
                f1(y),
                f1(w),
                f1(h),
                esc(name),
                fmt_count(*v)
            );
            x += w;
        }
        let errors: f64 = b.parts.iter().skip(1).map(|p| p.2).sum();
        let note = if total > 0.0 {
            format!("{} errors ({:.2}%)", fmt_count(errors), errors * 100.0 / total)
        } else {
            "no requests".into()
        };
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            f1(x1 + 8.0),
            f1(y + h / 2.0 + 4.0),
            esc(&note)
        );
    }
    legend(&mut s, &legend_entries);
    s.push_str("</svg>\n");
    s
}

fn fmt_count(v: f64) -> String {
    crate::render::thousands(v.max(0.0).round() as u64, false)
}
