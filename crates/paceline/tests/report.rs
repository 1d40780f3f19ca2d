//! `paceline report` against a real InfluxDB 1.x holding a replay's output: every number
//! of the briefing equals the database's newest point at or before `--as-of` (asked of the
//! database by this test with its own query), every status change between the two dates
//! (read from replay's own output) is listed, verdicts are shown; headless Chromium prints
//! it on one or two A4 pages in English and in Chinese; an unreachable database exits 1
//! with its address named.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paceline_model::config::Config;
use paceline_model::point::Status;
use paceline_model::time::parse_rfc3339;
use paceline_tests::page::strip_tags;
use paceline_tests::services::{chromium, free_port, Influx1, TempDir};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
}

/// Writes a generated district's replay output into database `db`; the output's text.
fn load(influx: &Influx1, dir: &Path, db: &str) -> String {
    let events = dir.join("events.jsonl");
    paceline_generate::generate_to_file(9, 0.05, &events).expect("events");
    let opts = paceline_runtime::ReplayOptions {
        inputs: vec![events],
        output: dir.join("out.lp"),
        dead_letters: dir.join("dl.jsonl"),
    };
    paceline_runtime::replay(&paceline_runtime::settings::Settings::default(), &opts)
        .expect("replay");
    let lp = std::fs::read_to_string(&opts.output).expect("output");
    influx.query("", &format!("CREATE DATABASE {db}"));
    influx.write_lines(db, &lp);
    lp
}

/// Runs `paceline report` on database `db` of `url`.
fn report(url: &str, db: &str, args: &[&str], out: &Path) -> std::process::Output {
    bin()
        .arg("report")
        .args(args)
        .arg("--out")
        .arg(out)
        .env("PACELINE_INFLUX_API", "v1")
        .env("PACELINE_INFLUX_URL", url)
        .env("PACELINE_INFLUX_DB", db)
        .output()
        .expect("report runs")
}

/// `(series, attributes)` of each goal row of the briefing.
fn goal_rows(html: &str) -> Vec<(String, String)> {
    html.split(r#"<tr class="goal" "#)
        .skip(1)
        .map(|part| {
            let tag = part.split('>').next().unwrap_or_default().to_string();
            let series = attr(&tag, "data-series").unwrap_or_default().to_string();
            (series, tag)
        })
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Prints `html` to PDF with headless Chromium; the number of pages.
fn pdf_pages(html: &Path, dir: &Path) -> usize {
    let pdf = dir.join(format!(
        "{}.pdf",
        html.file_stem().expect("a file name").to_string_lossy()
    ));
    let mut child = chromium(&dir.join("profile"))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not print in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let bytes = std::fs::read(&pdf).expect("a PDF");
    let text = String::from_utf8_lossy(&bytes);
    // Page objects, not the page tree ("/Type /Pages").
    text.matches("/Type /Page").count() - text.matches("/Type /Pages").count()
}

#[test]
fn the_briefing_shows_the_database_at_its_date() {
    let dir = TempDir::new("report");
    let influx = Influx1::start();
    let lp = load(&influx, &dir.0, "briefing");
    let (points, verdicts) = paceline_oracle::lp::parse_all(&lp).expect("replay output");
    let as_of = "2025-03-31";
    let since = "2024-03-31";
    let as_of_t = parse_rfc3339("2025-03-31T00:00:00+08:00").unwrap();
    let since_t = parse_rfc3339("2024-03-31T00:00:00+08:00").unwrap();

    for lang in ["en", "zh"] {
        let out = dir.join(&format!("briefing-{lang}.html"));
        let run = report(
            &influx.url(),
            "briefing",
            &["--as-of", as_of, "--since", since, "--lang", lang],
            &out,
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let html = std::fs::read_to_string(&out).expect("the briefing");
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
            "self-contained: nothing fetched"
        );
        let rows = goal_rows(&html);
        let plans = Config::default().plan_specs();
        assert_eq!(rows.len(), plans.len(), "{lang}: one row per goal");
        for (plan, (series, tag)) in plans.iter().zip(&rows) {
            assert_eq!(series, &plan.series.display());
            // The database's newest point at or before the date, by this test's own query.
            let mut filter = format!("\"indicator\" = '{}'", plan.series.indicator.name());
            if let Some((k, v)) = plan.series.tag_pair() {
                filter.push_str(&format!(" AND \"{k}\" = '{v}'"));
            }
            let answer = influx.query(
                "briefing",
                &format!(
                    "SELECT \"value\", \"status\" FROM \"indicator\" WHERE {filter} AND time <= {as_of_t} ORDER BY time DESC LIMIT 1"
                ),
            );
            let row = &answer["results"][0]["series"][0]["values"][0];
            let tick = row[0].as_i64();
            assert_eq!(
                attr(tag, "data-tick").and_then(|t| t.parse::<i64>().ok()),
                tick,
                "{lang} {series}: tick"
            );
            let value = attr(tag, "data-value").and_then(|v| v.parse::<f64>().ok());
            assert_eq!(value, row[1].as_f64(), "{lang} {series}: value");
            assert_eq!(
                attr(tag, "data-status"),
                row[2].as_str().or(Some("")),
                "{lang} {series}"
            );
            // The verdict, where replay wrote one by then.
            let verdict = verdicts
                .get(&plan.series)
                .filter(|(t, ..)| *t <= as_of_t)
                .map(|(_, _, _, v)| v.as_str());
            assert_eq!(
                attr(tag, "data-verdict"),
                Some(verdict.unwrap_or("")),
                "{lang} {series}"
            );
        }
        assert!(
            verdicts.values().any(|(t, ..)| *t <= as_of_t),
            "the date is past some verdicts"
        );

        // Every status change between the dates, from replay's output.
        let mut expected = BTreeSet::new();
        for plan in &plans {
            let Some(ticks) = points.get(&plan.series) else {
                continue;
            };
            let mut held: Option<Status> = ticks
                .range(..=since_t)
                .next_back()
                .and_then(|(_, f)| f.status);
            for (t, f) in ticks.range(since_t + 1..=as_of_t) {
                if f.status != held {
                    expected.insert((plan.series.display(), *t));
                    held = f.status;
                }
            }
        }
        let listed: BTreeSet<(String, i64)> = html
            .split("<li data-series=\"")
            .skip(1)
            .map(|li| {
                let series = li.split('"').next().unwrap_or_default().to_string();
                let tick = attr(li, "data-tick")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                (series, tick)
            })
            .collect();
        assert!(
            !expected.is_empty(),
            "the year compared holds status changes"
        );
        assert_eq!(listed, expected, "{lang}: status changes");
        // Titles in the language.
        let title = match lang {
            "en" => "Quasi-unicorn enterprises",
            _ => "准独角兽企业",
        };
        assert!(strip_tags(&html).contains(title), "{lang}: titles");

        let pages = pdf_pages(&out, &dir.0);
        assert!((1..=2).contains(&pages), "{lang}: {pages} A4 pages");
        // `PACELINE_BRIEFING_SHOT_OUT=docs/briefing.png` refreshes the README's picture.
        if let (Ok(shot), "en") = (std::env::var("PACELINE_BRIEFING_SHOT_OUT"), lang) {
            let status = chromium(&dir.join("profile-shot"))
                .arg("--window-size=900,1270")
                .arg(format!("--screenshot={shot}"))
                .arg(format!("file://{}", out.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("chromium");
            assert!(status.success());
        }
    }
}

#[test]
fn an_unreachable_database_is_named() {
    let dir = TempDir::new("report-unreachable");
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = dir.join("b.html");
    let run = report(&url, "x", &["--as-of", "2025-03-31"], &out);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_empty_database_and_a_date_before_the_data_are_explained() {
    let dir = TempDir::new("report-empty");
    let influx = Influx1::start();
    influx.query("", "CREATE DATABASE empty");
    let out = dir.join("b.html");
    let run = report(&influx.url(), "empty", &["--as-of", "2025-03-31"], &out);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("no `indicator` points") && err.contains("empty"),
        "{err}"
    );

    load(&influx, &dir.0, "full");
    let run = report(&influx.url(), "full", &["--as-of", "1999-01-01"], &out);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("--as-of 1999-01-01 is before the first point"),
        "{err}"
    );
    let run = report(&influx.url(), "full", &["--as-of", "yesterday"], &out);
    assert_eq!(run.status.code(), Some(2));
}
