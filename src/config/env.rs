//! `${VAR}` and `${VAR:-default}` expansion in configuration values.

/// Expands `${VAR}` and `${VAR:-default}` in `s`. An unset `${VAR}` is an error.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_env_noting(s, env, &mut Vec::new())
}

/// [`expand_env`], adding to `defaulted` the name of each variable whose non-empty default
/// was used (it was unset): a value written in the configuration file, such as a demo secret.
pub fn expand_env_noting(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    defaulted: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unclosed '${'")?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("'${{{expr}}}' is not a variable name"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => {
                if !d.is_empty() {
                    defaulted.push(name.to_owned());
                }
                out.push_str(d)
            }
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `${VAR:-}`: a value that is dropped when `VAR` is unset (an optional secret during a
/// rotation).
pub fn is_optional(s: &str) -> bool {
    s.starts_with("${") && s.ends_with(":-}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_env("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(expand_env("${B:-d}", &env).unwrap(), "d");
        assert!(expand_env("${B}", &env).is_err());
        assert!(expand_env("${A", &env).is_err());
        let mut defaulted = Vec::new();
        assert_eq!(expand_env_noting("${A:-x}${B:-d}${C:-}", &env, &mut defaulted).unwrap(), "1d");
        assert_eq!(defaulted, ["B"]);
    }
}
