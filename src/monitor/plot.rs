//! Control charts and drift plots of the monitoring report, as small hand-written SVG: a pure
//! function of `monitor.json` (fixed number formatting, no clock), with text in Libertinus
//! Serif, which the embedded Typst resolves from its bundled fonts (as `report/plots.rs`).
//! Every user-written string is XML-escaped. A CUSUM chart draws exactly the chart's points
//! (AIM-CU's path from `stats::cusum::aimcu_path`, as in `monitor.json`) and its `H` line;
//! nothing is recomputed here.

use crate::report::junit::xml_escape;

use super::MonitorReport;
use super::engine::Chart;

const W: f64 = 640.0;
const H: f64 = 240.0;
const L: f64 = 56.0;
const R: f64 = 16.0;
const T: f64 = 28.0;
const B: f64 = 34.0;

/// One line of a plot.
pub struct Series<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Stroke colour.
    pub color: &'a str,
    /// Dashed.
    pub dashed: bool,
    /// `(x, y)` points; `None` breaks the line.
    pub points: Vec<(f64, Option<f64>)>,
}

fn n(x: f64) -> String {
    format!("{x:.2}")
}

/// A line chart with optional alarm markers at `(x, y)`.
pub fn line_chart(title: &str, y_label: &str, series: &[Series], alarms: &[(f64, f64)]) -> String {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .chain(alarms.iter().map(|a| a.1))
        .filter(|y| y.is_finite())
        .collect();
    let (x0, x1) = bounds(&xs);
    let (mut y0, mut y1) = bounds(&ys);
    let pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
    let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"Libertinus Serif\" font-size=\"12\">\n"
    );
    s.push_str(&format!(
        "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        L,
        xml_escape(title)
    ));
    // axes and ticks
    s.push_str(&format!(
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>\n",
        H - B,
        W - R,
        H - B,
        H - B
    ));
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        s.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            L,
            n(py(y)),
            W - R,
            n(py(y)),
            L - 4.0,
            n(py(y) + 4.0),
            tick(y)
        ));
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n",
            n(px(x.round())),
            H - B + 16.0,
            x.round()
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">window</text>\n",
        n((L + W - R) / 2.0),
        H - 4.0
    ));
    s.push_str(&format!(
        "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>\n",
        n((T + H - B) / 2.0),
        n((T + H - B) / 2.0),
        xml_escape(y_label)
    ));
    for (li, se) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen = false;
        for (x, y) in &se.points {
            match y {
                Some(y) if y.is_finite() => {
                    d.push_str(&format!(
                        "{}{} {} ",
                        if pen { "L" } else { "M" },
                        n(px(*x)),
                        n(py(*y))
                    ));
                    pen = true;
                }
                _ => pen = false,
            }
        }
        if !d.is_empty() {
            s.push_str(&format!(
                "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{}/>\n",
                d.trim_end(),
                se.color,
                if se.dashed {
                    " stroke-dasharray=\"5 3\""
                } else {
                    ""
                }
            ));
        }
        let lx = L + 8.0 + 150.0 * li as f64;
        s.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/><text x=\"{}\" y=\"{}\">{}</text>\n",
            n(lx),
            T + 6.0,
            n(lx + 18.0),
            T + 6.0,
            se.color,
            if se.dashed { " stroke-dasharray=\"5 3\"" } else { "" },
            n(lx + 22.0),
            T + 10.0,
            xml_escape(se.name)
        ));
    }
    for (x, y) in alarms {
        s.push_str(&format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"#c0392b\"/>\n",
            n(px(*x)),
            n(py(*y))
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn bounds(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract().abs() < 1e-9 && v.abs() >= 1.0) {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The SVG of one control chart.
pub fn chart_svg(c: &Chart) -> String {
    let pts = |f: &dyn Fn(&super::engine::ChartPoint) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        c.points.iter().map(|p| (p.window as f64, f(p))).collect()
    };
    let title = format!("{} ({}), {}", c.id, c.scope, c.design.of.as_str());
    match c.design.chart {
        crate::protocol::monitoring::MonitorKind::Cusum => {
            let series = [
                Series {
                    name: "S+ (increase)",
                    color: "#1f57a0",
                    dashed: false,
                    points: pts(&|p| p.upper_stat),
                },
                Series {
                    name: "S- (decrease)",
                    color: "#c85a14",
                    dashed: false,
                    points: pts(&|p| p.lower_stat),
                },
                Series {
                    name: "H = h sigma",
                    color: "#7a7a7a",
                    dashed: true,
                    points: pts(&|p| p.limit),
                },
            ];
            let alarms: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter_map(|p| {
                    let y = match p.alarm? {
                        crate::stats::cusum::Side::Upper => p.upper_stat?,
                        crate::stats::cusum::Side::Lower => p.lower_stat?,
                    };
                    Some((p.window as f64, y))
                })
                .collect();
            let units = match c.design.in_control {
                crate::protocol::monitoring::InControl::Baseline => "standardised".to_string(),
                crate::protocol::monitoring::InControl::Windows(_) => {
                    c.design.of.as_str().to_string()
                }
            };
            line_chart(
                &format!("CUSUM {title}"),
                &format!("CUSUM ({units})"),
                &series,
                &alarms,
            )
        }
        _ => {
            let series = [
                Series {
                    name: "EWMA Z",
                    color: "#1f57a0",
                    dashed: false,
                    points: pts(&|p| p.upper_stat),
                },
                Series {
                    name: "UCL",
                    color: "#7a7a7a",
                    dashed: true,
                    points: pts(&|p| p.limit),
                },
                Series {
                    name: "LCL",
                    color: "#7a7a7a",
                    dashed: true,
                    points: pts(&|p| p.lower_stat),
                },
            ];
            let alarms: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter(|p| p.alarm.is_some())
                .filter_map(|p| Some((p.window as f64, p.upper_stat?)))
                .collect();
            line_chart(
                &format!("EWMA {title}"),
                "standardised EWMA",
                &series,
                &alarms,
            )
        }
    }
}

/// One drift plot per non-chart statistic (overall scope): value per window, the alarm
/// threshold, alarms marked.
pub fn drift_svgs(r: &MonitorReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in &r.plan.statistics {
        if matches!(
            s.statistic,
            crate::protocol::monitoring::MonitorKind::Cusum
                | crate::protocol::monitoring::MonitorKind::Ewma
        ) {
            continue;
        }
        let vals: Vec<&super::engine::StatValue> = r
            .windows
            .iter()
            .flat_map(|w| w.values.iter().map(move |v| (w, v)))
            .filter(|(_, v)| v.id == s.id && v.is_overall())
            .map(|(_, v)| v)
            .collect();
        let xs: Vec<f64> = r.windows.iter().map(|w| w.window.index as f64).collect();
        let values: Vec<(f64, Option<f64>)> = xs
            .iter()
            .cloned()
            .zip(vals.iter().map(|v| v.value))
            .collect();
        let mut series = vec![Series {
            name: s.statistic.as_str(),
            color: "#1f57a0",
            dashed: false,
            points: values,
        }];
        if vals.iter().any(|v| v.lower.is_some()) {
            series.push(Series {
                name: "interval",
                color: "#9bb7dc",
                dashed: true,
                points: xs
                    .iter()
                    .cloned()
                    .zip(vals.iter().map(|v| v.lower))
                    .collect(),
            });
            series.push(Series {
                name: "",
                color: "#9bb7dc",
                dashed: true,
                points: xs
                    .iter()
                    .cloned()
                    .zip(vals.iter().map(|v| v.upper))
                    .collect(),
            });
        }
        if vals.iter().any(|v| v.baseline.is_some()) {
            series.push(Series {
                name: "baseline",
                color: "#2e8b57",
                dashed: true,
                points: xs
                    .iter()
                    .cloned()
                    .zip(vals.iter().map(|v| v.baseline))
                    .collect(),
            });
        }
        let th = s.alarm_above.or(s.alarm_below).or(match s.statistic {
            crate::protocol::monitoring::MonitorKind::Psi => Some(super::engine::DEFAULT_PSI_ABOVE),
            crate::protocol::monitoring::MonitorKind::Ks => Some(super::engine::DEFAULT_KS_P_BELOW),
            crate::protocol::monitoring::MonitorKind::AttributeMix => {
                Some(super::engine::DEFAULT_MIX_P_BELOW)
            }
            _ => None,
        });
        if let Some(t) = th {
            series.push(Series {
                name: "alarm threshold",
                color: "#c0392b",
                dashed: true,
                points: xs.iter().map(|x| (*x, Some(t))).collect(),
            });
        }
        let alarms: Vec<(f64, f64)> = r
            .windows
            .iter()
            .flat_map(|w| w.values.iter().map(move |v| (w, v)))
            .filter(|(_, v)| v.id == s.id && v.is_overall() && v.alarm)
            .filter_map(|(w, v)| Some((w.window.index as f64, v.value?)))
            .collect();
        let title = format!("{} ({})", s.id, s.statistic.as_str());
        out.push((
            format!("{}.svg", safe_name(&s.id)),
            line_chart(&title, s.statistic.as_str(), &series, &alarms),
        ));
    }
    out
}

/// A file-name-safe version of an ID.
pub fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
