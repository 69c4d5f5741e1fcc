//! The line of a place in the configuration (`routes[2].upstream`), so that an error found
//! after parsing names its line as a syntax error does.
//!
//! serde's `Value` keeps no positions, so the text is read again, only when an error is
//! reported, by an event parser that does (yaml-rust2's `Marker`s). Events rather than an
//! indentation walk: flow style (`store: {kind: redis}`), comments and block scalars are then
//! handled by the parser, not by guesses.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A place in the document being walked: a mapping and the key whose value comes next, or a
/// sequence and the index of the next item.
enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

/// The first line of every place of a document, by path (`routes[2].upstream`).
#[derive(Default)]
struct Lines {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Lines {
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            match f {
                Frame::Map { key: Some(k) } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => p.push_str(&format!("[{index}]")),
            }
        }
        p
    }

    fn note(&mut self, line: usize) {
        let path = self.path();
        self.lines.entry(path).or_insert(line);
    }

    /// A value ended: the parent moves to its next key or item.
    fn next(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Lines {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let expecting_key = matches!(self.stack.last(), Some(Frame::Map { key: None }));
        match ev {
            Event::Scalar(v, ..) if expecting_key => {
                if let Some(Frame::Map { key }) = self.stack.last_mut() {
                    *key = Some(v);
                }
                self.note(mark.line());
            }
            Event::Scalar(..) | Event::Alias(_) => {
                self.note(mark.line());
                self.next();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if expecting_key => {
                // A complex key: not a place an error names. Walk through it.
                self.stack.push(Frame::Map { key: Some(String::new()) });
            }
            Event::MappingStart(..) => {
                self.note(mark.line());
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.note(mark.line());
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.next();
            }
            _ => {}
        }
    }
}

/// The line of the place an error message starts with (`routes[2] (route): upstream: …` is
/// at the line of `routes[2].upstream`, or of `routes[2]` if that key is absent); `None` when
/// the text does not parse or names no place found in it.
pub fn line_of_error(text: &str, message: &str) -> Option<usize> {
    let mut lines = Lines::default();
    Parser::new_from_str(text).load(&mut lines, false).ok()?;
    let lines = lines.lines;
    let mut path = String::new();
    let mut found = None;
    let mut rest = message;
    loop {
        let len =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || "_-[].".contains(c))).unwrap_or(rest.len());
        let token = &rest[..len];
        if token.is_empty() {
            break;
        }
        // Each step of the token: `variants.live.upstream` tries `variants`, then
        // `variants.live`, then the whole.
        let mut start = 0;
        for (i, c) in token.char_indices().chain([(token.len(), '.')]) {
            if (c == '.' || c == '[') && i > start {
                let step = &token[start..i];
                if !path.is_empty() && !step.starts_with('[') {
                    path.push('.');
                }
                path.push_str(step);
                match lines.get(&path) {
                    Some(&l) => found = Some(l),
                    None => return found,
                }
                start = if c == '.' { i + 1 } else { i };
            }
        }
        rest = &rest[len..];
        if let Some(r) = rest.strip_prefix(" (") {
            rest = r.split_once(')').map_or("", |(_, r)| r);
        }
        match rest.strip_prefix(": ") {
            Some(r) => rest = r,
            None => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "listen: 127.0.0.1:0\n# a comment\nstore: {kind: redis,\n  url: x}\nroutes:\n  - path: /a\n    upstream: http://h/\n  - path: /b\n    variants:\n      live:\n        upstream: x\n";

    #[test]
    fn finds_the_line_of_the_deepest_place_named() {
        assert_eq!(line_of_error(YAML, "listen: 'x' is not an address"), Some(1));
        assert_eq!(line_of_error(YAML, "store.url must start with redis://"), Some(4));
        assert_eq!(line_of_error(YAML, "routes[0] (route): upstream: 'x' has no scheme"), Some(7));
        assert_eq!(line_of_error(YAML, "routes[1] (route): upstream: is needed"), Some(8));
        assert_eq!(
            line_of_error(YAML, "routes[1] (route): variants.live.upstream: 'x' has no scheme"),
            Some(11)
        );
        assert_eq!(line_of_error(YAML, "routes[1].path: '/b' is used by another route"), Some(8));
        assert_eq!(line_of_error(YAML, "delivery: queued needs a durable queue"), None);
        assert_eq!(line_of_error("a: [", "a: x"), None, "text that does not parse");
    }
}
