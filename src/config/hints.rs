//! What an operator most likely meant, added to an error: "did you mean `secrets`?" for a
//! misspelt key, variant or provider, "write 10s" for a duration without its unit.
//!
//! serde reports an unknown key or variant with the accepted names in its message
//! (`unknown field `x`, expected one of `a`, `b``), and that message is the only place they
//! reach us without a hand-written `Deserialize` for every raw type: it is read back here.

/// The name in `candidates` closest to `given`, when it is close enough to be a likely typo.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lc = given.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&given_lc, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `message` (a serde error's text) with a hint appended when one applies.
pub fn hint(message: String) -> String {
    if let Some(h) = unknown_name_hint(&message).or_else(|| bare_number_hint(&message)) {
        return format!("{message}; {h}");
    }
    message
}

/// `unknown field `secret`, expected one of `secrets`, …`: "did you mean `secrets`?".
fn unknown_name_hint(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))
        .map(|(_, r)| r)?;
    let (given, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once("expected ")?;
    let names = expected.split('`').skip(1).step_by(2);
    closest(given, names).map(|m| format!("did you mean `{m}`?"))
}

/// `invalid value: string "10", expected a duration` (humantime-serde reads a YAML number as
/// text), or `invalid type: integer `10`…`: a duration needs its unit.
fn bare_number_hint(message: &str) -> Option<String> {
    let (n, rest) = match message.split_once("invalid value: string \"") {
        Some((_, r)) => r.split_once('"')?,
        None => message.split_once("invalid type: integer `")?.1.split_once('`')?,
    };
    let number = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (number && rest.starts_with(", expected a duration"))
        .then(|| format!("write {n}s (a duration needs its unit: {n}s, {n}ms, {n}m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_only_when_close() {
        let e = "unknown field `secret`, expected one of `path`, `name`, `secrets`, `secret_files`";
        assert!(hint(e.into()).ends_with("; did you mean `secrets`?"), "{}", hint(e.into()));
        let e = "unknown field `zzz`, expected one of `path`, `name`";
        assert_eq!(hint(e.into()), e);
        let e = "unknown variant `mongo`, expected one of `memory`, `embedded`, `redis`";
        assert_eq!(hint(e.into()), e, "nothing close to mongo");
        let e = "unknown variant `reddis`, expected one of `memory`, `redis`, `redis-cluster`";
        assert!(hint(e.into()).ends_with("did you mean `redis`?"));
        let e = "unknown field `optonal`, expected `path` or `optional`";
        assert!(hint(e.into()).ends_with("did you mean `optional`?"));
        assert_eq!(closest("strpe", ["stripe", "github"]), Some("stripe"));
    }

    #[test]
    fn a_bare_number_for_a_duration_says_write_it_with_a_unit() {
        let e = "routes[0].timeout: invalid value: string \"10\", expected a duration at line 6 column 14";
        assert!(hint(e.into()).contains("write 10s"), "{}", hint(e.into()));
        let e = "routes[0].timeout: invalid value: string \"ten\", expected a duration";
        assert_eq!(hint(e.into()), e);
    }
}
