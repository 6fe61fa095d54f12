//! `${VAR}`, `${VAR:-default}` and `${file:/path}` references in string values.
//!
//! References are resolved once, at load, in every string value of the file (not in
//! keys). A reference that does not resolve is an error at the value's line; `$${` is a
//! literal `${`. A file's content loses one trailing newline (`echo secret > file`).

use std::path::Path;

/// Looks up an environment variable (injectable so tests need not touch the process
/// environment).
pub type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Resolves the references of `text`. `Ok(None)` when it has none.
pub(crate) fn resolve(
    text: &str,
    env: &EnvLookup,
    base_dir: &Path,
) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated reference `{}`", truncate(tail)))?;
            let reference = &after[..end];
            out.push_str(&lookup(reference, env, base_dir)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// The files `text`'s `${file:…}` references read, resolved against `base_dir`.
pub(crate) fn file_references(text: &str, base_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        if !escaped && let Some(path) = after[..end].strip_prefix("file:") {
            let path = path.trim();
            if !path.is_empty() {
                out.push(base_dir.join(path));
            }
        }
        rest = &after[end + 1..];
    }
    out
}

fn lookup(reference: &str, env: &EnvLookup, base_dir: &Path) -> Result<String, String> {
    if let Some(path) = reference.strip_prefix("file:") {
        let path = path.trim();
        if path.is_empty() {
            return Err("`${file:}` needs a path".to_owned());
        }
        let full = base_dir.join(path);
        let mut content = std::fs::read_to_string(&full)
            .map_err(|e| format!("`${{file:{path}}}`: cannot read {}: {e}", full.display()))?;
        if content.ends_with('\n') {
            content.pop();
            if content.ends_with('\r') {
                content.pop();
            }
        }
        return Ok(content);
    }
    let (name, default) = match reference.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if !is_var_name(name) {
        return Err(format!(
            "`${{{reference}}}` is not a reference: use ${{VAR}}, ${{VAR:-default}} or ${{file:/path}} \
             (write $${{ for a literal ${{)"
        ));
    }
    match (env(name).filter(|v| !v.is_empty()), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (`${{{name}}}`)"
        )),
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(24) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("t0k".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn resolves_variables_defaults_and_escapes() {
        let dir = Path::new(".");
        assert_eq!(resolve("plain $x", &env, dir), Ok(None));
        assert_eq!(
            resolve("Bearer ${TOKEN}!", &env, dir),
            Ok(Some("Bearer t0k!".into()))
        );
        assert_eq!(
            resolve("${MISSING:-dflt}/${EMPTY:-e}", &env, dir),
            Ok(Some("dflt/e".into()))
        );
        assert_eq!(resolve("$${TOKEN}", &env, dir), Ok(Some("${TOKEN}".into())));
        assert!(resolve("${MISSING}", &env, dir).is_err_and(|e| e.contains("MISSING")));
        assert!(resolve("${TOKEN", &env, dir).is_err());
        assert!(resolve("${not a name}", &env, dir).is_err());
    }

    #[test]
    fn reads_files_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s.txt"), "s3cret\n").expect("write");
        assert_eq!(
            resolve("${file:s.txt}", &env, dir.path()),
            Ok(Some("s3cret".into()))
        );
        assert!(resolve("${file:nope.txt}", &env, dir.path()).is_err());
    }
}
