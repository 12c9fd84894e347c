//! Topics and patterns: dot-separated non-empty segments; in a pattern `*` matches exactly one
//! segment and `>` (last segment only) one or more, as in NATS.

use std::fmt;

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    One,
    Rest,
}

/// Longest topic or pattern, in bytes.
const MAX_LEN: usize = 255;

fn segments(s: &str, what: &str) -> Result<Vec<String>, String> {
    if s.is_empty() || s.len() > MAX_LEN {
        return Err(format!("{what} must be 1 to {MAX_LEN} bytes"));
    }
    let parts: Vec<String> = s.split('.').map(str::to_owned).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        return Err(format!("{what} {s:?} has an empty segment or whitespace"));
    }
    Ok(parts)
}

/// Checks a topic to publish on: no wildcards.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let parts = segments(topic, "topic")?;
    if parts.iter().any(|p| p == "*" || p == ">") {
        return Err(format!("topic {topic:?} may not contain wildcards"));
    }
    Ok(())
}

/// Parses a subscription pattern.
pub fn check_pattern(pattern: &str) -> Result<Pattern, String> {
    let parts = segments(pattern, "topic")?;
    let last = parts.len() - 1;
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.into_iter().enumerate() {
        out.push(match p.as_str() {
            "*" => Segment::One,
            ">" if i == last => Segment::Rest,
            ">" => return Err(format!("in {pattern:?}, > may only be the last segment")),
            _ => Segment::Exact(p),
        });
    }
    Ok(Pattern(out))
}

/// The pattern as written (`orders.*`): what a transport that routes by interest is told.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(match segment {
                Segment::Exact(e) => e,
                Segment::One => "*",
                Segment::Rest => ">",
            })?;
        }
        Ok(())
    }
}

impl Pattern {
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for segment in &self.0 {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Rest, Some(_)) => return true,
                (Segment::One, Some(_)) => {}
                (Segment::Exact(e), Some(p)) if e == p => {}
                (Segment::Exact(_), Some(_)) => return false,
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, topic: &str) -> bool {
        check_pattern(pattern).unwrap().matches(topic)
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(m("orders.created", "orders.created"));
        assert!(!m("orders.created", "orders.created.eu"));
        assert!(m("orders.*", "orders.created"));
        assert!(!m("orders.*", "orders.created.eu"));
        assert!(!m("orders.*", "orders"));
        assert!(m("orders.>", "orders.created.eu"));
        assert!(!m("orders.>", "orders"));
        assert!(m("*.created.>", "orders.created.eu.west"));
        assert!(m(">", "anything.at.all"));
    }

    #[test]
    fn patterns_display_as_written() {
        for p in ["orders.created", "orders.*", "*.created.>", ">"] {
            assert_eq!(check_pattern(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn bad_topics_and_patterns_are_refused() {
        assert!(check_topic("a..b").is_err());
        assert!(check_topic("a.*").is_err());
        assert!(check_topic("").is_err());
        assert!(check_pattern("a.>.b").is_err());
        assert!(check_pattern("a b").is_err());
        assert!(check_topic("orders.created").is_ok());
    }
}
