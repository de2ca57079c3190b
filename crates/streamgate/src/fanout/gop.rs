//! The GOP cache (sans-I/O): the tags of the current group of pictures only, from the latest
//! video key frame on, bounded in bytes.
//!
//! A new viewer that joins at the latest key frame receives, at once, the FLV header, the
//! configuration tags (metadata and sequence headers) and this group, then the live tags: its
//! player can decode the first frame without waiting for the camera's next key frame. Each
//! key frame replaces the cached group, so the cache never holds more than one group.

use bytes::Bytes;

use crate::flv::{Tag, TagKind};

/// Tags since the latest video key frame.
#[derive(Debug)]
pub struct GopCache {
    tags: Vec<Tag>,
    bytes: usize,
    max_bytes: usize,
}

impl GopCache {
    /// An empty cache holding at most `max_bytes` of tags; a group of pictures that grows
    /// beyond it is dropped until the next key frame (new viewers then wait for that key
    /// frame instead of receiving a partial group).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            tags: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Records a live tag. Configuration tags are not cached here (the caller keeps the
    /// current ones); a key frame starts a new group; other tags join the current group if
    /// there is one.
    pub fn push(&mut self, tag: &Tag) {
        match tag.kind {
            TagKind::Config => {}
            TagKind::KeyFrame => {
                self.tags.clear();
                self.bytes = 0;
                self.append(tag);
            }
            TagKind::InterFrame | TagKind::Audio => {
                if !self.tags.is_empty() {
                    self.append(tag);
                }
            }
        }
    }

    fn append(&mut self, tag: &Tag) {
        if self.bytes + tag.bytes.len() > self.max_bytes {
            self.tags.clear();
            self.bytes = 0;
            return;
        }
        self.bytes += tag.bytes.len();
        self.tags.push(tag.clone());
    }

    /// Whether the cache starts with a key frame (it holds a decodable group).
    pub fn has_key_frame(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The cached tags' bytes, key frame first (cheap: reference-counted).
    pub fn snapshot(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.tags.iter().map(|t| t.bytes.clone())
    }

    /// The cached tags, key frame first.
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Number of cached tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything (the pull stopped or the stream's parameters changed).
    pub fn clear(&mut self) {
        self.tags.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;

    fn key(ts: u32) -> Tag {
        mux::avc_frame(ts, 0, true, &[0, 0, 0, 1, 0x65])
    }
    fn inter(ts: u32) -> Tag {
        mux::avc_frame(ts, 0, false, &[0, 0, 0, 1, 0x41])
    }
    fn audio(ts: u32) -> Tag {
        mux::aac_frame(ts, &[1, 2])
    }

    #[test]
    fn cache_starts_at_the_latest_key_frame() {
        let mut gop = GopCache::new(1 << 20);
        for t in [audio(0), inter(0)] {
            gop.push(&t);
        }
        assert!(gop.is_empty(), "nothing before the first key frame");
        let tags = [
            key(0),
            audio(10),
            inter(40),
            key(80),
            inter(120),
            audio(130),
        ];
        for t in &tags {
            gop.push(t);
        }
        gop.push(&mux::avc_sequence_header(0, &[1]));
        let snap: Vec<Bytes> = gop.snapshot().collect();
        assert_eq!(snap.len(), 3);
        assert_eq!(snap[0], tags[3].bytes, "starts with the newest key frame");
        assert_eq!(snap[2], tags[5].bytes);
        assert_eq!(gop.bytes(), snap.iter().map(Bytes::len).sum::<usize>());
    }

    #[test]
    fn an_oversized_group_is_dropped_until_the_next_key_frame() {
        let one = key(0).bytes.len();
        let mut gop = GopCache::new(one * 2 + 1);
        gop.push(&key(0));
        gop.push(&inter(40));
        assert_eq!(gop.len(), 2);
        gop.push(&inter(80));
        assert!(!gop.has_key_frame());
        gop.push(&inter(120));
        assert!(gop.is_empty());
        gop.push(&key(160));
        assert_eq!(gop.len(), 1);
    }
}
