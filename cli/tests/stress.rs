//! The service under load: many walkers in a few runtimes while other runtimes come and go.
//! The walkers are this test binary run again with `SPFS_STRESS_WALKER` set, so each is a real
//! process that the router routes by its ancestry.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Runtimes that stay registered through the stress test, each walked by [`WALKERS`] processes.
const STRESS_RUNTIMES: usize = 4;
const WALKERS: usize = 8;
/// Files per directory and directories per stress layer.
const STRESS_FILES: usize = 10;
const STRESS_DIRS: usize = 4;

/// The text of `rel` in stress view `view`: every file names its view, so a read answered from
/// the wrong view is caught.
fn stress_content(view: &str, rel: &str) -> String {
    format!("{view}:{rel}\n")
}

fn stress_paths() -> Vec<String> {
    let mut paths = vec!["marker".to_owned()];
    for d in 0..STRESS_DIRS {
        for f in 0..STRESS_FILES {
            paths.push(format!("d{d}/f{f}"));
        }
    }
    paths
}

/// One walker of the stress test, when this binary is run again with `SPFS_STRESS_WALKER` set
/// (to `<view> <mount point> <seconds> <report dir>`): stats, lists and reads its view until
/// the time is up, then writes `ok=N wrong=N errors=N first=<first problem>` to a file of its
/// own in the report directory (a shared pipe would interleave the test harness's output with
/// the report). Otherwise it does nothing.
#[test]
fn stress_walker() {
    let Ok(job) = std::env::var("SPFS_STRESS_WALKER") else {
        return;
    };
    let mut job = job.split(' ');
    let (view, mount, seconds, reports) = (
        job.next().unwrap().to_owned(),
        PathBuf::from(job.next().unwrap()),
        job.next().unwrap().parse::<u64>().unwrap(),
        PathBuf::from(job.next().unwrap()),
    );
    let paths = stress_paths();
    let mut listing = vec![format!("only-{view}"), "marker".to_owned()];
    listing.extend((0..STRESS_DIRS).map(|d| format!("d{d}")));
    listing.sort();
    let (mut ok, mut wrong, mut errors, mut first) = (0u64, 0u64, 0u64, String::new());
    let note = |problem: String, first: &mut String| {
        if first.is_empty() {
            *first = problem;
        }
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for rel in &paths {
            let path = mount.join(rel);
            match std::fs::metadata(&path).and_then(|_| std::fs::read_to_string(&path)) {
                Ok(text) if text == stress_content(&view, rel) => ok += 1,
                Ok(text) => {
                    wrong += 1;
                    note(format!("{rel}: read {text:?}"), &mut first);
                }
                Err(err) => {
                    errors += 1;
                    note(format!("{rel}: {err}"), &mut first);
                }
            }
        }
        match std::fs::read_dir(&mount).and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(mut names) => {
                names.sort();
                if names == listing {
                    ok += 1;
                } else {
                    wrong += 1;
                    note(format!("listed {names:?}"), &mut first);
                }
            }
            Err(err) => {
                errors += 1;
                note(format!("listing: {err}"), &mut first);
            }
        }
    }
    std::fs::write(
        reports.join(format!("{view}-{}", std::process::id())),
        format!("ok={ok} wrong={wrong} errors={errors} first={first}"),
    )
    .unwrap();
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 32 processes in 4 runtimes walk, stat, list and read their views for 20 s
/// (`SPFS_STRESS_SECONDS` for a longer run) while other runtimes are registered and removed
/// every 100 ms: no answer comes from the wrong view, no read fails, nothing deadlocks, and the
/// service's memory comes back near its starting size.
#[test]
fn stress_walkers_see_only_their_views_while_runtimes_churn() {
    let seconds: u64 = std::env::var("SPFS_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let env = Env::new();
    let mut layers = Vec::new();
    for v in 0..STRESS_RUNTIMES {
        let view = format!("v{v}");
        let layer = env.path().join(format!("stress-{view}"));
        for rel in stress_paths() {
            let path = layer.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, stress_content(&view, &rel)).unwrap();
        }
        std::fs::create_dir_all(layer.join(format!("only-{view}"))).unwrap();
        layers.push((view, layer.to_str().unwrap().to_owned()));
    }
    let service = env.service();
    let service_pid = service.pid();

    // Each root: a shell that waits for a line, then starts its walkers and waits for them.
    let exe = std::env::current_exe().unwrap();
    let reports = env.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let mut roots = Vec::new();
    for (view, layer) in &layers {
        let script = format!(
            "read go; for i in $(seq {WALKERS}); do \"$0\" --exact stress_walker --nocapture --test-threads=1 & done; wait"
        );
        let mut root = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&exe)
            .env(
                "SPFS_STRESS_WALKER",
                format!(
                    "{view} {} {seconds} {}",
                    env.mountpoint().display(),
                    reports.display()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ok(&env.run(&["mount", "--root-process", &root.id().to_string(), layer]));
        roots.push((view.clone(), root.stdin.take().unwrap(), root));
    }
    let rss_before = rss_kib(service_pid);
    for (_, stdin, _) in &mut roots {
        use std::io::Write;
        writeln!(stdin, "go").unwrap();
    }

    // Churn: a runtime registered and the previous one removed every 100 ms.
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut previous: Option<Sleeper> = None;
    let mut churned = 0;
    while Instant::now() < until {
        let next = Sleeper::as_uid(0);
        let layer = &layers[churned % layers.len()].1;
        ok(&env.run(&["mount", "--root-process", &next.pid(), layer]));
        if let Some(old) = previous.replace(next) {
            ok(&env.run(&["unmount", "--root-process", &old.pid()]));
        }
        churned += 1;
        // Paced from start to start: the two client calls eat into the 100 ms.
        let next = started + Duration::from_millis(100) * churned as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    if let Some(old) = previous.take() {
        ok(&env.run(&["unmount", "--root-process", &old.pid()]));
    }

    let mut totals = (0u64, 0u64, 0u64);
    for (view, stdin, root) in roots {
        drop(stdin);
        let out = root.wait_with_output().unwrap();
        assert!(out.status.success(), "view {view}: {out:?}");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(&reports).unwrap() {
            let entry = entry.unwrap();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{view}-"))
            {
                texts.push(std::fs::read_to_string(entry.path()).unwrap());
            }
        }
        assert_eq!(
            texts.len(),
            WALKERS,
            "view {view}: {} walkers reported: {texts:?}; they said {}",
            texts.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        for report in &texts {
            let field = |name: &str| -> u64 {
                report
                    .split(' ')
                    .find_map(|f| f.strip_prefix(name))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (good, wrong, errors) = (field("ok="), field("wrong="), field("errors="));
            assert_eq!((wrong, errors), (0, 0), "view {view}: {report}");
            assert!(good > 0, "view {view}: {report}");
            totals.0 += good;
            totals.1 += wrong;
            totals.2 += errors;
        }
    }
    // The churned runtimes are gone; give the service a moment to free what they held.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(service_pid);
    eprintln!(
        "stress: {seconds} s, {} walkers, {churned} runtimes churned, {} good answers, service RSS {rss_before} KiB before, {rss_after} KiB after",
        STRESS_RUNTIMES * WALKERS,
        totals.0
    );
    assert!(
        churned as u64 >= seconds * 3,
        "only {churned} runtimes churned"
    );
    assert!(
        rss_after <= rss_before + rss_before / 2 + 8 * 1024,
        "service memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The walkers' roots have exited, and their runtimes went with them.
    eventually("the walked runtimes to end with their roots", || {
        status_json(&env)["runtimes"].as_array().unwrap().is_empty()
    });
}
