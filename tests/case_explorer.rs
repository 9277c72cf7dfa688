//! The HTML report's case explorer in a real browser: headless Chromium loads `report.html`,
//! a small script injected into a copy of the page applies filters the way a user does
//! (outcome check boxes, a click on a subgroup row, the sort box, scrolling) and writes what
//! is visible into the DOM, which `--dump-dom` prints. The test fails on any console error,
//! uncaught exception or Content-Security-Policy violation.
//!
//! Skipped, with a message, when Chromium is absent (`.ci/run` installs the Debian package
//! `chromium`; `MEDGATE_CHROMIUM` names another binary). The 100,000-case page prints its
//! timings (the figures in benches/README.md come from this test); it asserts only that rows
//! are virtualised, never a speed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use medgate::report::cases::{self, CaseTable};
use medgate::report::render_html_with_cases;
use medgate::testing::sample;

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("MEDGATE_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
        "/usr/bin/google-chrome".into(),
    ];
    candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Captures errors before any page script runs.
const HEAD_HOOK: &str = r#"<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) { window.__errors.push("rejection: " + e.reason); });
document.addEventListener("securitypolicyviolation", function (e) { window.__errors.push("csp: " + e.violatedDirective + " " + e.blockedURI); });
(function () { var ce = console.error; console.error = function () { window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); }; })();
</script>"#;

/// Drives the explorer and writes the observations into `<pre id="medgate-test">`.
const DRIVER: &str = r##"<script>
(function () {
  var out = {};
  function visible() {
    return Array.prototype.map.call(document.querySelectorAll("#cx-view .cx-spacer .cx-row"), function (d) {
      return Array.prototype.map.call(d.children, function (c) { return c.textContent; });
    });
  }
  function change(el) { el.dispatchEvent(new Event("change")); }
  try {
    out.initial_count = document.getElementById("cx-count").textContent;
    out.initial_rows = visible().length;
    out.images = Array.prototype.filter.call(document.querySelectorAll("#cx-view img"), function (i) { return i.src.indexOf("data:image/png;base64,") === 0; }).length;
    var t0 = performance.now();
    document.querySelectorAll("input[data-outcome]").forEach(function (cb) {
      if (cb.value !== "FN") { cb.checked = false; change(cb); }
    });
    var t1 = performance.now();
    out.filter_ms = (t1 - t0) / 5;
    out.fn_count = document.getElementById("cx-count").textContent;
    out.fn_rows = visible();
    var tr = document.querySelector('tr[data-sg-attr="sex"][data-sg-level="F"]');
    out.has_subgroup_row = !!tr;
    if (tr) tr.click();
    out.sg_count = document.getElementById("cx-count").textContent;
    out.sg_rows = visible();
    out.sex_select = document.querySelector('select[data-attr="sex"]').value;
    document.querySelectorAll("input[data-outcome]").forEach(function (cb) { if (!cb.checked) { cb.checked = true; change(cb); } });
    var s = document.getElementById("cx-sort");
    s.value = "score-desc";
    var t2 = performance.now();
    change(s);
    out.sort_ms = performance.now() - t2;
    out.sorted_rows = visible();
    var v = document.getElementById("cx-view");
    v.scrollTop = v.scrollHeight / 2;
    v.dispatchEvent(new Event("scroll"));
    out.scrolled_rows = visible();
    var first = document.querySelector("#cx-view .cx-spacer .cx-row");
    if (first) first.click();
    out.detail = document.getElementById("cx-detail").textContent;
  } catch (e) {
    window.__errors.push("driver: " + e);
  }
  out.errors = window.__errors;
  var pre = document.createElement("pre");
  pre.id = "medgate-test";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"##;

/// Loads `html` (with the hook and driver injected) in headless Chromium; returns the
/// driver's observations and Chromium's stderr.
fn drive(browser: &Path, html: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let page = html
        .replacen("<head>", &format!("<head>\n{HEAD_HOOK}"), 1)
        .replacen("</body>", &format!("{DRIVER}\n</body>"), 1);
    let path = dir.path().join("report.html");
    std::fs::write(&path, page).unwrap();
    let profile = dir.path().join("profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1000",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", path.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let start = dom
        .find("<pre id=\"medgate-test\">")
        .unwrap_or_else(|| panic!("no driver output; chromium stderr:\n{stderr}"));
    let body = &dom[start + "<pre id=\"medgate-test\">".len()..];
    let end = body.find("</pre>").unwrap();
    let json = body[..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    (serde_json::from_str(&json).unwrap(), stderr)
}

fn count(table: &CaseTable, f: impl Fn(&cases::CaseView) -> bool) -> usize {
    table.rows.iter().filter(|r| f(r)).count()
}

/// Column of the outcome text in a row (after the optional image column).
fn outcome_col(thumbs: bool) -> usize {
    if thumbs { 5 } else { 4 }
}

fn check_page(browser: &Path, table: &CaseTable, thumbs: &BTreeMap<String, String>) -> f64 {
    let ev = {
        let mut ev = sample::sample_evidence();
        ev.protocol.report.thumbnails = if thumbs.is_empty() { 0 } else { 32 };
        ev
    };
    let html = render_html_with_cases(&ev, table, thumbs).unwrap();
    let t = Instant::now();
    let (o, stderr) = drive(browser, &html);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(o["errors"], serde_json::json!([]), "page errors: {o}");
    assert!(
        !stderr.contains("Uncaught") && !stderr.contains("Refused to"),
        "console errors in chromium's log:\n{stderr}"
    );
    let n = table.rows.len();
    assert_eq!(
        o["initial_count"],
        format!("{n} of {n} cases shown").as_str()
    );
    // Virtualised: a screenful of rows plus overscan, whatever the case count.
    let initial_rows = o["initial_rows"].as_u64().unwrap() as usize;
    assert!(
        initial_rows > 0 && initial_rows <= 60.min(n),
        "{initial_rows}"
    );
    if !thumbs.is_empty() {
        assert!(o["images"].as_u64().unwrap() > 0, "no thumbnails drawn");
    }

    // Outcome filter: only false negatives.
    let col = outcome_col(!thumbs.is_empty());
    let fns = count(table, |r| r.outcome == "FN");
    assert_eq!(o["fn_count"], format!("{fns} of {n} cases shown").as_str());
    let rows = o["fn_rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r[col] == "FN"), "{rows:?}");

    // Clicking the sex=F subgroup row narrows the list to that level (outcome filter kept).
    assert_eq!(o["has_subgroup_row"], true);
    assert_eq!(o["sex_select"], "F");
    let sex = col + 1;
    let fn_f = count(table, |r| r.outcome == "FN" && r.attributes[0] == "F");
    assert_eq!(o["sg_count"], format!("{fn_f} of {n} cases shown").as_str());
    let rows = o["sg_rows"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r[col] == "FN" && r[sex] == "F"),
        "{rows:?}"
    );

    // Sorted by score, high first, over every outcome of sex=F.
    let score = col - 2;
    let scores: Vec<f64> = o["sorted_rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[score].as_str().and_then(|s| s.parse().ok()))
        .collect();
    assert!(scores.len() > 1);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // Scrolling half-way draws other rows, still a screenful.
    let scrolled = o["scrolled_rows"].as_array().unwrap();
    assert!(!scrolled.is_empty() && scrolled.len() <= 60);
    assert!(o["detail"].as_str().unwrap().contains("Raw model answer"));
    eprintln!(
        "case explorer, {n} cases: page {:.1} MB, chromium load+drive {secs:.2} s, one outcome filter {:.1} ms, sort {:.1} ms",
        html.len() as f64 / 1e6,
        o["filter_ms"].as_f64().unwrap_or(f64::NAN),
        o["sort_ms"].as_f64().unwrap_or(f64::NAN),
    );
    secs
}

#[test]
fn case_explorer_filters_sorts_and_links_subgroups_in_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: Chromium not found (install the Debian package `chromium`)");
        return;
    };
    let table = cases::synthetic(400);
    let img = medgate::golden::image::LoadedImage {
        width: 40,
        height: 30,
        channels: 1,
        data: (0..1200).map(|i| (i % 40) as f32 / 39.0).collect(),
    };
    let uri = cases::thumbnail_uri(&img, 32).unwrap();
    let thumbs: BTreeMap<String, String> = table
        .rows
        .iter()
        .map(|r| (r.id.clone(), uri.clone()))
        .collect();
    check_page(&browser, &table, &thumbs);
    check_page(&browser, &table, &BTreeMap::new());
}

#[test]
fn case_explorer_stays_virtualised_at_100000_cases() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: Chromium not found (install the Debian package `chromium`)");
        return;
    };
    check_page(&browser, &cases::synthetic(100_000), &BTreeMap::new());
}
