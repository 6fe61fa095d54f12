//! The watcher with real files in a temporary directory: each test waits for the reported
//! outcome with a deadline (no sleeps as synchronisation).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use hookrelay_config::{EnvLookup, Live, ReloadOutcome, Snapshot, Source};
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(10);

fn config(endpoint: &str) -> String {
    format!(
        "upstream: 127.0.0.1:3000\nendpoints:\n  - name: {endpoint}\n    url: https://{endpoint}.example.com/hooks\n"
    )
}

fn no_env() -> Arc<EnvLookup> {
    Arc::new(|_: &str| None)
}

/// The hash of `text` as configuration: of its resolved values.
fn hash(text: &str) -> String {
    Snapshot::try_from(&Source::new("t.yaml", text.as_bytes().to_vec()).with_env(no_env()))
        .expect("valid")
        .hash
}

/// The hash of `text`'s bytes.
fn file_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Outcomes until one matches `want` (returned with the ones before it), or the deadline.
fn wait_for(
    rx: &Receiver<ReloadOutcome>,
    want: impl Fn(&ReloadOutcome) -> bool,
) -> (ReloadOutcome, Vec<ReloadOutcome>) {
    let end = Instant::now() + DEADLINE;
    let mut before = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(o) if want(&o) => return (o, before),
            Ok(o) => before.push(o),
            Err(RecvTimeoutError::Timeout) => panic!("no matching outcome in time; saw {before:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("outcome channel closed"),
        }
    }
}

fn applied(o: &ReloadOutcome) -> bool {
    matches!(o, ReloadOutcome::Applied { .. })
}

fn rejected(o: &ReloadOutcome) -> bool {
    matches!(o, ReloadOutcome::Rejected { .. })
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    file: PathBuf,
    live: Arc<Live>,
    rx: Receiver<ReloadOutcome>,
    _watcher: hookrelay_config::Watcher,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let file = dir.join("hookrelay.yaml");
    std::fs::write(&file, config("first")).expect("write");
    start(tmp, dir, file)
}

fn start(tmp: tempfile::TempDir, dir: PathBuf, file: PathBuf) -> Setup {
    let live = Live::load_with_env(&file, no_env()).expect("initial config is valid");
    assert_eq!(live.snapshot().generation, 1);
    let rx = live.subscribe();
    let watcher = live.watch().expect("watch");
    Setup {
        _dir: tmp,
        dir,
        file,
        live,
        rx,
        _watcher: watcher,
    }
}

fn endpoint_names(live: &Live) -> Vec<String> {
    live.snapshot()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn a_valid_write_is_applied() {
    let s = setup();
    let text = config("second");
    std::fs::write(&s.file, &text).expect("write");
    let (o, _) = wait_for(&s.rx, applied);
    assert_eq!(
        o,
        ReloadOutcome::Applied {
            generation: 2,
            hash: hash(&text),
            changes: vec![
                "endpoint second added".to_owned(),
                "endpoint first removed".to_owned()
            ],
        }
    );
    assert_eq!(endpoint_names(&s.live), ["second"]);
    assert_eq!(s.live.snapshot().hash, hash(&text));
    assert_eq!(s.live.file_hash(), file_hash(&text));
}

#[test]
fn an_invalid_write_keeps_the_old_snapshot_and_reports_the_errors() {
    let s = setup();
    std::fs::write(
        &s.file,
        "upstream: 127.0.0.1:3000\nendpoints:\n  - name: x\n    url: ftp://nope\n",
    )
    .expect("write");
    let (o, _) = wait_for(&s.rx, rejected);
    let ReloadOutcome::Rejected { errors } = o else {
        unreachable!()
    };
    assert_eq!(errors.errors[0].path, "endpoints[0].url");
    assert_eq!(errors.errors[0].line, Some(4));
    assert_eq!(s.live.snapshot().generation, 1);
    assert_eq!(endpoint_names(&s.live), ["first"]);

    // The watch goes on after a rejection.
    std::fs::write(&s.file, config("fixed")).expect("write");
    let (o, _) = wait_for(&s.rx, applied);
    assert!(
        matches!(o, ReloadOutcome::Applied { generation: 2, .. }),
        "{o:?}"
    );
    assert_eq!(endpoint_names(&s.live), ["fixed"]);
}

#[test]
fn an_atomic_rename_into_place_is_picked_up() {
    let s = setup();
    let tmp = s.dir.join(".hookrelay.yaml.tmp");
    std::fs::write(&tmp, config("renamed")).expect("write");
    std::fs::rename(&tmp, &s.file).expect("rename");
    wait_for(&s.rx, applied);
    assert_eq!(endpoint_names(&s.live), ["renamed"]);
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn a_configmap_symlink_swap_is_picked_up() {
    // The layout kubelet uses for a mounted ConfigMap.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir(dir.join("..2026_11_27_v1")).expect("mkdir");
    std::fs::write(dir.join("..2026_11_27_v1/hookrelay.yaml"), config("v1")).expect("write");
    symlink("..2026_11_27_v1", dir.join("..data"));
    symlink("..data/hookrelay.yaml", dir.join("hookrelay.yaml"));
    let s = start(tmp, dir.clone(), dir.join("hookrelay.yaml"));
    assert_eq!(endpoint_names(&s.live), ["v1"]);

    // kubelet's update: new timestamped dir, new ..data_tmp link renamed over ..data.
    std::fs::create_dir(dir.join("..2026_11_27_v2")).expect("mkdir");
    std::fs::write(dir.join("..2026_11_27_v2/hookrelay.yaml"), config("v2")).expect("write");
    symlink("..2026_11_27_v2", dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    std::fs::remove_dir_all(dir.join("..2026_11_27_v1")).expect("cleanup");

    let (o, _) = wait_for(&s.rx, applied);
    assert_eq!(
        o,
        ReloadOutcome::Applied {
            generation: 2,
            hash: hash(&config("v2")),
            changes: vec![
                "endpoint v2 added".to_owned(),
                "endpoint v1 removed".to_owned()
            ],
        }
    );
    assert_eq!(endpoint_names(&s.live), ["v2"]);
    assert_eq!(s.file, dir.join("hookrelay.yaml"));
}

#[test]
fn a_burst_of_writes_applies_the_final_content_once() {
    let s = setup();
    let start = Instant::now();
    let mut last = String::new();
    for i in 0..20 {
        last = config(&format!("burst{i}"));
        std::fs::write(&s.file, &last).expect("write");
        // Pace the writes over ~100 ms (this paces the burst; it synchronises nothing).
        std::thread::sleep(Duration::from_millis(5));
    }
    let burst = start.elapsed();
    let (o, before) = wait_for(
        &s.rx,
        |o| matches!(o, ReloadOutcome::Applied { hash, .. } if *hash == self::hash(&last)),
    );
    assert!(
        !before.iter().any(applied),
        "an intermediate version was applied (burst took {burst:?}): {before:?}"
    );
    assert!(
        matches!(o, ReloadOutcome::Applied { generation: 2, .. }),
        "{o:?}"
    );
    assert_eq!(endpoint_names(&s.live), ["burst19"]);
    // No second apply follows (a late event may at most find the file unchanged).
    let end = Instant::now() + Duration::from_millis(500);
    while let Ok(o) =
        s.rx.recv_timeout(end.saturating_duration_since(Instant::now()))
    {
        assert_eq!(
            o,
            ReloadOutcome::Unchanged,
            "a second reload followed the burst"
        );
    }
}

#[test]
fn non_reloadable_changes_are_refused_whole() {
    let s = setup();
    std::fs::write(
        &s.file,
        format!("listen: 0.0.0.0:8181\n{}", config("moved")),
    )
    .expect("write");
    let (o, _) = wait_for(&s.rx, rejected);
    let ReloadOutcome::Rejected { errors } = o else {
        unreachable!()
    };
    let text = errors.to_string();
    assert!(text.contains("hookrelay.yaml:1:9: listen: changed from 0.0.0.0:8080 to 0.0.0.0:8181, but `listen` is not reloadable"), "{text}");
    assert_eq!(
        endpoint_names(&s.live),
        ["first"],
        "nothing of the file was applied"
    );
}

#[test]
fn editor_backup_files_are_ignored() {
    let s = setup();
    std::fs::write(s.dir.join("hookrelay.yaml~"), "garbage: [").expect("write");
    std::fs::write(s.dir.join(".hookrelay.yaml.swp"), "x").expect("write");
    std::fs::write(s.dir.join("4913"), "").expect("write");
    match s.rx.recv_timeout(Duration::from_millis(400)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("a backup file triggered a reload: {other:?}"),
    }
    std::fs::write(&s.file, config("edited")).expect("write");
    let (_, before) = wait_for(&s.rx, applied);
    assert!(before.is_empty(), "{before:?}");
}

#[test]
fn reload_now_runs_the_same_path() {
    let s = setup();
    // Nothing changed: a forced reload says so rather than making a new generation.
    assert_eq!(s.live.reload_now(), ReloadOutcome::Unchanged);
    std::fs::write(&s.file, config("second")).expect("write");
    assert!(matches!(
        s.live.reload_now(),
        ReloadOutcome::Applied { generation: 2, .. }
    ));
    assert_eq!(s.live.reload_if_changed(), ReloadOutcome::Unchanged);
    std::fs::write(&s.file, "upstream: [").expect("write");
    assert!(rejected(&s.live.reload_now()));
    assert_eq!(s.live.snapshot().generation, 2);
}

#[test]
fn the_watch_is_re_armed_after_its_directory_disappears() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = dir.join("hookrelay.yaml");
    std::fs::write(&file, config("first")).expect("write");
    let s = start(tmp, dir.clone(), file.clone());

    std::fs::remove_dir_all(&dir).expect("rm");
    let (o, _) = wait_for(&s.rx, rejected);
    assert!(o != ReloadOutcome::Unchanged);
    assert_eq!(endpoint_names(&s.live), ["first"]);

    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(&file, config("back")).expect("write");
    wait_for(&s.rx, applied);
    assert_eq!(endpoint_names(&s.live), ["back"]);
}

#[test]
fn a_comment_or_a_forced_reload_of_the_same_content_is_unchanged() {
    let s = setup();
    // Comments and layout are not configuration.
    let text = format!("# reviewed\n{}", config("first"));
    std::fs::write(&s.file, &text).expect("write");
    wait_for(&s.rx, |o| *o == ReloadOutcome::Unchanged);
    assert_eq!(s.live.snapshot().generation, 1);
    assert_eq!(s.live.file_hash(), file_hash(&text));
    // SIGHUP or POST /-/reload on the same content: unchanged, no new generation.
    assert_eq!(s.live.reload_now(), ReloadOutcome::Unchanged);
    assert_eq!(s.live.snapshot().generation, 1);
}

#[test]
fn a_rotated_file_secret_is_seen_and_applied_without_showing_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("secret"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .expect("write");
    let file = dir.join("hookrelay.yaml");
    std::fs::write(
        &file,
        "upstream: 127.0.0.1:3000\nendpoints:\n  - name: crm\n    url: https://crm.example.com/\n    \
         signing_secret: ${file:secret}\n",
    )
    .expect("write");
    let live = Live::load_with_env(&file, no_env()).expect("valid");
    assert_eq!(live.snapshot().files.len(), 1);
    assert!(!live.files_changed());
    std::fs::write(
        dir.join("secret"),
        "whsec_QmFzZTY0RW5jb2RlZFNlY3JldEtleTEyMzQ=\n",
    )
    .expect("write");
    assert!(live.files_changed());
    let ReloadOutcome::Applied {
        generation,
        changes,
        ..
    } = live.reload_now()
    else {
        panic!("not applied");
    };
    assert_eq!(generation, 2);
    assert_eq!(changes, ["endpoint crm: signing_secret changed"]);
    assert!(!changes.join(" ").contains("whsec"), "{changes:?}");
    assert!(!live.files_changed());
}

#[test]
fn reordered_keys_are_the_same_configuration() {
    let a = "upstream: 127.0.0.1:3000\nendpoints:\n  - name: a\n    url: https://a.example.com/\n";
    let b = "endpoints:\n  - url: https://a.example.com/\n    name: a\nupstream: 127.0.0.1:3000\n";
    assert_eq!(hash(a), hash(b));
}
