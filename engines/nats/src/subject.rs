//! Our names as NATS subjects. A topic segment or a mailbox name becomes one subject token:
//! `A-Z a-z 0-9 _ -` stand for themselves and every other byte is `=` and two hex digits, so
//! any name our checks accept (dots inside a mailbox name, `*` or `>` inside a segment,
//! non-ASCII) is a valid token, no two names share one, and the token is also a valid
//! JetStream key-value key. A pattern's `*` and `>` segments stay NATS's wildcards, which mean
//! what ours mean.
//!
//! [`cover`] turns the patterns a daemon listens to into subscriptions no two of which match
//! the same subject, each covering whole patterns, so every publication reaches the daemon on
//! exactly one subscription and all that one pattern matches arrives in one stream, in order.

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Exact(String),
    One,
    Rest,
}

/// A pattern as segments (the pattern is already checked: `>` only last).
type Pat = Vec<Seg>;

/// The subject token of one segment or name.
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The name a token stands for; `None` for a token [`token`] does not make.
pub fn untoken(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            bytes.push(b);
            rest = tail;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The subject of `topic` under `namespace`.
pub fn topic(namespace: &str, topic: &str) -> String {
    let mut out = namespace.to_owned();
    for segment in topic.split('.') {
        out.push('.');
        out.push_str(&token(segment));
    }
    out
}

fn parse(pattern: &str) -> Pat {
    pattern
        .split('.')
        .map(|s| match s {
            "*" => Seg::One,
            ">" => Seg::Rest,
            exact => Seg::Exact(exact.to_owned()),
        })
        .collect()
}

fn subject(namespace: &str, pattern: &[Seg]) -> String {
    let mut out = namespace.to_owned();
    for segment in pattern {
        out.push('.');
        match segment {
            Seg::Exact(e) => out.push_str(&token(e)),
            Seg::One => out.push('*'),
            Seg::Rest => out.push('>'),
        }
    }
    out
}

/// Whether some topic matches both patterns.
fn overlap(p: &[Seg], q: &[Seg]) -> bool {
    for i in 0.. {
        match (p.get(i), q.get(i)) {
            (None, None) => return true,
            (Some(Seg::Rest), other) | (other, Some(Seg::Rest)) => return other.is_some(),
            (None, _) | (_, None) => return false,
            (Some(Seg::Exact(a)), Some(Seg::Exact(b))) if a != b => return false,
            _ => {}
        }
    }
    unreachable!("the loop returns")
}

/// Whether every topic `inner` matches, `outer` matches.
fn contains(outer: &[Seg], inner: &[Seg]) -> bool {
    for i in 0.. {
        match (outer.get(i), inner.get(i)) {
            (None, None) => return true,
            (Some(Seg::Rest), Some(_)) => return true,
            (Some(Seg::One), Some(Seg::One | Seg::Exact(_))) => {}
            (Some(Seg::Exact(a)), Some(Seg::Exact(b))) if a == b => {}
            _ => return false,
        }
    }
    unreachable!("the loop returns")
}

/// The narrowest `<exact prefix>.>` matching every topic of both (overlapping) patterns.
fn widen(p: &[Seg], q: &[Seg]) -> Pat {
    let limit = p.len().min(q.len()) - 1;
    let common = p
        .iter()
        .zip(q)
        .take(limit)
        .take_while(|(a, b)| matches!((a, b), (Seg::Exact(x), Seg::Exact(y)) if x == y))
        .count();
    let mut out = p[..common].to_vec();
    out.push(Seg::Rest);
    out
}

/// One step: two overlapping patterns become one; `false` when none overlap.
fn merge_one(pats: &mut Vec<Pat>) -> bool {
    for i in 0..pats.len() {
        for j in i + 1..pats.len() {
            if !overlap(&pats[i], &pats[j]) {
                continue;
            }
            let q = pats.swap_remove(j);
            let p = pats.swap_remove(i);
            pats.push(if contains(&p, &q) {
                p
            } else if contains(&q, &p) {
                q
            } else {
                widen(&p, &q)
            });
            return true;
        }
    }
    false
}

/// The subjects under `namespace` to subscribe to for `patterns`: pairwise disjoint, each
/// pattern inside one of them; sorted.
pub fn cover<'a>(namespace: &str, patterns: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut pats: Vec<Pat> = patterns.into_iter().map(parse).collect();
    pats.sort();
    pats.dedup();
    while merge_one(&mut pats) {}
    let mut subjects: Vec<String> = pats.iter().map(|p| subject(namespace, p)).collect();
    subjects.sort();
    subjects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_safe() {
        for name in [
            "orders", "a-b_C9", "a.b", "*", ">", "x*y", "é", "=3D", "a b", "$SYS",
        ] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)),
                "{t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name));
        }
        assert_ne!(token("=3D"), token("="));
        assert_eq!(untoken("a=2"), None);
        assert_eq!(untoken("a.b"), None);
        assert_eq!(untoken("=FF"), None, "not UTF-8");
    }

    #[test]
    fn topics_and_patterns_become_subjects() {
        assert_eq!(topic("p.ps", "orders.eu.new"), "p.ps.orders.eu.new");
        assert_eq!(topic("p.ps", "a*b.>x"), "p.ps.a=2Ab.=3Ex");
        assert_eq!(cover("p.ps", ["orders.*.new"]), ["p.ps.orders.*.new"]);
        assert_eq!(cover("p.ps", ["orders.>"]), ["p.ps.orders.>"]);
    }

    #[test]
    fn the_cover_is_disjoint_and_keeps_disjoint_patterns() {
        assert_eq!(cover("n", ["a.b", "c.*"]), ["n.a.b", "n.c.*"]);
        assert_eq!(cover("n", ["a.b", "a.*"]), ["n.a.*"]);
        assert_eq!(cover("n", ["a.*", "a.b", "a.*"]), ["n.a.*"]);
        assert_eq!(cover("n", ["a.b.*", "a.*.c"]), ["n.a.>"]);
        assert_eq!(cover("n", ["a.*", "*.b"]), ["n.>"]);
        assert_eq!(cover("n", ["a", "a.>"]), ["n.a", "n.a.>"]);
        assert_eq!(cover("n", ["a.>", "a.b.c", "x"]), ["n.a.>", "n.x"]);
        assert_eq!(cover("n", ["a.b", "a.b.c"]), ["n.a.b", "n.a.b.c"]);
    }

    #[test]
    fn overlap_and_containment() {
        let (p, q) = (parse("a.>"), parse("a"));
        assert!(!overlap(&p, &q));
        assert!(overlap(&parse("*.*"), &parse("a.>")));
        assert!(!overlap(&parse("*.*"), &parse("a.b.>")));
        assert!(contains(&parse("a.>"), &parse("a.*.c")));
        assert!(!contains(&parse("a.*"), &parse("a.>")));
    }
}
