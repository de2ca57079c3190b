//! [`IdMap`]: a small map from peer id to value kept as two sorted vectors.

use super::PeerId;

/// A map from [`PeerId`] to `V` for a few dozen entries (a peer's neighbours): the ids sorted
/// in one vector, the values in another at the same index. A lookup is a binary search over a
/// few cache lines of ids, iteration walks contiguous values in id order, as a `BTreeMap`
/// iterates (tested against one). The neighbour lookup of every "have" was a B-tree descent
/// through nodes scattered over the heap, the largest single cost of `p2plive sim`.
#[derive(Debug, Clone)]
pub(super) struct IdMap<V> {
    ids: Vec<PeerId>,
    values: Vec<V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            ids: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> IdMap<V> {
    /// The value of `id`.
    pub(super) fn get(&self, id: &PeerId) -> Option<&V> {
        let i = self.ids.binary_search(id).ok()?;
        self.values.get(i)
    }

    /// The value of `id`, mutably.
    pub(super) fn get_mut(&mut self, id: &PeerId) -> Option<&mut V> {
        let i = self.ids.binary_search(id).ok()?;
        self.values.get_mut(i)
    }

    /// Whether `id` has a value.
    pub(super) fn contains_key(&self, id: &PeerId) -> bool {
        self.ids.binary_search(id).is_ok()
    }

    /// Sets the value of `id`; returns the one it replaced.
    pub(super) fn insert(&mut self, id: PeerId, value: V) -> Option<V> {
        match self.ids.binary_search(&id) {
            Ok(i) => Some(std::mem::replace(&mut self.values[i], value)),
            Err(i) => {
                self.ids.insert(i, id);
                self.values.insert(i, value);
                None
            }
        }
    }

    /// The value of `id`, inserted as `V::default()` when absent.
    pub(super) fn get_or_default(&mut self, id: PeerId) -> &mut V
    where
        V: Default,
    {
        let i = match self.ids.binary_search(&id) {
            Ok(i) => i,
            Err(i) => {
                self.ids.insert(i, id);
                self.values.insert(i, V::default());
                i
            }
        };
        &mut self.values[i]
    }

    /// Keeps the entries for which `keep` is true (in id order).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&PeerId, &mut V) -> bool) {
        let mut to = 0;
        for from in 0..self.ids.len() {
            if keep(&self.ids[from], &mut self.values[from]) {
                self.ids.swap(to, from);
                self.values.swap(to, from);
                to += 1;
            }
        }
        self.ids.truncate(to);
        self.values.truncate(to);
    }

    /// The entries in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PeerId, &V)> {
        self.ids.iter().zip(&self.values)
    }

    /// The values in id order, mutably.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sim::net::Rng;

    /// Random inserts, defaults, retains and lookups answer as a `BTreeMap` does, and both
    /// iterate the same entries in the same order.
    #[test]
    fn answers_as_a_btree_map() {
        let mut rng = Rng::new(17);
        let mut map = IdMap::default();
        let mut model = BTreeMap::new();
        for step in 0..20_000u64 {
            let id = rng.next_u64() % 60;
            match rng.next_u64() % 6 {
                0 | 1 => assert_eq!(map.insert(id, step), model.insert(id, step), "step {step}"),
                2 => {
                    *map.get_or_default(id) += 1;
                    *model.entry(id).or_default() += 1;
                }
                3 if rng.next_u64().is_multiple_of(20) => {
                    let cut = rng.next_u64() % 60;
                    map.retain(|k, v| {
                        *v += 1;
                        *k < cut || *k % 3 == 0
                    });
                    model.retain(|k, v| {
                        *v += 1;
                        *k < cut || *k % 3 == 0
                    });
                }
                4 => {
                    if let (Some(a), Some(b)) = (map.get_mut(&id), model.get_mut(&id)) {
                        *a += 7;
                        *b += 7;
                    }
                }
                _ => {}
            }
            assert_eq!(map.get(&id), model.get(&id), "step {step}");
            assert_eq!(
                map.contains_key(&id),
                model.contains_key(&id),
                "step {step}"
            );
        }
        for v in map.values_mut() {
            *v += 1;
        }
        for v in model.values_mut() {
            *v += 1;
        }
        assert!(map.iter().eq(model.iter()));
    }
}
