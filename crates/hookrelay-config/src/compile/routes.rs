//! Callback routes: path, provider, verifier, body limit.

use super::*;

impl Compiler {
    pub(super) fn routes(&mut self, callbacks: &[(usize, RawCallback)]) -> BTreeMap<String, Route> {
        // Generic providers defined anywhere in the file, by name, for routes that refer
        // to one by name only.
        let mut generic: HashMap<String, Arc<Spec>> = HashMap::new();
        let mut specs: HashMap<usize, Option<Arc<Spec>>> = HashMap::new();
        for (i, cb) in callbacks {
            if let Some(value) = &cb.generic {
                let spec = self.generic_spec(*i, cb, value.clone());
                if let Some(spec) = &spec {
                    if generic.contains_key(&spec.name) {
                        self.error(
                            &format!("callbacks[{i}].generic.name"),
                            format!(
                                "generic provider {:?} is defined twice: define it once and \
                                 refer to it by name",
                                spec.name
                            ),
                        );
                    } else {
                        generic.insert(spec.name.clone(), spec.clone());
                    }
                }
                specs.insert(*i, spec);
            }
        }
        let mut routes = BTreeMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, cb) in callbacks {
            let p = format!("callbacks[{i}]");
            let path = cb.path.trim();
            if let Some(why) = path_problem(path) {
                self.error(&format!("{p}.path"), why);
            } else if let Some(first) = seen.get(path) {
                let line = self.line_note(&format!("callbacks[{first}].path"));
                self.error(
                    &format!("{p}.path"),
                    format!("duplicate callback path {path} (first at callbacks[{first}]{line})"),
                );
            } else {
                seen.insert(path.to_owned(), *i);
            }
            let provider = match (Provider::builtin(&cb.provider), specs.get(i)) {
                (Some(_), Some(_)) => {
                    self.error(
                        &format!("{p}.generic"),
                        format!(
                            "{} is a built-in provider: `generic:` is only for providers \
                             defined by a mapping",
                            cb.provider
                        ),
                    );
                    None
                }
                (Some(b), None) => Some(b),
                (None, Some(spec)) => spec.clone().map(Provider::Generic),
                (None, None) => match generic.get(&cb.provider) {
                    Some(spec) => Some(Provider::Generic(spec.clone())),
                    None if cb.provider == "generic" => {
                        self.error(
                            &format!("{p}.provider"),
                            "provider generic needs a `generic:` block describing it",
                        );
                        None
                    }
                    None => {
                        self.error(
                            &format!("{p}.provider"),
                            format!(
                                "unknown provider {:?} (built-in: {}; or define it with a \
                                 `generic:` block)",
                                cb.provider,
                                Provider::BUILTIN.join(", ")
                            ),
                        );
                        None
                    }
                },
            };
            let verifier = provider
                .as_ref()
                .and_then(|prov| self.verifier(&p, cb, prov));
            let max_body = self.max_body(&p, cb.max_body.as_ref(), cb.mode);
            if let (Some(provider), Some(verifier), Some(max_body)) = (provider, verifier, max_body)
            {
                routes.insert(
                    path.to_owned(),
                    Route {
                        path: path.to_owned(),
                        provider,
                        mode: cb.mode,
                        verifier,
                        max_body,
                        informational: cb.informational,
                    },
                );
            }
        }
        routes
    }

    pub(super) fn line_note(&self, path: &str) -> String {
        self.index
            .value(path)
            .map(|p| format!(", line {}", p.line))
            .unwrap_or_default()
    }

    pub(super) fn generic_spec(
        &mut self,
        i: usize,
        cb: &RawCallback,
        mut value: Value,
    ) -> Option<Arc<Spec>> {
        let p = format!("callbacks[{i}].generic");
        let Value::Object(map) = &mut value else {
            self.error(&p, "expected a mapping describing the provider");
            return None;
        };
        match map.get("name") {
            None if cb.provider != "generic" => {
                map.insert("name".into(), Value::String(cb.provider.clone()));
            }
            Some(Value::String(n)) if cb.provider != "generic" && *n != cb.provider => {
                self.error(
                    &format!("{p}.name"),
                    format!(
                        "{n:?} differs from the route's provider {:?}: make them equal, or \
                         omit name",
                        cb.provider
                    ),
                );
                return None;
            }
            _ => {}
        }
        let spec: Spec = self.deserialize(&p, value)?;
        let problems = spec.problems();
        for problem in &problems {
            match problem.split_once(": ") {
                Some((key, why)) if !key.contains(' ') => {
                    self.error(&format!("{p}.{key}"), why.to_owned());
                }
                _ => self.error(&p, problem.clone()),
            }
        }
        problems.is_empty().then(|| Arc::new(spec))
    }

    /// `Some(None)` for an explicit `verify: none`.
    pub(super) fn verifier(
        &mut self,
        p: &str,
        cb: &RawCallback,
        provider: &Provider,
    ) -> Option<Option<Verifier>> {
        let entries = match &cb.verify {
            Verify::None => {
                self.warn(
                    &format!("{p}.verify"),
                    format!(
                        "verify: none: callbacks on {} are accepted WITHOUT any signature \
                         check; anyone who can reach it can inject events",
                        cb.path
                    ),
                );
                return Some(None);
            }
            Verify::Settings(entries) => entries,
        };
        let mut settings = VerifySettings::new();
        let mut ok = true;
        for (key, value) in entries {
            if key == "cert_file" && matches!(provider, Provider::Ses) {
                let path = self.base_dir.join(&value.0);
                match std::fs::read_to_string(&path) {
                    Ok(pem) => settings.insert("cert_pem", pem),
                    Err(e) => {
                        self.error(
                            &format!("{p}.verify.cert_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        ok = false;
                    }
                }
            } else {
                settings.insert(key.clone(), value.0.clone());
            }
        }
        if !ok {
            return None;
        }
        match Verifier::new(provider, &settings) {
            Ok(v) => Some(Some(v)),
            Err(e) => {
                let key = match &e {
                    VerifyConfigError::Missing { .. } => None,
                    VerifyConfigError::Invalid { key, .. } => Some((*key).to_owned()),
                    VerifyConfigError::Unknown { key, .. } => Some(key.clone()),
                    _ => None,
                };
                let key = key.map(|k| {
                    if k == "cert_pem" && entries.contains_key("cert_file") {
                        "cert_file".to_owned()
                    } else {
                        k
                    }
                });
                let mut message = e.to_string();
                if matches!(provider, Provider::Ses) {
                    message = message.replace(
                        "needs `cert_pem`",
                        "needs `cert_file` (the SNS signing certificate, PEM)",
                    );
                }
                if matches!(e, VerifyConfigError::Missing { .. }) {
                    message.push_str(
                        " under verify: (verification fails closed; write `verify: none` to \
                         accept unverified callbacks)",
                    );
                }
                match key {
                    Some(k) if k == "signature" && cb.generic.is_some() => {
                        self.error(&format!("{p}.generic.signature"), message);
                    }
                    Some(k) if k == "signature" => self.error(&format!("{p}.provider"), message),
                    Some(k) => self.key_error(&format!("{p}.verify.{k}"), message),
                    None => self.error(&format!("{p}.verify"), message),
                }
                None
            }
        }
    }

    pub(super) fn max_body(&mut self, p: &str, v: Option<&Scalar>, mode: Mode) -> Option<usize> {
        let Some(v) = v else {
            return Some(match mode {
                Mode::Tap => MAX_TAP_BODY,
                _ => DEFAULT_MAX_BODY,
            });
        };
        let path = format!("{p}.max_body");
        match parse_size(&v.0) {
            Some(0) => {
                self.error(&path, "must be greater than zero");
                None
            }
            Some(n) if mode == Mode::Tap && n > MAX_TAP_BODY as u64 => {
                self.error(
                    &path,
                    format!(
                        "{} is more than a tap route can forward: the body is replayed to \
                         the upstream from a 64KiB buffer (at most 64KiB)",
                        v.0
                    ),
                );
                None
            }
            Some(n) if n > MAX_MAX_BODY => {
                self.error(&path, format!("{} is more than the limit of 1GiB", v.0));
                None
            }
            Some(n) => usize::try_from(n).ok(),
            None => {
                self.error(
                    &path,
                    format!("{:?} is not a size: bytes, or like 512KiB, 1MiB, 2MB", v.0),
                );
                None
            }
        }
    }
}

/// `1048576`, `512KiB`, `1MiB`, `2MB`, `1.5MiB` → bytes.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.contains('.') {
        let f: f64 = num.parse().ok()?;
        let bytes = f * mult as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    } else {
        num.parse::<u64>().ok()?.checked_mul(mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn sizes() {
        assert_eq!(parse_size("1MiB"), Some(1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Some(512 * 1024));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5kib"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }
}
