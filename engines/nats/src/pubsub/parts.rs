//! Joining the parts of a large publication. A publisher sends a publication's parts one
//! after the other on its one connection, so they arrive in order, interleaved at most with
//! other publishers' messages; a few publications are joined at once, and the oldest
//! unfinished one is given up (with a warning) when more start.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use tracing::warn;
use uuid::Uuid;

/// How many publications may be half received at once.
const OPEN: usize = 8;

/// A part as its header describes it.
#[derive(Debug, PartialEq)]
pub(super) struct Part {
    pub id: Uuid,
    pub index: usize,
    pub count: usize,
}

impl Part {
    /// The header `<id> <index> <count>`; `None` when it is not one.
    pub fn parse(header: &str) -> Option<Part> {
        let mut fields = header.split(' ');
        let part = Part {
            id: fields.next()?.parse().ok()?,
            index: fields.next()?.parse().ok()?,
            count: fields.next()?.parse().ok()?,
        };
        (fields.next().is_none() && part.index < part.count).then_some(part)
    }
}

/// The publications being joined: id, the parts so far.
#[derive(Default)]
pub(super) struct Joiner {
    open: VecDeque<(Uuid, BytesMut, usize)>,
}

impl Joiner {
    /// Adds a part; the whole body once its last part arrived.
    pub fn add(&mut self, part: Part, payload: &Bytes) -> Option<Bytes> {
        let at = self.open.iter().position(|(id, _, _)| *id == part.id);
        let at = match (at, part.index) {
            (Some(at), _) => at,
            (None, 0) => self.start(part.id),
            (None, _) => return None,
        };
        let (_, body, next) = &mut self.open[at];
        if *next != part.index {
            warn!(id = %part.id, "a part of a large publication is missing; dropped");
            self.open.remove(at);
            return None;
        }
        body.extend_from_slice(payload);
        *next += 1;
        if *next < part.count {
            return None;
        }
        self.open.remove(at).map(|(_, body, _)| body.freeze())
    }

    fn start(&mut self, id: Uuid) -> usize {
        if self.open.len() == OPEN {
            if let Some((lost, _, _)) = self.open.pop_front() {
                warn!(id = %lost, "a large publication was not finished; dropped");
            }
        }
        self.open.push_back((id, BytesMut::new(), 0));
        self.open.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: Uuid, index: usize, count: usize) -> Part {
        Part { id, index, count }
    }

    #[test]
    fn headers_parse() {
        let id = Uuid::now_v7();
        assert_eq!(Part::parse(&format!("{id} 1 3")), Some(part(id, 1, 3)));
        assert_eq!(Part::parse(&format!("{id} 3 3")), None);
        assert_eq!(Part::parse("x 0 1"), None);
        assert_eq!(Part::parse(&format!("{id} 0 1 2")), None);
    }

    #[test]
    fn interleaved_parts_join_and_gaps_drop() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut j = Joiner::default();
        let chunk = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(j.add(part(a, 0, 2), &chunk("he")), None);
        assert_eq!(j.add(part(b, 0, 2), &chunk("wo")), None);
        assert_eq!(j.add(part(a, 1, 2), &chunk("llo")), Some(chunk("hello")));
        assert_eq!(j.add(part(b, 1, 2), &chunk("rld")), Some(chunk("world")));
        assert_eq!(j.add(part(a, 1, 2), &chunk("x")), None, "no start: ignored");
        assert_eq!(j.add(part(a, 0, 3), &chunk("x")), None);
        assert_eq!(j.add(part(a, 2, 3), &chunk("z")), None, "a gap drops it");
        assert!(j.open.is_empty());
        for _ in 0..OPEN + 1 {
            j.add(part(Uuid::now_v7(), 0, 2), &chunk("x"));
        }
        assert_eq!(j.open.len(), OPEN);
    }
}
