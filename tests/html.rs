//! `kappa report --html` and `kappa reproduce`'s page: one self-contained
//! file with the plots inline, the tables, each run's configuration, the git
//! revision and the machine; and headless Chromium renders it to a page that
//! is not blank (skipped without Chromium, except under CI).
#![cfg(unix)]

mod common;

use common::{kappa, stderr, succeed, TempDir};
use kappa::report::{render, About, Format, ReportOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two tiny analysed runs, plain and BN; the BN one's directory name needs escaping.
fn two_runs(dir: &Path) -> Vec<PathBuf> {
    let runs = vec![dir.join("plain"), dir.join("bn<&>")];
    for (out, extra) in runs.iter().zip([&[][..], &["--bn"][..]]) {
        let mut args = vec!["train", "--depth", "3", "--width", "16", "--limit-train", "256", "--batch-size", "32", "--iterations", "16"];
        args.extend(["--log-every", "4", "--analyze-every", "8", "--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        succeed(&args);
    }
    runs
}

/// `kappa report --html RUNS --out OUT`; returns the page's path, which it prints.
fn report_html(runs: &[PathBuf], out: &Path) -> PathBuf {
    let mut args = vec!["report", "--html", "--out", out.to_str().unwrap()];
    args.extend(runs.iter().map(|r| r.to_str().unwrap()));
    let o = kappa(&args);
    assert!(o.status.success(), "kappa {args:?}: {}", stderr(&o));
    let page = out.join("report.html");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("page: {}", page.display())), "the page's path is not printed: {stdout}");
    page
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the first element opened by `open`.
fn element<'a>(html: &'a str, open: &str) -> &'a str {
    let start = html.find(open).unwrap_or_else(|| panic!("no {open:?} in the page")) + open.len();
    &html[start..start + html[start..].find('<').unwrap()]
}

#[test]
fn the_page_holds_plots_tables_configuration_revision_and_machine() {
    let dir = TempDir::new("html-page");
    let runs = two_runs(dir.path());
    let out = dir.path().join("report");
    let html = read(&report_html(&runs, &out));

    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Run names, escaped: the raw name would open a tag.
    assert!(html.contains("<td>plain</td>"), "no row for the plain run");
    assert!(html.contains("<td>bn&lt;&amp;&gt;</td>"), "the BN run's name is not escaped in its row");
    assert!(!html.contains("bn<&>"), "an unescaped run name reached the page");
    for heading in ["<h2>Runs</h2>", "<h2>Test error over seeds</h2>", "<h2>Plots</h2>", "<h2>Configuration</h2>"] {
        assert!(html.contains(heading), "no {heading}");
    }

    // Every plot written as SVG is inline, verbatim; the exact-curvature one has no data
    // (the runs' two epochs make the top-1 error curves).
    let svgs: Vec<PathBuf> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "svg")).collect();
    assert_eq!(svgs.len(), 5, "{svgs:?}");
    assert_eq!(html.matches("<svg ").count(), svgs.len());
    for svg in &svgs {
        assert!(html.contains(read(svg).trim()), "{} is not inline", svg.display());
    }
    assert!(html.contains("Skipped: the runs have no exact-curvature records."));

    // Self-contained: nothing to fetch, no file next to it referred to.
    let without_namespace = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    for needle in ["src=", "href=", "http:", "https:", "url(", "@import", ".png", ".svg", "report.md"] {
        assert!(!without_namespace.contains(needle), "the page refers elsewhere: {needle:?}");
    }

    // Each run's config.json, pretty and escaped, with its directory.
    assert_eq!(html.matches("<details class=\"config\">").count(), 2);
    assert!(html.contains("&quot;depth&quot;: 3,"), "no pretty-printed configuration");
    assert!(html.contains("&quot;bn&quot;: true"), "the BN run's configuration is missing");

    // The revision is the one this tree is at (12 hex digits, maybe "-dirty"), or "unknown" without git.
    let revision = element(&html, "<code class=\"revision\">");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    match head {
        Ok(o) if o.status.success() => {
            let head = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(revision == head || revision == format!("{head}-dirty"), "revision {revision:?}, HEAD is {head}");
        }
        _ => assert_eq!(revision, "unknown"),
    }
    assert!(html.contains(&format!("kappa {} at git revision", env!("CARGO_PKG_VERSION"))));

    // The machine, as /proc and the OS tell it.
    let cores = std::thread::available_parallelism().unwrap().to_string();
    assert!(html.contains(&format!("<dt>cores</dt><dd>{cores}</dd>")), "no core count {cores}");
    for term in ["CPU", "memory", "OS", "kernel"] {
        let text = element(&html, &format!("<dt>{term}</dt><dd>"));
        assert!(!text.is_empty() && !text.starts_with("unknown"), "{term}: {text:?}");
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(element(&html, "<dt>kernel</dt><dd>"), kernel.trim());
    assert!(element(&html, "<dt>memory</dt><dd>").ends_with(" GiB"));
}

#[test]
fn a_page_heads_with_its_about_and_needs_the_svg_plots() {
    let dir = TempDir::new("html-about");
    let runs = two_runs(dir.path());
    let out = dir.path().join("report");
    let about = About { title: "fig <x>".into(), items: vec![("expected (paper)".into(), "κ & more".into())] };
    let opts = ReportOptions { html: true, about: Some(about), ..Default::default() };
    let summary = render(&runs, &out, &opts).unwrap();
    assert_eq!(summary.html.as_deref(), Some(out.join("report.html").as_path()));
    let html = read(&out.join("report.html"));
    assert!(html.contains("<title>fig &lt;x&gt;</title>") && html.contains("<h1>fig &lt;x&gt;</h1>"));
    assert!(html.contains("<dt>expected (paper)</dt><dd>κ &amp; more</dd>"));

    let none = render(&runs, &dir.path().join("plain-report"), &ReportOptions::default()).unwrap();
    assert!(none.html.is_none() && !dir.path().join("plain-report/report.html").exists(), "a page nobody asked for");

    let png_only = ReportOptions { html: true, formats: vec![Format::Png], ..Default::default() };
    let e = render(&runs, &dir.path().join("png"), &png_only).unwrap_err().to_string();
    assert!(e.contains("svg"), "{e}");
}

#[test]
fn a_script_reproduction_gets_a_page_with_what_it_measured() {
    let dir = TempDir::new("html-script");
    let out = dir.path().join("recon");
    let o = kappa(&["reproduce", "luckmatters-recon", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let page = out.join("report.html");
    assert!(stdout.contains(&format!("page: {}", page.display())), "{stdout}");
    let html = read(&page);
    assert!(html.contains("<h1>kappa reproduce luckmatters-recon</h1>"));
    for term in ["description", "expected (paper)", "scale", "CPU", "kernel"] {
        assert!(html.contains(&format!("<dt>{term}</dt>")), "no {term}");
    }
    // The measured text is what the command printed, escaped.
    let measured = element(&html, "<pre class=\"measured\">");
    let first = measured.lines().next().unwrap();
    assert!(!first.is_empty() && stdout.contains(&first.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")), "{measured}");
    // The script's claims are judged like a training preset's, on the terminal and on the page.
    let claim = "the lowest layer recovers the teacher's nodes: best mean correlation at least 0.99 (paper ≈ 0.999)";
    assert!(stdout.contains(&format!("] {claim}\n      layer 0: best mean ")), "{stdout}");
    assert!(html.contains("<h2>The paper&#39;s claims against the measurements</h2>"), "no verdicts on the page");
    assert!(html.contains(&format!("<td>{}</td>", claim.replace('\'', "&#39;"))), "no claim row in the page");
}

/// `KAPPA_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KAPPA_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n))).find(|p| p.is_file())
}

/// Renders `page` in headless Chromium at 1280×2000; the screenshot's RGB pixels.
fn screenshot(browser: &Path, page: &Path, dir: &Path) -> Vec<[u8; 3]> {
    use std::os::unix::process::CommandExt;
    let shot = dir.join("shot.png");
    let _ = std::fs::remove_file(&shot);
    let log = dir.join("chromium.log");
    let profile = dir.join("profile");
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,2000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        // Its own process group, so a hung browser goes with its helpers.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!("{} took over 60 s to render {}; its log:\n{}", browser.display(), page.display(), read(&log));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success() && shot.is_file(),
        "{} failed ({status}) to screenshot {}:\n{}",
        browser.display(),
        page.display(),
        read(&log)
    );

    let mut decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 2000), "the screenshot is not the window size");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "expected an RGB(A) screenshot, got {:?}", info.color_type);
    buf[..info.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect()
}

/// How much of a screenshot is drawn on: the share of pixels away from the
/// commonest (background) colour, the number of distinct colours, and the
/// pixels near each of the first two plot series' colours (plots.rs).
struct Ink {
    drawn: f64,
    colours: usize,
    series: [usize; 2],
}

fn ink(pixels: &[[u8; 3]]) -> Ink {
    let mut counts = std::collections::HashMap::new();
    for p in pixels {
        *counts.entry(*p).or_insert(0usize) += 1;
    }
    let background = *counts.iter().max_by_key(|(_, n)| **n).unwrap().0;
    let near = |a: [u8; 3], b: [u8; 3], tolerance: u8| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance);
    let drawn = pixels.iter().filter(|p| !near(**p, background, 8)).count() as f64 / pixels.len() as f64;
    let series = [[31, 119, 180], [255, 127, 14]].map(|c| pixels.iter().filter(|p| near(**p, c, 12)).count());
    Ink { drawn, colours: counts.len(), series }
}

#[test]
fn chromium_renders_the_page_with_its_plots() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("no Chromium (KAPPA_CHROMIUM, or chromium / chromium-browser on PATH): `apt-get install chromium` (CI installs it in .ci/run)");
        }
        println!("SKIPPED: no Chromium to render report.html (set KAPPA_CHROMIUM or `apt-get install chromium`)");
        return;
    };
    let dir = TempDir::new("html-chromium");
    let runs = two_runs(dir.path());
    let page = report_html(&runs, &dir.path().join("report"));

    // The check tells an empty page from a drawn one: the same browser, an empty body.
    let empty = dir.write("empty.html", b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body></body></html>");
    let blank = ink(&screenshot(&browser, &empty, dir.path()));
    assert!(
        blank.drawn < 0.001 && blank.colours <= 2,
        "an empty page should render blank: {:.4} drawn, {} colours",
        blank.drawn,
        blank.colours
    );

    let shown = ink(&screenshot(&browser, &page, dir.path()));
    println!(
        "report.html in {}: {:.1}% of pixels drawn, {} colours, {} and {} pixels of the first two series' colours",
        browser.display(),
        100.0 * shown.drawn,
        shown.colours,
        shown.series[0],
        shown.series[1]
    );
    assert!(shown.drawn > 0.03, "the page renders nearly blank: {:.2}% drawn", 100.0 * shown.drawn);
    assert!(shown.colours > 50, "only {} colours: no antialiased text or plots", shown.colours);
    // Two runs are two series, blue and orange, in the plots at the top of the page.
    assert!(shown.series.iter().all(|&n| n > 200), "the plots' series are not visible: {:?} pixels", shown.series);
}
