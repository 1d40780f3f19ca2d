//! A network cut between the processes of a cluster (Linux network namespaces; run as
//! root): process 1 lives in its own namespace behind a veth pair, the broker and the
//! database listen on the root side's address. The link is cut (the namespace's end set
//! down: packets vanish, nothing is closed or refused), and the process on the other side
//! stops within `cluster.peer_timeout_s` and a margin, naming the process it lost; the
//! link restored, both restart, resume from a checkpoint both hold, and the output is
//! equivalent to `paceline replay`'s.

use std::process::Command;
use std::time::{Duration, Instant};

use paceline_runtime::settings::InfluxApi;
use paceline_tests::services::{free_port, Influx1, Tansu, TempDir};
use paceline_tests::{
    assert_cluster_equals_replay, assert_cluster_resumed, create_topics, kafka, readback,
    scenario_config, topics, Dataset, Serve,
};

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the root one by a veth pair; removed on drop, also when
/// the test fails.
struct Netns {
    name: String,
    inside: String,
    /// The root side's address: the services listen there.
    host: String,
    /// The namespace side's address.
    guest: String,
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id();
        let net = format!("10.{}.{}", 200 + (id >> 16) % 50, (id >> 8) % 256);
        let ns = Netns {
            name: format!("plcut{id}"),
            inside: format!("plc{id}b"),
            host: format!("{net}.1"),
            guest: format!("{net}.2"),
        };
        let outside = format!("plc{id}a");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &ns.inside,
        ]);
        ip(&["link", "set", &ns.inside, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.host), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.guest),
            "dev",
            &ns.inside,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns.inside, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts (false) or restores (true) the link.
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", &self.inside, state]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the other end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const CLUSTER_SECRET: &str = "test-cut-link-secret-77c1";

#[test]
fn a_cut_link_stops_the_cluster_in_time_and_a_restart_resumes() {
    let ns = Netns::new();
    let tansu = Tansu::start_on(&ns.host);
    let influx = Influx1::start_on(&ns.host);
    let prefix = "cut";
    let db = "cut";
    create_topics(&tansu, prefix, 2);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(73, 4, false, &[]);
    let (t, _) = topics(prefix);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.dataflow.workers = 1;
    config.service.checkpoint_interval_s = 1;
    config.service.idle_watermark_follows_clock = false;
    config.cluster.connect_timeout_s = 60;
    config.cluster.peer_timeout_s = 5;
    let peers = [
        format!("{}:{}", ns.host, free_port()),
        format!("{}:{}", ns.guest, free_port()),
    ];
    let http = [
        format!("127.0.0.1:{}", free_port()),
        format!("{}:{}", ns.guest, free_port()),
    ];
    let start = |index: usize, dir: TempDir| -> Serve {
        let env = [
            ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
            ("PACELINE_INFLUX_API", "v1".to_string()),
            ("PACELINE_INFLUX_URL", influx.url()),
            ("PACELINE_INFLUX_DB", db.to_string()),
            ("PACELINE_PEERS", peers.join(",")),
            ("PACELINE_PROCESS_INDEX", index.to_string()),
            ("PACELINE_CLUSTER_SECRET", CLUSTER_SECRET.to_string()),
            ("PACELINE_HTTP_ADDR", http[index].clone()),
        ];
        let netns = (index == 1).then_some(ns.name.as_str());
        Serve::start_in_netns(dir, &config, &env, netns)
    };

    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let procs: Vec<Serve> = (0..2).map(|i| start(i, TempDir::new("cut"))).collect();
    paceline_tests::eventually("a checkpoint on both processes", 120, || {
        procs.iter().all(|p| {
            let m = p.metrics();
            m.sum("paceline_checkpoint_last_success_timestamp_seconds", &[]) > 0.0
                && m.sum("paceline_events_total", &[]) > 0.0
        })
    });

    // The cut: nothing closes, packets just vanish.
    ns.link(false);
    let cut_at = Instant::now();
    let mut procs = procs.into_iter();
    let (outside, inside) = (procs.next().unwrap(), procs.next().unwrap());
    let margin = Duration::from_secs(15);
    let (code, log, dir0) =
        outside.wait_exit(Duration::from_secs(config.cluster.peer_timeout_s) + margin);
    let took = cut_at.elapsed();
    assert_eq!(code, Some(1), "the process outside stops, exit 1:\n{log}");
    assert!(
        log.contains(&format!(
            "lost the connection to cluster process 1 ({})",
            peers[1]
        )),
        "it names the process it lost:\n{log}"
    );
    assert!(
        took < Duration::from_secs(config.cluster.peer_timeout_s) + margin,
        "within peer_timeout_s and a margin: {took:?}"
    );
    let (code, log, dir1) =
        inside.wait_exit(Duration::from_secs(config.cluster.peer_timeout_s) + margin);
    assert_eq!(
        code,
        Some(1),
        "the process behind the cut stops too:\n{log}"
    );

    // Restored: both resume from a checkpoint both hold; the rest of the input follows.
    ns.link(true);
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    let mut procs: Vec<Serve> = [dir0, dir1]
        .into_iter()
        .enumerate()
        .map(|(i, dir)| start(i, dir))
        .collect();
    assert_cluster_resumed(&procs);
    assert_cluster_equals_replay(
        &mut procs,
        &config,
        &data,
        || readback::influx1(&influx, db, &config.indicators.measurement),
        "after the cut",
    );
    for p in procs {
        p.kill();
    }
}
