//! `report.html`: one self-contained page per report or reproduction. The
//! plots are inlined as SVG and the tables are the markdown report's own,
//! converted, so the page always agrees with `report.md`; it adds each run's
//! configuration and what produced it (git revision, machine, date). Nothing
//! is loaded from elsewhere, so the file can be mailed or archived alone.

use super::markdown::{self, Rendered};
use super::read::Run;
use super::About;
use crate::error::{Error, Result};
use crate::files::read_file;
use std::fmt::Write;

/// The page of a report: `preface` (markdown) comes first, `seed_table` is
/// the markdown of the test errors over seeds; each run's `conditioning` line
/// heads the page with `about`.
pub fn report(
    runs: &[Run],
    preface: &str,
    seed_table: &str,
    plots: &[Rendered],
    conditioning: &[(String, String)],
    about: Option<&About>,
) -> Result<String> {
    let mut body = String::new();
    let mut md = preface.to_string();
    markdown::runs_table(&mut md, runs);
    md.push_str(seed_table);
    body.push_str(&from_markdown(&md));

    body.push_str("<h2>Plots</h2>\n");
    for rendered in plots {
        let figure = &rendered.plot.figure;
        let Some(svg) = rendered.files.iter().find(|f| f.extension().is_some_and(|e| e == "svg")) else {
            let _ = writeln!(body, "<h3>{}</h3>\n<p>Skipped: the runs have no {}.</p>", escape(&figure.title), escape(rendered.plot.needs));
            continue;
        };
        let text = std::fs::read_to_string(svg).map_err(|e| Error::data(svg, format!("cannot read the plot back for report.html: {e}")))?;
        // plotters writes a bare <svg> element (no XML prolog), which HTML takes inline as is.
        let _ = writeln!(body, "<figure>\n{}</figure>", text.trim());
    }

    let mut layers = String::from("## Layers at the last analysis\n\n");
    for run in runs {
        markdown::layer_tables(&mut layers, run);
    }
    body.push_str(&from_markdown(&layers));
    alerts(&mut body, runs);

    body.push_str("<h2>Configuration</h2>\n");
    for run in runs {
        let config = run.dir.join("config.json");
        let text = match read_file(&config) {
            Ok(bytes) => {
                let value: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::data(&config, format!("expected the run configuration (a JSON object): {e}")))?;
                serde_json::to_string_pretty(&value).map_err(|e| Error::data(&config, e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "(no config.json)".into(),
            Err(e) => return Err(Error::data(&config, e.to_string())),
        };
        let _ = writeln!(
            body,
            "<details class=\"config\"><summary>{} <span class=\"dim\">{}</span></summary>\n<pre>{}</pre></details>",
            escape(&run.name),
            escape(&run.dir.display().to_string()),
            escape(&text)
        );
    }
    let mut about = about.cloned().unwrap_or_else(|| About { title: "kappa report".into(), items: vec![] });
    about.items.extend(conditioning.iter().map(|(run, line)| (format!("measured: {run}"), line.clone())));
    Ok(page(&about, &body))
}

/// The page of an experiment that reports a measured text instead of runs.
pub fn measured(about: &About, measured: &str, preface: &str) -> String {
    page(about, &format!("{}<h2>Measured</h2>\n<pre class=\"measured\">{}</pre>\n", from_markdown(preface), escape(measured.trim_end())))
}

fn alerts(body: &mut String, runs: &[Run]) {
    body.push_str("<h2>Alerts</h2>\n");
    let items: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            run.alerts.iter().map(move |a| {
                let layer = Some(a.layer.as_str()).filter(|l| !l.is_empty()).map(|l| format!(", {}", escape(l))).unwrap_or_default();
                let detail = Some(a.detail.as_str()).filter(|d| !d.is_empty()).map(|d| format!(": {}", escape(d))).unwrap_or_default();
                format!("<li>{}, iteration {}{layer}: <strong>{}</strong>{detail}</li>", escape(&run.name), a.iteration, escape(&a.alert))
            })
        })
        .collect();
    if items.is_empty() {
        body.push_str("<p>None.</p>\n");
    } else {
        let _ = writeln!(body, "<ul>\n{}\n</ul>", items.join("\n"));
    }
    let warnings: Vec<String> = runs.iter().flat_map(super::warnings).map(|w| format!("<li>{}</li>", escape(&w))).collect();
    if !warnings.is_empty() {
        let _ = writeln!(body, "<h2>Warnings</h2>\n<ul>\n{}\n</ul>", warnings.join("\n"));
    }
}

const STYLE: &str = "
body { margin: 0; background: #fff; color: #222; font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 4px 10px; border: 1px solid #d8d8d8; vertical-align: top; }
th { background: #f0f3f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.about { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 8px; }
dl.about dt { font-weight: 600; }
dl.about dd { margin: 0; }
section.provenance { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 6px; padding: 10px 16px; font-size: 14px; }
figure { margin: 12px 0 24px; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 6px; padding: 10px; overflow-x: auto; font-size: 13px; }
details.config { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
.dim { color: #777; font-weight: normal; }
code { font-size: 13px; }
";

/// The whole document: the heading and `about`, where it came from, then `body`.
fn page(about: &About, body: &str) -> String {
    let mut html = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ =
        writeln!(html, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>", escape(&about.title));
    let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>", escape(&about.title));
    if !about.items.is_empty() {
        html.push_str(&definitions("about", about.items.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    }
    html.push_str("<section class=\"provenance\">\n");
    let revision = format!("<code class=\"revision\">{}</code>", escape(env!("KAPPA_GIT_REVISION")));
    let _ = writeln!(html, "<p>kappa {} at git revision {revision}, {}</p>", env!("CARGO_PKG_VERSION"), utc(now()));
    let machine = machine();
    html.push_str(&definitions("about machine", machine.iter().map(|(k, v)| (*k, v.as_str()))));
    html.push_str("</section>\n");
    html.push_str(body);
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

fn definitions<'a>(class: &str, items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut dl = format!("<dl class=\"{class}\">\n");
    for (term, text) in items {
        let _ = writeln!(dl, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(text));
    }
    dl.push_str("</dl>\n");
    dl
}

/// The machine the page was made on, from /proc and /etc/os-release; what
/// cannot be read (another OS) is "unknown", never an error.
fn machine() -> Vec<(&'static str, String)> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let field = |text: &str, key: &str| {
        text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
    };
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or("unknown".into(), |n| n.to_string());
    let memory = read("/proc/meminfo")
        .and_then(|m| field(&m, "MemTotal")?.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)));
    let os = read("/etc/os-release")
        .and_then(|r| r.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| std::env::consts::OS.into());
    let kernel = read("/proc/sys/kernel/osrelease").map_or("unknown".into(), |k| k.trim().to_string());
    vec![("CPU", format!("{cpu} ({})", std::env::consts::ARCH)), ("cores", cores), ("memory", memory), ("OS", os), ("kernel", kernel)]
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// "YYYY-MM-DD HH:MM UTC" from Unix seconds (Hinnant's days-to-civil algorithm).
fn utc(secs: u64) -> String {
    let (days, time) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", time / 3_600, time % 3_600 / 60)
}

/// The markdown the report writes (headings, pipe tables, paragraphs) as
/// HTML; a table's first row is its header and `---:` columns are numeric.
fn from_markdown(md: &str) -> String {
    let mut html = String::new();
    let lines: Vec<&str> = md.lines().map(str::trim).collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with('|') {
            let rows: Vec<Vec<String>> = lines[i..].iter().take_while(|l| l.starts_with('|')).map(|l| cells(l)).collect();
            i += rows.len();
            table(&mut html, &rows);
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            let _ = writeln!(html, "<h{hashes}>{}</h{hashes}>", escape(line[hashes..].trim()));
        } else if !line.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", escape(line));
        }
        i += 1;
    }
    html
}

fn table(html: &mut String, rows: &[Vec<String>]) {
    let Some(header) = rows.first() else { return };
    let numeric: Vec<bool> = rows.get(1).map_or(vec![], |sep| sep.iter().map(|c| c.ends_with(':')).collect());
    html.push_str("<table>\n<thead><tr>");
    for c in header {
        let _ = write!(html, "<th>{}</th>", escape(c));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows.iter().skip(2) {
        html.push_str("<tr>");
        for (j, c) in row.iter().enumerate() {
            let class = if numeric.get(j).copied().unwrap_or(false) { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{}</td>", escape(c));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
}

/// The cells of a pipe-table row; `\|` is a literal bar inside a cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.strip_prefix('|').unwrap_or(row);
    let inner = inner.strip_suffix('|').filter(|s| !s.ends_with('\\')).unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cells.last_mut().unwrap().push(chars.next().unwrap()),
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Text safe in HTML content and in quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400 + 13 * 3_600 + 7 * 60 + 59), "2000-02-29 13:07 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59 UTC");
        assert_eq!(utc(4_102_444_800), "2100-01-01 00:00 UTC");
    }

    #[test]
    fn markdown_tables_become_escaped_html_tables() {
        let md = "## Runs <1>\n\n| run | loss |\n| --- | ---: |\n| a\\|b <&> | 0.5 |\n\nNo analysis records.\n";
        let html = from_markdown(md);
        assert_eq!(
            html,
            "<h2>Runs &lt;1&gt;</h2>\n<table>\n<thead><tr><th>run</th><th>loss</th></tr></thead>\n<tbody>\n\
             <tr><td>a|b &lt;&amp;&gt;</td><td class=\"num\">0.5</td></tr>\n</tbody>\n</table>\n<p>No analysis records.</p>\n"
        );
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
