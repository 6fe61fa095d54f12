//! Validation: every problem at once, with its path and line; the shipped files are valid.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookrelay_config::{ConfigErrors, EnvLookup, Snapshot, Source};
use hookrelay_core::ChannelUser;
use hookrelay_core::{
    Channel, Event, EventKind, InboundMessage, Status, StatusUpdate, provider::Provider,
};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Values for the variables the example files reference.
fn test_env() -> Arc<EnvLookup> {
    Arc::new(|name: &str| match name {
        n if n.contains("WHSEC") || n.ends_with("SIGNING_SECRET") => Some(WHSEC.to_owned()),
        "REDIS_URL" => Some("redis://127.0.0.1:6379".to_owned()),
        n if n.ends_with("BASIC_AUTH") => Some("user:test-password".to_owned()),
        n if n.ends_with("_URL") => Some("https://example.com/".to_owned()),
        _ => Some(format!("test-{}", name.to_ascii_lowercase())),
    })
}

fn compile(yaml: &str) -> Result<Snapshot, ConfigErrors> {
    Snapshot::try_from(&Source::new("t.yaml", yaml).with_env(test_env()))
}

const FIVE_MISTAKES: &str = r#"upstream: 127.0.0.1:3000
callbacks:
  - path: /callbacks/twilio
    provider: twilio
    verify: { public_url: https://n.example.com/callbacks/twilio }
endpoints:
  - name: crm
    url: ftp://crm.internal/hooks
    statuses: [delivered, read]
  - name: crm
    url: https://other.internal/
    rate_limit: { per_second: 0 }
"#;

#[test]
fn five_mistakes_are_reported_together_each_with_its_line() {
    let errors = compile(FIVE_MISTAKES).expect_err("five mistakes");
    let got: Vec<(String, Option<usize>)> =
        errors.iter().map(|e| (e.path.clone(), e.line)).collect();
    assert_eq!(
        got,
        vec![
            ("callbacks[0].verify".to_owned(), Some(5)),
            ("endpoints[0].url".to_owned(), Some(8)),
            ("endpoints[0].statuses[1]".to_owned(), Some(9)),
            ("endpoints[1].name".to_owned(), Some(10)),
            ("endpoints[1].rate_limit.per_second".to_owned(), Some(12)),
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.contains("t.yaml:5:13: callbacks[0].verify: twilio verification needs `auth_token`"),
        "{text}"
    );
    assert!(
        text.contains("t.yaml:9:27: endpoints[0].statuses[1]: unknown status \"read\""),
        "{text}"
    );
    assert!(
        text.contains("duplicate endpoint name \"crm\" (first at endpoints[0], line 7)"),
        "{text}"
    );
    assert!(text.contains("must be at least 1 (found 0)"), "{text}");
}

#[test]
fn structural_problems_keep_the_other_items_checked() {
    let yaml = r#"upstream: 127.0.0.1:3000
bogus_top: 1
callbacks:
  - path: /a
    provider: nosuch
  - path: /a
    provider: mailgun
    verify: { signing_key: "${UNSET_VAR}" }
endpoints:
  - name: a
    url: https://a.example.com/
    retries: 3
  - name: b
    url: https://b.example.com/
    headers: { "Bad Name": x, X-Ok: "line\nbreak" }
    events: { fax: [status], sms: [delivery] }
    timeout: 0s
    rate_limit: { per_second: -2 }
  - name: c
    url: http://169.254.169.254/latest
"#;
    let env: Arc<EnvLookup> = Arc::new(|_: &str| None);
    let errors =
        Snapshot::try_from(&Source::new("t.yaml", yaml).with_env(env)).expect_err("many problems");
    let got: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    for expected in [
        ("bogus_top", Some(2)),
        ("callbacks[0].provider", Some(5)),
        ("callbacks[1].path", Some(6)),
        ("callbacks[1].verify.signing_key", Some(8)),
        ("endpoints[0].retries", Some(12)),
        ("endpoints[1].headers.Bad Name", Some(15)),
        ("endpoints[1].headers.X-Ok", Some(15)),
        ("endpoints[1].events.fax", Some(16)),
        ("endpoints[1].events.sms[0]", Some(16)),
        ("endpoints[1].timeout", Some(17)),
        ("endpoints[1].rate_limit.per_second", Some(18)),
        ("endpoints[2].url", Some(20)),
    ] {
        assert!(got.contains(&expected), "missing {expected:?} in\n{errors}");
    }
    let text = errors.to_string();
    assert!(text.contains("UNSET_VAR is not set"), "{text}");
    assert!(text.contains("unknown key `retries`"), "{text}");
    assert!(text.contains("link-local"), "{text}");
}

#[test]
fn several_problems_of_one_item_are_all_reported() {
    let yaml = r#"upstream: 127.0.0.1:3000
endpoints:
  - name: a
    url: https://a.example.com/
    format: json
    include_raw: "yes"
    signing_secret: [whsec_!!!]
    retry: { max_attempts: 0 }
  - name: b
"#;
    let errors = compile(yaml).expect_err("invalid");
    let got: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        got,
        [
            ("endpoints[0].format", Some(5)),
            ("endpoints[0].include_raw", Some(6)),
            ("endpoints[0].signing_secret[0]", Some(7)),
            ("endpoints[0].retry.max_attempts", Some(8)),
            ("endpoints[1]", Some(9)),
        ],
        "{errors}"
    );
    assert!(
        errors
            .to_string()
            .contains("endpoints[1]: missing key `url`"),
        "{errors}"
    );
}

#[test]
fn garbage_never_panics() {
    for yaml in [
        "",
        "- a\n- b\n",
        "just text",
        "upstream: [",
        "upstream: 1\ncallbacks: 5\nendpoints: {a: 1}\n",
        "upstream: x\ncallbacks: [1, null, [], {}]\nendpoints: [\"s\", {name: 5, url: 7}]\n",
        "upstream: x\nlisten: 99999\nadmin: \"::1\"\nstore: {kind: redis}\n",
        "a: &a [*a]\n",
        "upstream: ${\n",
        "\u{0}\u{1}",
    ] {
        let _ = compile(yaml);
    }
    let _ = Snapshot::try_from(&Source::new("bin", vec![0xff, 0xfe, 0x00]));
    let deep = format!("upstream: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(compile(&deep).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert!(compile(bomb).is_err());
}

#[test]
fn anchors_aliases_and_merge_keys_work() {
    let yaml = r#"upstream: 127.0.0.1:3000
x-defaults: &defaults
  retry: { max_attempts: 3 }
  timeout: 5s
endpoints:
  - <<: *defaults
    name: a
    url: https://a.example.com/
  - <<: *defaults
    name: b
    url: https://b.example.com/
    timeout: 0s
"#;
    let errors = compile(yaml).expect_err("x-defaults is not a key, b has a zero timeout");
    let got: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        got,
        [("x-defaults", Some(2)), ("endpoints[1].timeout", Some(12))],
        "{errors}"
    );
    let yaml = r#"upstream: 127.0.0.1:3000
endpoints:
  - name: a
    url: https://a.example.com/
    retry: &retry { max_attempts: 3, backoff: [2s] }
  - name: b
    url: https://b.example.com/
    retry: *retry
"#;
    let s = compile(yaml).expect("aliases are fine");
    assert_eq!(s.endpoint("b").expect("b").retry.max_attempts.get(), 3);
}

#[test]
fn defaults_and_compiled_values() {
    let yaml = r#"upstream: notify:3000
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: { app_secret: s3cret }
endpoints:
  - name: crm
    url: https://crm.example.com/hooks
    events: { whatsapp: [status, inbound_message], email: status }
    statuses: [delivered]
    headers: { Authorization: "Bearer ${CRM_TOKEN}", X-Version: 2 }
    signing_secret: ${CRM_WHSEC}
    retry: { max_attempts: 3, backoff: [1s, 2m] }
"#;
    let s = compile(yaml).expect("valid");
    assert_eq!(s.generation, 1);
    assert_eq!(s.hash.len(), 64);
    assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.admin.to_string(), "127.0.0.1:9090");
    assert_eq!(s.upstream.url.as_str(), "http://notify:3000/");
    assert_eq!(s.upstream.authority(), "notify:3000");
    let route = s.route("/cb/meta").expect("route");
    assert!(matches!(route.provider, Provider::MetaWhatsapp));
    assert!(route.verifier.is_some());
    assert_eq!(route.max_body, 1024 * 1024);
    let e = s.endpoint("crm").expect("endpoint");
    assert_eq!(e.timeout.as_secs(), 10);
    assert_eq!(e.retry.max_attempts.get(), 3);
    assert_eq!(e.retry.delay_before(2).as_secs(), 1);
    assert_eq!(e.retry.delay_before(9).as_secs(), 120);
    let mut sent = http::HeaderMap::new();
    e.headers.apply(&mut sent);
    assert_eq!(sent["authorization"], "Bearer test-crm_token");
    assert!(sent["authorization"].is_sensitive());
    assert_eq!(sent["x-version"], "2");
    assert_eq!(e.signer.secrets().len(), 1);
    assert!(
        !format!("{s:?}").contains("test-crm_token"),
        "secrets leak in Debug"
    );

    let status = |channel, status| Event {
        channel,
        channel_value: "+15550001".into(),
        channel_user: ChannelUser::default(),
        vendor_name: "x".into(),
        vendor_ack_id: None,
        idempotency_key: "evt_1".into(),
        correlation: Default::default(),
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms: 0,
            error: None,
            informational: false,
        }),
        raw: serde_json::Value::Null.into(),
    };
    assert!(e.accepts(&status(Channel::Whatsapp, Status::Delivered)));
    assert!(e.accepts(&status(Channel::Email, Status::Delivered)));
    assert!(!e.accepts(&status(Channel::Whatsapp, Status::Sent)));
    assert!(!e.accepts(&status(Channel::Sms, Status::Delivered)));
    let mut inbound = status(Channel::Whatsapp, Status::Queued);
    inbound.kind = EventKind::Inbound(InboundMessage::default());
    assert!(e.accepts(&inbound));
    inbound.channel = Channel::Email;
    assert!(!e.accepts(&inbound));
    assert_eq!(s.matching(&inbound).count(), 0);
}

#[test]
fn verify_none_is_explicit_and_warned() {
    let yaml = r#"upstream: 127.0.0.1:3000
callbacks:
  - path: /cb/legacy
    provider: legacy
    verify: none
    generic: { channel: sms, fields: { channel_value: /to, status: /status } }
  - path: /cb/legacy2
    provider: legacy
endpoints: [{ name: a, url: "https://a.example.com/" }]
"#;
    let errors = compile(yaml).expect_err("second route has no signature");
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.errors[0].path, "callbacks[1].provider");
    assert_eq!(errors.errors[0].line, Some(8));

    let yaml = yaml.replace(
        "    provider: legacy\nendpoints",
        "    provider: legacy\n    verify: none\nendpoints",
    );
    let s = compile(&yaml).expect("valid");
    assert!(s.route("/cb/legacy").expect("route").verifier.is_none());
    assert_eq!(s.warnings.len(), 2);
    assert!(
        s.warnings[0]
            .to_string()
            .contains("WITHOUT any signature check")
    );
}

#[test]
fn flow_mappings_with_unquoted_references_get_a_hint() {
    let yaml = "upstream: x:1\ncallbacks:\n  - { path: /a, provider: mailgun, verify: { signing_key: ${K} } }\n";
    let errors = compile(yaml).expect_err("invalid YAML");
    assert_eq!(errors.errors[0].line, Some(3), "{errors}");
    assert!(errors.to_string().contains("quote references"), "{errors}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // examples/ may not exist yet
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// A Kubernetes manifest is not a hookrelay file, but a ConfigMap may carry one: the
/// configurations in `text`, with whether each is a ConfigMap's (read in a pod).
fn configs_in(path: &Path, text: &str) -> Vec<(String, String, bool)> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).unwrap_or_default();
    if !docs.iter().any(|d| d.get("apiVersion").is_some()) {
        return vec![(path.display().to_string(), text.to_owned(), false)];
    }
    docs.iter()
        .filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap"))
        .filter_map(|d| d.get("data")?.as_object().cloned())
        .flatten()
        .filter(|(k, _)| k.ends_with(".yaml") || k.ends_with(".yml"))
        .filter_map(|(k, v)| {
            Some((
                format!("{}#{k}", path.display()),
                v.as_str()?.to_owned(),
                true,
            ))
        })
        .collect()
}

#[test]
fn every_shipped_yaml_file_is_valid() {
    let root = repo_root();
    let mut files = Vec::new();
    yaml_files(&root.join("config"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("config/hookrelay.example.yaml")),
        "the example config is missing: {files:?}"
    );
    // Compose files describe containers, not hookrelay.
    files.retain(|f| !f.ends_with("compose.yaml"));
    // A ConfigMap's hookrelay.yaml reads the Secrets of the examples, as the pod mounts
    // them: as the environment, and as files in `../secrets/` beside the configuration.
    let secrets = secrets_in(&files);
    let mounted = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(mounted.path().join("config")).expect("config dir");
    std::fs::create_dir(mounted.path().join("secrets")).expect("secrets dir");
    for (key, value) in &secrets {
        std::fs::write(mounted.path().join("secrets").join(key), value).expect("secret file");
    }
    let pod_env: Arc<EnvLookup> = {
        let secrets = secrets.clone();
        Arc::new(move |name: &str| secrets.get(name).cloned())
    };
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (name, config, in_pod) in configs_in(&file, &text) {
            let source = Source::new(name.clone(), config);
            let source = if in_pod {
                source
                    .with_env(Arc::clone(&pod_env))
                    .with_base_dir(mounted.path().join("config"))
            } else {
                source
                    .with_env(test_env())
                    .with_base_dir(file.parent().unwrap_or(Path::new(".")))
            };
            if let Err(errors) = Snapshot::try_from(&source) {
                panic!("{name} is invalid:\n{errors}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} configurations");
}

/// The `stringData` of every Kubernetes Secret in `files`.
fn secrets_in(files: &[PathBuf]) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("readable");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap_or_default();
        for doc in docs
            .iter()
            .filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("Secret"))
        {
            for (k, v) in doc["stringData"].as_object().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    out.insert(k.clone(), v.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn the_example_uses_every_key_of_the_schema() {
    let schema = hookrelay_config::json_schema();
    let text = std::fs::read_to_string(repo_root().join("config/hookrelay.example.yaml"))
        .expect("example");
    let props = |v: &serde_json::Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut keys = props(&schema);
    let defs = &schema["$defs"];
    for def in ["RawCallback", "RawEndpoint", "RawRateLimit", "RawRetry"] {
        let d = props(&defs[def]);
        assert!(!d.is_empty(), "schema has no {def}: {schema}");
        keys.extend(d);
    }
    assert!(keys.len() > 25);
    for key in keys {
        assert!(
            text.contains(&format!("{key}:")),
            "config/hookrelay.example.yaml does not show `{key}`"
        );
    }
    assert_eq!(schema["additionalProperties"], false);
    let s = schema.to_string();
    assert!(s.contains("\"inbound_message\""), "event types are listed");
}

#[test]
fn ses_reads_its_signing_certificate_from_cert_file() {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hookrelay-core/tests/fixtures/ses");
    let yaml = |file: &str| {
        format!(
            "upstream: 127.0.0.1:3000\ncallbacks:\n  - path: /cb/ses\n    provider: ses\n    verify:\n      cert_file: {file}\n      topic_arn: arn:aws:sns:eu-west-1:123456789012:ses-events\n"
        )
    };
    let load = |text: String| {
        Snapshot::try_from(
            &Source::new("t.yaml", text)
                .with_env(test_env())
                .with_base_dir(&certs),
        )
    };
    let s = load(yaml("sns_signing_cert.pem")).expect("a real certificate");
    assert!(s.route("/cb/ses").expect("route").verifier.is_some());

    let errors = load(yaml("missing.pem")).expect_err("no such file");
    assert_eq!(errors.errors[0].path, "callbacks[0].verify.cert_file");
    assert_eq!(errors.errors[0].line, Some(6));

    let junk = tempfile::tempdir().expect("tempdir");
    std::fs::write(junk.path().join("junk.pem"), "not a certificate").expect("write");
    let errors =
        load(yaml(&junk.path().join("junk.pem").to_string_lossy())).expect_err("not a certificate");
    assert_eq!(
        errors.errors[0].path, "callbacks[0].verify.cert_file",
        "{errors}"
    );

    let errors =
        load("upstream: 127.0.0.1:3000\ncallbacks:\n  - path: /cb/ses\n    provider: ses\n".into())
            .expect_err("no verify block");
    assert_eq!(errors.errors[0].line, Some(3), "{errors}");
    assert!(
        errors
            .to_string()
            .contains("ses verification needs `cert_file`"),
        "{errors}"
    );

    // The topic is required: SNS signs every AWS account's topics alike.
    let errors = load(
        "upstream: 127.0.0.1:3000\ncallbacks:\n  - path: /cb/ses\n    provider: ses\n    verify:\n      cert_file: sns_signing_cert.pem\n"
            .into(),
    )
    .expect_err("no topic");
    assert!(
        errors
            .to_string()
            .contains("ses verification needs `topic_arn`"),
        "{errors}"
    );
}

#[test]
fn tap_routes_accept_at_most_what_they_can_forward() {
    let tap = |max: &str| {
        format!(
            "upstream: 127.0.0.1:3000\ncallbacks:\n  - path: /cb\n    provider: mailgun\n    mode: tap\n    verify: {{ signing_key: k }}\n{max}"
        )
    };
    let s = compile(&tap("")).expect("valid");
    assert_eq!(s.route("/cb").expect("route").max_body, 64 * 1024);
    assert!(compile(&tap("    max_body: 64KiB\n")).is_ok());
    let e = compile(&tap("    max_body: 1MiB\n")).expect_err("too large for tap");
    let text = e.to_string();
    assert!(
        text.contains("t.yaml:7:") && text.contains("64KiB"),
        "{text}"
    );
}

/// One endpoint with `extra` YAML keys (indented under the endpoint).
fn endpoint_with(extra: &str) -> String {
    format!(
        "upstream: 127.0.0.1:3000\nendpoints:\n  - name: crm\n    url: https://crm.example.com/hooks\n{extra}"
    )
}

fn problems(yaml: &str) -> Vec<(String, Option<usize>, String)> {
    compile(yaml).map(|_| Vec::new()).unwrap_or_else(|e| {
        e.errors
            .iter()
            .map(|e| (e.path.clone(), e.line, e.message.clone()))
            .collect()
    })
}

#[test]
fn headers_the_delivery_stack_would_refuse_are_refused_at_validation() {
    // Keep-Alive is hop-by-hop: the stack cannot send it. It used to pass validation and
    // then every delivery went out with none of the configured headers.
    let yaml = endpoint_with(
        "    headers: { Authorization: \"Bearer t\", Keep-Alive: \"timeout=5\", Proxy-Connection: x }\n",
    );
    let found = problems(&yaml);
    let paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "endpoints[0].headers.Keep-Alive",
            "endpoints[0].headers.Proxy-Connection"
        ],
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|(_, line, m)| *line == Some(5) && m.contains("cannot be configured"))
    );

    // Without it, the compiled set is exactly what is sent.
    let s = compile(&endpoint_with(
        "    headers: { Authorization: \"Bearer t\", X-Api-Key: k, X-Source: hookrelay }\n",
    ))
    .expect("valid");
    let mut sent = http::HeaderMap::new();
    s.endpoint("crm").expect("crm").headers.apply(&mut sent);
    assert_eq!(sent["authorization"], "Bearer t");
    assert_eq!(sent["x-source"], "hookrelay");
    assert!(sent["authorization"].is_sensitive() && sent["x-api-key"].is_sensitive());
    assert!(!sent["x-source"].is_sensitive());
}

#[test]
fn every_metadata_address_the_resolver_refuses_is_refused_at_validation() {
    for (host, guarded) in [
        ("100.100.100.200", true),
        ("169.254.169.254", true),
        ("[fd00:ec2::254]", true),
        ("[fe80::1]", true),
        ("10.0.0.1", false),
        ("[::1]", false),
    ] {
        let yaml = format!(
            "upstream: 127.0.0.1:3000\nendpoints:\n  - name: m\n    url: http://{host}/latest\n"
        );
        let found = problems(&yaml);
        if guarded {
            assert_eq!(found.len(), 1, "{host}: {found:?}");
            assert_eq!(found[0].0, "endpoints[0].url");
            assert!(found[0].2.contains("allow_link_local"), "{found:?}");
            let opted_in = format!("{yaml}    allow_link_local: true\n");
            assert!(compile(&opted_in).is_ok(), "{host} with the opt-in");
        } else {
            assert!(found.is_empty(), "{host}: {found:?}");
        }
    }
}

#[test]
fn durations_have_upper_bounds() {
    // This one used to pass validation and then overflowed the delivery arithmetic.
    let found = problems(&endpoint_with(
        "    retry: { backoff: [1s, 500000000000y], max_age: 400d }\n    timeout: 2h\n",
    ));
    let paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "endpoints[0].retry.backoff[1]",
            "endpoints[0].retry.max_age",
            "endpoints[0].timeout"
        ],
        "{found:?}"
    );
    assert!(found[0].2.contains("too long: at most 7days"), "{found:?}");
    assert!(found[2].2.contains("at most 1h"), "{found:?}");
    let store = "upstream: 127.0.0.1:3000\nstore: { kind: redis, url: \"redis://r:6379\", visibility_timeout: 3d }\n";
    assert_eq!(problems(store)[0].0, "store.visibility_timeout");
    // The bounds themselves are accepted.
    assert!(
        compile(&endpoint_with(
            "    retry: { backoff: [7d], max_age: 30d }\n    timeout: 1h\n"
        ))
        .is_ok()
    );
}

#[test]
fn a_private_ca_file_is_read_at_load_and_an_unreadable_one_is_an_error() {
    let dir = repo_root().join("tests/fixtures/tls");
    let yaml = "upstream: 127.0.0.1:3000\ntls: { ca_file: ca.pem }\n";
    let s = Snapshot::try_from(&Source::new("t.yaml", yaml).with_base_dir(&dir)).expect("valid");
    assert_eq!(s.tls.ca_certs.len(), 1);
    assert_eq!(s.tls.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
    // No tls key: no extra CA (Mozilla's roots are the binary's own).
    assert!(
        compile("upstream: 127.0.0.1:3000\n")
            .expect("valid")
            .tls
            .ca_certs
            .is_empty()
    );

    for (file, says) in [
        ("missing.pem", "cannot read"),
        ("README.md", "holds no PEM certificate"),
    ] {
        let yaml = format!("upstream: 127.0.0.1:3000\ntls: {{ ca_file: {file} }}\n");
        let errors = Snapshot::try_from(&Source::new("t.yaml", yaml).with_base_dir(&dir))
            .expect_err("refused");
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert_eq!(errors.errors[0].path, "tls.ca_file");
        assert!(errors.errors[0].message.contains(says), "{errors}");
    }
}

#[test]
fn the_upstream_is_compiled_once_with_ipv6_literals_bracketed() {
    for (text, authority, tls) in [
        ("http://[::1]:3000", "[::1]:3000", false),
        ("127.0.0.1:3000", "127.0.0.1:3000", false),
        ("https://notify.internal", "notify.internal:443", true),
        ("notify:8080", "notify:8080", false),
    ] {
        let s = compile(&format!("upstream: \"{text}\"\n")).expect(text);
        assert_eq!(s.upstream.authority(), authority, "{text}");
        assert_eq!(s.upstream.tls, tls, "{text}");
    }
    let v6 = compile("upstream: \"http://[::1]:3000\"\n").expect("valid");
    assert_eq!(v6.upstream.host, "::1");
    assert_eq!(v6.upstream.ip, Some("::1".parse().expect("ip")));
}

#[test]
fn the_dedupe_window_has_a_default_bounds_and_is_set_for_either_store() {
    let s = compile("upstream: 127.0.0.1:3000\n").expect("valid");
    assert_eq!(s.dedupe_window.as_secs(), 24 * 3600);
    let s = compile(
        "upstream: 127.0.0.1:3000\nstore: { kind: embedded, path: ./d, dedupe_window: 2h }\n",
    )
    .expect("valid");
    assert_eq!(s.dedupe_window.as_secs(), 7200);
    let s = compile(
        "upstream: 127.0.0.1:3000\nstore: { kind: redis, url: \"redis://127.0.0.1:6379\", dedupe_window: 7d }\n",
    )
    .expect("valid");
    assert_eq!(s.dedupe_window.as_secs(), 7 * 24 * 3600);
    for bad in ["10s", "31d", "soon"] {
        let found = problems(&format!(
            "upstream: 127.0.0.1:3000\nstore: {{ kind: embedded, path: ./d, dedupe_window: {bad} }}\n"
        ));
        let paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["store.dedupe_window"], "{bad}: {found:?}");
    }
}

#[test]
fn listener_limits_have_defaults_and_bounds() {
    let s = compile("upstream: 127.0.0.1:3000\n").expect("valid");
    assert_eq!(s.limits.unverified_bytes, 64 * 1024 * 1024);
    assert_eq!(s.limits.body_timeout.as_secs(), 30);
    assert_eq!(s.limits.keepalive_timeout.as_secs(), 60);
    assert_eq!(s.limits.header_timeout.as_secs(), 10);
    assert_eq!(s.limits.header_bytes, 64 * 1024);
    assert_eq!(s.limits.max_connections, None);
    let s = compile(
        "upstream: 127.0.0.1:3000\nlimits: { unverified_bytes: 2MiB, body_timeout: 5s, keepalive_timeout: 2s, header_timeout: 3s, header_bytes: 8KiB, max_connections: 500 }\n",
    )
    .expect("valid");
    assert_eq!(s.limits.unverified_bytes, 2 * 1024 * 1024);
    assert_eq!(s.limits.body_timeout.as_secs(), 5);
    assert_eq!(s.limits.keepalive_timeout.as_secs(), 2);
    assert_eq!(s.limits.header_timeout.as_secs(), 3);
    assert_eq!(s.limits.header_bytes, 8192);
    assert_eq!(s.limits.max_connections, Some(500));
    let s =
        compile("upstream: 127.0.0.1:3000\nlimits: { max_connections: auto }\n").expect("valid");
    assert_eq!(s.limits.max_connections, None);
    let found = problems(
        "upstream: 127.0.0.1:3000\nlimits: { unverified_bytes: lots, body_timeout: 2h, keepalive_timeout: 10ms, header_timeout: 0s, header_bytes: 2GiB, max_connections: 3 }\n",
    );
    let paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "limits.unverified_bytes",
            "limits.body_timeout",
            "limits.keepalive_timeout",
            "limits.header_timeout",
            "limits.header_bytes",
            "limits.max_connections"
        ],
        "{found:?}"
    );
}

#[test]
fn an_admin_api_beyond_loopback_needs_a_token() {
    let base = "upstream: 127.0.0.1:3000\n";
    // The address alone, on loopback: no token needed.
    let s = compile(&format!("{base}admin: 127.0.0.1:9191\n")).expect("loopback");
    assert_eq!(s.admin.to_string(), "127.0.0.1:9191");
    assert!(s.admin_token.is_none());
    // Beyond loopback without a token: refused, with what to do.
    for admin in ["0.0.0.0:9090", "{listen: \"0.0.0.0:9090\"}"] {
        let errors = compile(&format!("{base}admin: {admin}\n")).expect_err(admin);
        let text = errors.to_string();
        assert!(
            text.contains("admin") && text.contains("admin.token"),
            "{text}"
        );
    }
    // With a token from the environment: taken.
    let s = compile(&format!(
        "{base}admin: {{listen: \"0.0.0.0:9090\", token: \"${{ADMIN_TOKEN}}\"}}\n"
    ))
    .expect("with a token");
    assert_eq!(s.admin.to_string(), "0.0.0.0:9090");
    assert_eq!(
        s.admin_token.as_ref().map(|t| t.expose().to_owned()),
        Some("test-admin_token".to_owned())
    );
    // The settings form without `listen` keeps the default address.
    let s = compile(&format!("{base}admin: {{token: abcdefghijklmnop}}\n")).expect("default");
    assert_eq!(s.admin.to_string(), "127.0.0.1:9090");
    // A short token, a token with a space and an unknown key are errors.
    for (admin, says) in [
        ("{token: short}", "at least 16"),
        ("{token: \"abcdefgh ijklmnopq\"}", "printable"),
        ("{listen: \"127.0.0.1:1\", tokn: abcdefghijklmnop}", "tokn"),
    ] {
        let errors = compile(&format!("{base}admin: {admin}\n")).expect_err(admin);
        assert!(errors.to_string().contains(says), "{admin}: {errors}");
    }
}

#[test]
fn store_min_free_is_auto_a_size_or_zero() {
    let with = |min_free: &str| {
        format!(
            "upstream: 127.0.0.1:3000\nstore: {{ kind: embedded, path: ./data{min_free} }}\n\
             endpoints:\n  - name: crm\n    url: https://crm.example.com/hooks\n"
        )
    };
    assert_eq!(compile(&with("")).expect("default").store_min_free, None);
    assert_eq!(
        compile(&with(", min_free: auto"))
            .expect("auto")
            .store_min_free,
        None
    );
    assert_eq!(
        compile(&with(", min_free: 256MiB"))
            .expect("size")
            .store_min_free,
        Some(256 << 20)
    );
    assert_eq!(
        compile(&with(", min_free: 0"))
            .expect("none")
            .store_min_free,
        Some(0)
    );
    let errors = compile(&with(", min_free: lots")).expect_err("not a size");
    assert!(
        errors
            .to_string()
            .contains("store.min_free: \"lots\": expected `auto`, `0` or a size"),
        "{errors}"
    );
}

#[test]
fn store_max_bytes_is_auto_or_a_size_of_at_least_a_mebibyte() {
    let with = |max_bytes: &str| {
        format!(
            "upstream: 127.0.0.1:3000\nstore: {{ kind: embedded, path: ./data, max_bytes: {max_bytes} }}\n\
             endpoints:\n  - name: crm\n    url: https://crm.example.com/hooks\n"
        )
    };
    assert_eq!(compile(&with("auto")).expect("auto").store_max_bytes, None);
    assert_eq!(
        compile(&with("2GiB")).expect("size").store_max_bytes,
        Some(2 << 30)
    );
    let small = compile(&with("512KiB")).expect_err("too small").to_string();
    assert!(small.contains("store.max_bytes: at least 1MiB"), "{small}");
    let text = compile(&with("lots")).expect_err("not a size").to_string();
    assert!(
        text.contains("store.max_bytes: \"lots\": expected `auto` or a size such as 2GiB"),
        "{text}"
    );
}

#[test]
fn an_embedded_store_written_out_defaults_its_path_and_needs_its_kind() {
    let with = |store: &str| {
        format!(
            "upstream: 127.0.0.1:3000\n{store}\
             endpoints:\n  - name: crm\n    url: https://crm.example.com/hooks\n"
        )
    };
    let data = hookrelay_config::Store::Embedded {
        path: PathBuf::from("./data"),
    };
    assert_eq!(compile(&with("")).expect("left out").store, data);
    assert_eq!(
        compile(&with("store: { kind: embedded, max_bytes: 1GiB }\n"))
            .expect("path left out")
            .store,
        data
    );
    let errors = compile(&with("store: { max_bytes: 1GiB }\n")).expect_err("no kind");
    assert!(
        errors.to_string().contains("kind"),
        "the error names the missing kind: {errors}"
    );
}

#[test]
fn a_route_cannot_take_a_body_the_listener_could_never_hold() {
    let with = |max_body: &str, unverified: &str| {
        format!(
            "upstream: 127.0.0.1:3000\n{unverified}callbacks:\n  - path: /cb\n    provider: mailgun\n    verify: {{ signing_key: k }}\n    max_body: {max_body}\n"
        )
    };
    // By default 64MiB are held at most, half of it by bodies over 64KiB.
    assert_eq!(
        compile(&with("32MiB", "")).expect("half").routes["/cb"].max_body,
        32 << 20
    );
    let errors = compile(&with("40MiB", "")).expect_err("over half");
    assert_eq!(errors.errors[0].path, "callbacks[0].max_body", "{errors}");
    assert!(
        errors.to_string().contains("limits.unverified_bytes"),
        "{errors}"
    );
    compile(&with("40MiB", "limits: { unverified_bytes: 80MiB }\n")).expect("raised");
    // Small bodies may hold the whole budget, however small it is.
    compile(&with("64KiB", "limits: { unverified_bytes: 1KiB }\n")).expect("small");
}
