//! `paceline demo` end to end, checked against `paceline replay` of the same generated
//! events: the table it prints, and the status page as headless Chromium renders it (with
//! JavaScript on and off), plus a screenshot that must not be blank.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paceline_model::config::Config;
use paceline_model::point::Fields;
use paceline_model::time::format_plan_time;
use paceline_model::Nanos;
use paceline_tests::page::planned_rows;
use paceline_tests::services::{free_port, get, wait_for, Proc};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paceline-demo-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What replay computes from the same events: each planned series' newest (tick, fields).
fn replay_planned(seed: u64, scale: &str, dir: &Path) -> BTreeMap<String, (Nanos, Fields)> {
    let events = dir.join("events.jsonl");
    let gen = bin()
        .args([
            "generate",
            "--seed",
            &seed.to_string(),
            "--scale",
            scale,
            "--out",
        ])
        .arg(&events)
        .output()
        .expect("generate runs");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let out = dir.join("out.lp");
    let rep = bin()
        .arg("replay")
        .arg("--input")
        .arg(&events)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letters")
        .arg(dir.join("dl.jsonl"))
        .output()
        .expect("replay runs");
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("replay output");
    let points = paceline_oracle::lp::parse(&text).expect("line protocol");
    Config::default()
        .plan_specs()
        .iter()
        .filter_map(|p| {
            let (tick, fields) = points.get(&p.series)?.iter().next_back()?;
            Some((p.series.display(), (*tick, *fields)))
        })
        .collect()
}

/// A printed number agrees with `actual` to the decimals it shows.
fn printed_matches(cell: &str, actual: Option<f64>) -> bool {
    match (cell, actual) {
        ("–", None) => true,
        (_, Some(v)) => {
            let text = cell.replace(',', "");
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
            text.parse::<f64>().is_ok_and(|p| {
                (p - v).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9 * v.abs()
            })
        }
        _ => false,
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn demo_table_equals_replay_of_the_same_events() {
    let dir = tmp("table");
    let expected = replay_planned(7, "0.05", &dir);
    let out = bin()
        .args(["demo", "--until-done", "--seed", "7", "--scale", "0.05"])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Planned indicators at their last tick"))
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let plans = Config::default().plan_specs();
    assert_eq!(table.len(), plans.len(), "one row per plan item:\n{stdout}");
    assert!(
        expected.len() >= plans.len() - 1,
        "replay wrote the planned series"
    );
    for (row, plan) in table.iter().zip(&plans) {
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let name = plan.series.display();
        assert_eq!(cells[0], name);
        let Some((tick, f)) = expected.get(&name) else {
            assert!(row.contains("no data yet"), "{row}");
            continue;
        };
        assert_eq!(cells.len(), 8, "{row}");
        let when = format_plan_time(*tick);
        assert_eq!(
            cells[1],
            format!("{} {}", &when[..10], &when[11..16]),
            "{name} tick"
        );
        assert!(
            printed_matches(cells[2], Some(f.value)),
            "{name} value: {row} vs {f:?}"
        );
        assert!(
            printed_matches(cells[3], f.expected),
            "{name} expected: {row} vs {f:?}"
        );
        assert!(
            printed_matches(cells[4], f.target),
            "{name} target: {row} vs {f:?}"
        );
        assert!(
            printed_matches(cells[5], f.pace_ratio),
            "{name} pace: {row} vs {f:?}"
        );
        let status = f
            .status
            .map_or("no plan yet".to_string(), |s| s.as_str().replace('_', " "));
        assert_eq!(cells[6], status, "{name} status");
        assert!(
            printed_matches(cells[7], f.projected),
            "{name} projected: {row} vs {f:?}"
        );
    }
}

/// A child process killed on drop, whatever the test's outcome.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> String {
    std::env::var("PACELINE_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium with `args` on `url`; its standard output.
fn chromium_run(args: &[String], url: &str, profile: &Path) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/test installs Debian's chromium)",
            chromium()
        )
    });
    let mut child = Killed(child);
    let mut stdout = child.0.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not finish in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().expect("reader")
}

fn check_page(dom: &str, expected: &BTreeMap<String, (Nanos, Fields)>, how: &str) {
    let rows = planned_rows(dom);
    let plans = Config::default().plan_specs();
    assert_eq!(
        rows.len(),
        plans.len(),
        "{how}: one row per planned indicator"
    );
    for plan in &plans {
        let name = plan.series.display();
        let row = rows
            .get(&name)
            .unwrap_or_else(|| panic!("{how}: no row for {name}"));
        assert!(
            row.has_chart() && !row.value_line().is_empty(),
            "{how}: {name} has a chart"
        );
        let Some((tick, f)) = expected.get(&name) else {
            continue;
        };
        assert_eq!(
            row.attr("data-tick"),
            Some(tick.to_string().as_str()),
            "{how}: {name} tick"
        );
        for (a, want) in [
            ("data-value", Some(f.value)),
            ("data-expected", f.expected),
            ("data-target", f.target),
            ("data-pace-ratio", f.pace_ratio),
            ("data-projected", f.projected),
        ] {
            let got = row.number(a);
            assert!(
                match (got, want) {
                    (Some(g), Some(w)) => close(g, w),
                    (None, None) => true,
                    _ => false,
                },
                "{how}: {name} {a}: page {got:?}, replay {want:?}"
            );
        }
        let status = f.status.map(|s| s.as_str()).unwrap_or_default();
        assert_eq!(
            row.attr("data-status"),
            Some(status),
            "{how}: {name} status"
        );
        if let Some(s) = f.status {
            let label = s.as_str().replace('_', " ");
            assert!(
                row.body.contains(&label),
                "{how}: {name} shows its status as text"
            );
        }
    }
}

/// Distinct colours and the share of pixels that are not the page's white.
fn screenshot_stats(path: &Path) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    let mut total = 0usize;
    for px in pixels.chunks(channels) {
        let rgb = (px[0], px[1], px[2.min(channels - 1)]);
        colours.insert(rgb);
        total += 1;
        if rgb.0 < 240 || rgb.1 < 240 || rgb.2 < 240 {
            inked += 1;
        }
    }
    (colours.len(), inked as f64 / total.max(1) as f64)
}

#[test]
fn status_page_in_chromium_shows_replays_numbers() {
    let dir = tmp("page");
    let expected = replay_planned(11, "0.05", &dir);
    let port = free_port();
    let mut cmd = bin();
    cmd.args(["demo", "--seed", "11", "--scale", "0.05", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"));
    let mut demo = Proc::spawn(cmd, &dir.join("demo.log"));
    let page = format!("http://127.0.0.1:{port}/");
    wait_for("the demo's status page", Duration::from_secs(120), || {
        assert!(demo.running(), "demo exited: {}", demo.log_text());
        get(&page).is_some_and(|(status, _)| status == 200)
    });
    let url = format!("http://127.0.0.1:{port}/");

    let with_js = chromium_run(&["--dump-dom".into()], &url, &dir.join("profile-js"));
    check_page(&with_js, &expected, "JavaScript on");
    let without_js = chromium_run(
        &["--disable-javascript".into(), "--dump-dom".into()],
        &url,
        &dir.join("profile-nojs"),
    );
    check_page(&without_js, &expected, "JavaScript off");

    let shot = dir.join("status-page.png");
    chromium_run(
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1700".into(),
        ],
        &url,
        &dir.join("profile-shot"),
    );
    let (colours, inked) = screenshot_stats(&shot);
    assert!(
        colours >= 16,
        "the screenshot has {colours} colours: blank?"
    );
    assert!(
        (0.01..0.9).contains(&inked),
        "inked share {inked}: blank or all dark?"
    );
    // `PACELINE_SCREENSHOT_OUT=docs/status-page.png` refreshes the README's picture.
    if let Ok(out) = std::env::var("PACELINE_SCREENSHOT_OUT") {
        std::fs::copy(&shot, out).expect("copy the screenshot");
    }

    // Ctrl-C (SIGINT) stops the demo cleanly.
    demo.signal("INT");
    let code = demo.wait(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "demo exits 0 on Ctrl-C:\n{}",
        demo.log_text()
    );
}
