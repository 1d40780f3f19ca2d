//! `paceline demo` end to end, checked against `paceline replay` of the same generated
//! events: the table it prints (by title, in English and Chinese), and the status page as
//! headless Chromium renders it (with JavaScript on and off, in both languages, chosen by
//! the address, the configuration and the browser), plus a screenshot that must not be
//! blank.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paceline_model::config::Config;
use paceline_model::names::Lang;
use paceline_model::point::{Fields, Verdict};
use paceline_model::time::format_plan_time;
use paceline_model::Nanos;
use paceline_tests::page::{cell_text, planned_rows, shows, strip_tags};
use paceline_tests::services::{free_port, get, wait_for, Proc};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paceline-demo-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What replay computes from the same events: each planned series' newest (tick, fields)
/// and its verdict once judged (tick, verdict).
struct Replayed {
    newest: BTreeMap<String, (Nanos, Fields)>,
    verdicts: BTreeMap<String, (Nanos, Verdict)>,
}

fn replay_planned(seed: u64, scale: &str, dir: &Path) -> Replayed {
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
    let (points, verdicts) = paceline_oracle::lp::parse_all(&text).expect("line protocol");
    let plans = Config::default().plan_specs();
    Replayed {
        newest: plans
            .iter()
            .filter_map(|p| {
                let (tick, fields) = points.get(&p.series)?.iter().next_back()?;
                Some((p.series.display(), (*tick, *fields)))
            })
            .collect(),
        verdicts: plans
            .iter()
            .filter_map(|p| {
                let (tick, _, _, v) = verdicts.get(&p.series)?;
                Some((p.series.display(), (*tick, *v)))
            })
            .collect(),
    }
}

/// The day of a tick in the plan's time zone: `2025-02-15`.
fn plan_day(t: Nanos) -> String {
    format_plan_time(t)[..10].to_string()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The demo's table in `lang`: one row of trimmed cells per plan item.
fn demo_table(seed: &str, lang: &str) -> Vec<Vec<String>> {
    let out = bin()
        .args([
            "demo",
            "--until-done",
            "--seed",
            seed,
            "--scale",
            "0.05",
            "--lang",
            lang,
        ])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Planned indicators at their last tick"))
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|row| {
            row.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn demo_table_equals_replay_of_the_same_events_in_both_languages() {
    let dir = tmp("table");
    let replayed = replay_planned(7, "0.05", &dir);
    let plans = Config::default().plan_specs();
    assert!(
        replayed.newest.len() >= plans.len() - 1,
        "replay wrote the planned series"
    );
    assert!(
        !replayed.verdicts.is_empty(),
        "the demo's data reaches some verdict ticks"
    );
    for lang in Lang::ALL {
        let table = demo_table("7", lang.code());
        assert_eq!(table.len(), plans.len(), "{lang:?}: one row per plan item");
        for (cells, plan) in table.iter().zip(&plans) {
            let name = plan.series.display();
            // Hand-typed titles of two rows; the rest from the catalogue.
            let title = match (name.as_str(), lang) {
                ("quasi_unicorns", Lang::Zh) => "准独角兽企业".to_string(),
                ("core_industry_revenue_cny", Lang::En) => {
                    "Core digital-economy industry revenue, last four quarters".to_string()
                }
                _ => plan.series.title(lang),
            };
            assert_eq!(cells[0], title, "{lang:?} {name}");
            let Some((tick, f)) = replayed.newest.get(&name) else {
                assert!(
                    cells[2] == "no data yet" || cells[2] == "暂无数据",
                    "{cells:?}"
                );
                continue;
            };
            assert_eq!(cells.len(), 9, "{cells:?}");
            let when = format_plan_time(*tick);
            assert_eq!(
                cells[1],
                format!("{} {}", &when[..10], &when[11..16]),
                "{name} tick"
            );
            for (i, field, want) in [
                (2, "value", Some(f.value)),
                (3, "expected", f.expected),
                (4, "target", f.target),
                (5, "pace", f.pace_ratio),
                (7, "projected", f.projected),
            ] {
                assert!(
                    shows(&cells[i], want),
                    "{lang:?} {name} {field}: `{}` vs {want:?}",
                    cells[i]
                );
            }
            let status = f.status.map(|s| s.title().get(lang));
            if let Some(status) = status {
                assert_eq!(cells[6], status, "{name} status");
            }
            let verdict = &cells[8];
            match replayed.verdicts.get(&name) {
                Some((t, v)) => {
                    assert!(
                        verdict.starts_with(v.title().get(lang)) && verdict.contains(&plan_day(*t)),
                        "{lang:?} {name}: verdict `{verdict}`, replay {v:?} at {}",
                        plan_day(*t)
                    );
                }
                None => assert!(
                    verdict.contains(&plan_day(plan.verdict_tick)),
                    "{name}: `{verdict}` names the day it will be judged"
                ),
            }
        }
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

/// Runs headless Chromium with `args` on `url`; its standard output.
fn chromium_run(args: &[String], url: &str, profile: &Path) -> String {
    let mut cmd = paceline_tests::services::chromium(profile);
    cmd.args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("chromium: {e} (scripts/test installs Debian's chromium)"));
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

/// The API's newest fields of each series, by series name (`name{k=v}`).
fn api_series(port: u16) -> BTreeMap<String, serde_json::Value> {
    let (status, body) = get(&format!("http://127.0.0.1:{port}/api/v1/indicators")).expect("API");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    json["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let mut name = s["indicator"].as_str().unwrap_or_default().to_string();
            if let Some((k, v)) = s["tags"].as_object().and_then(|t| t.iter().next()) {
                name = format!("{name}{{{k}={}}}", v.as_str().unwrap_or_default());
            }
            (name, s.clone())
        })
        .collect()
}

/// The page as `lang` shows it: each planned row by its title, the numbers shown equal
/// to the API's in the row's unit and rounding and its exact `data-` numbers equal to
/// replay's, verdict badges where replay judged one.
fn check_page(
    dom: &str,
    replayed: &Replayed,
    api: &BTreeMap<String, serde_json::Value>,
    lang: Lang,
    how: &str,
) {
    let html_lang = match lang {
        Lang::En => r#"<html lang="en""#,
        Lang::Zh => r#"<html lang="zh-CN""#,
    };
    assert!(dom.contains(html_lang), "{how}: the page is in {lang:?}");
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
        let shown_title = row
            .body
            .split(r#"<span class="title">"#)
            .nth(1)
            .and_then(|t| t.split("</span>").next())
            .map(strip_tags);
        assert_eq!(
            shown_title.as_deref(),
            Some(plan.series.title(lang).as_str()),
            "{how}: {name} by its title"
        );
        assert!(
            row.has_chart() && !row.value_line().is_empty(),
            "{how}: {name} has a chart"
        );
        let Some((tick, f)) = replayed.newest.get(&name) else {
            continue;
        };
        assert_eq!(
            row.attr("data-tick"),
            Some(tick.to_string().as_str()),
            "{how}: {name} tick"
        );
        let from_api = &api[&name];
        for (field, a, want) in [
            ("value", "data-value", Some(f.value)),
            ("expected", "data-expected", f.expected),
            ("target", "data-target", f.target),
            ("pace_ratio", "data-pace-ratio", f.pace_ratio),
            ("projected", "data-projected", f.projected),
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
            let text = cell_text(row, field).unwrap_or_default();
            assert!(
                shows(&text, from_api[field].as_f64()),
                "{how}: {name} {field} shows `{text}`, the API says {}",
                from_api[field]
            );
        }
        let status = f.status.map(|s| s.as_str()).unwrap_or_default();
        assert_eq!(
            row.attr("data-status"),
            Some(status),
            "{how}: {name} status"
        );
        if let Some(s) = f.status {
            assert!(
                row.body.contains(s.title().get(lang)),
                "{how}: {name} shows its status as text"
            );
        }
        match replayed.verdicts.get(&name) {
            Some((t, v)) => {
                assert_eq!(row.attr("data-verdict"), Some(v.as_str()), "{how}: {name}");
                assert_eq!(row.attr("data-verdict-tick"), Some(t.to_string().as_str()));
                assert_eq!(from_api["verdict"].as_str(), Some(v.as_str()));
                let badge = format!("vd-{}", v.as_str());
                assert!(
                    row.body.contains(&badge) && row.body.contains(v.title().get(lang)),
                    "{how}: {name} has its verdict badge"
                );
            }
            None => assert_eq!(row.attr("data-verdict"), Some(""), "{how}: {name}"),
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
fn status_page_in_chromium_shows_replays_numbers_in_both_languages() {
    let dir = tmp("page");
    let replayed = replay_planned(11, "0.05", &dir);
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
    let api = api_series(port);

    let with_js = chromium_run(&["--dump-dom".into()], &url, &dir.join("profile-js"));
    check_page(&with_js, &replayed, &api, Lang::En, "JavaScript on");
    let without_js = chromium_run(
        &["--disable-javascript".into(), "--dump-dom".into()],
        &url,
        &dir.join("profile-nojs"),
    );
    check_page(&without_js, &replayed, &api, Lang::En, "JavaScript off");
    // Chinese by the address, and by the browser's Accept-Language.
    let by_query = chromium_run(
        &["--dump-dom".into()],
        &format!("{url}?lang=zh"),
        &dir.join("profile-zh-query"),
    );
    check_page(&by_query, &replayed, &api, Lang::Zh, "?lang=zh");
    let by_browser = chromium_run(
        &["--accept-lang=zh-CN,zh".into(), "--dump-dom".into()],
        &url,
        &dir.join("profile-zh-browser"),
    );
    check_page(
        &by_browser,
        &replayed,
        &api,
        Lang::Zh,
        "Accept-Language zh-CN",
    );
    // The address wins over the browser.
    let en_over_browser = chromium_run(
        &["--accept-lang=zh-CN,zh".into(), "--dump-dom".into()],
        &format!("{url}?lang=en"),
        &dir.join("profile-en-query"),
    );
    check_page(
        &en_over_browser,
        &replayed,
        &api,
        Lang::En,
        "?lang=en over zh-CN",
    );

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

/// A configured language (the demo's `--lang`, as `service.language` in serve) comes
/// before the browser's, and after the address's.
#[test]
fn configured_language_comes_before_the_browsers() {
    let dir = tmp("page-configured");
    let replayed = replay_planned(5, "0.02", &dir);
    let port = free_port();
    let mut cmd = bin();
    cmd.args([
        "demo",
        "--seed",
        "5",
        "--scale",
        "0.02",
        "--lang",
        "zh",
        "--http-addr",
    ])
    .arg(format!("127.0.0.1:{port}"));
    let mut demo = Proc::spawn(cmd, &dir.join("demo.log"));
    let url = format!("http://127.0.0.1:{port}/");
    wait_for("the demo's status page", Duration::from_secs(120), || {
        assert!(demo.running(), "demo exited: {}", demo.log_text());
        get(&url).is_some_and(|(status, _)| status == 200)
    });
    let api = api_series(port);
    let configured = chromium_run(
        &["--accept-lang=en-US,en".into(), "--dump-dom".into()],
        &url,
        &dir.join("profile-configured"),
    );
    check_page(
        &configured,
        &replayed,
        &api,
        Lang::Zh,
        "--lang zh over en-US",
    );
    let by_query = chromium_run(
        &["--accept-lang=en-US,en".into(), "--dump-dom".into()],
        &format!("{url}?lang=en"),
        &dir.join("profile-query"),
    );
    check_page(
        &by_query,
        &replayed,
        &api,
        Lang::En,
        "?lang=en over --lang zh",
    );
    demo.signal("INT");
    assert_eq!(demo.wait(Duration::from_secs(30)), Some(0));
}
