//! `hookrelay validate` and `hookrelay schema` end to end: the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn hookrelay(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    for (name, _) in std::env::vars() {
        // The example's variables: only what a test sets.
        if ["TWILIO_", "MAILGUN_", "META_", "ACME_", "CRM_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run hookrelay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn five_mistakes_are_all_printed_with_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "upstream: 127.0.0.1:3000
callbacks:
  - path: /callbacks/mailgun
    provider: mailgun
    verify:
      signing_key: ${HOOKRELAY_TEST_UNSET_VARIABLE}
endpoints:
  - name: crm
    url: ftp://crm.internal/
    events: { fax: [status] }
    rate_limit: { per_second: -1 }
    headers: { \"X Bad\": v }
",
    )
    .expect("write");
    let path = file.to_string_lossy().into_owned();
    let (code, stdout, stderr) = hookrelay(&["validate", "-c", &path], &[]);
    assert_eq!(code, 64, "{stdout}{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&path)).collect();
    let lines: Vec<&str> = errors
        .iter()
        .filter_map(|l| l[path.len() + 1..].split(':').next())
        .collect();
    assert_eq!(lines, ["6", "9", "10", "11", "12"], "{stderr}");
    for needle in [
        "callbacks[0].verify.signing_key: environment variable HOOKRELAY_TEST_UNSET_VARIABLE is not set",
        "endpoints[0].url: scheme \"ftp\" is not allowed",
        "endpoints[0].events.fax: unknown channel",
        "endpoints[0].rate_limit.per_second: must be at least 1 (found -1)",
        "endpoints[0].headers.X Bad: \"X Bad\" is not a valid header name",
        "5 error(s)",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let example = repo_root().join("config/hookrelay.example.yaml");
    let example = example.to_string_lossy();
    // Its references have dev defaults, so it is valid without any environment…
    let (code, stdout, stderr) = hookrelay(&["validate", "--config", &example], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (6 callback route(s), 2 endpoint(s)"),
        "{stdout}"
    );
    // … and the environment is what it reads when set.
    let (code, _, stderr) = hookrelay(
        &["validate", "-c", &example],
        &[("CRM_WHSEC", "not-a-secret!")],
    );
    assert_eq!(code, 64);
    assert!(
        stderr.contains("endpoints[0].signing_secret[0]: signing secret is not whsec_"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let (code, _, stderr) = hookrelay(&["validate", "-c", "/nonexistent/hookrelay.yaml"], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn schema_prints_a_json_schema() {
    let (code, stdout, stderr) = hookrelay(&["schema"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org"))
    );
    for key in [
        "listen",
        "admin",
        "upstream",
        "store",
        "callbacks",
        "endpoints",
    ] {
        assert!(schema["properties"].get(key).is_some(), "no {key}");
    }
    assert_eq!(schema["required"], serde_json::json!(["upstream"]));
    // A route's `provider` names every built-in provider.
    let provider = schema["$defs"]["RawCallback"]["properties"]["provider"]["description"]
        .as_str()
        .expect("provider described");
    for id in hookrelay_core::provider::Provider::BUILTIN {
        assert!(provider.contains(&format!("`{id}`")), "{id} in {provider}");
    }
}
