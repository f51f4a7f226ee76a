//! Per-connection application state keyed by [`ConnId`], stored densely by the
//! connection's slab index and checked against its generation, so a state is
//! never handed to a later connection that reused the slot.

use crate::ConnId;

pub struct ConnMap<T> {
    slots: Vec<Option<(u32, T)>>,
    len: usize,
}

impl<T> Default for ConnMap<T> {
    fn default() -> Self {
        ConnMap {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ConnMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, id: ConnId, value: T) -> Option<T> {
        let i = id.index();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace((id.generation(), value));
        match old {
            Some((g, v)) if g == id.generation() => Some(v),
            Some(_) => None,
            None => {
                self.len += 1;
                None
            }
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        match self.slots.get(id.index()) {
            Some(Some((g, v))) if *g == id.generation() => Some(v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slots.get_mut(id.index()) {
            Some(Some((g, v))) if *g == id.generation() => Some(v),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.index())?;
        match slot {
            Some((g, _)) if *g == id.generation() => {
                self.len -= 1;
                slot.take().map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .map(|(g, v)| (ConnId::from_parts(i as u32, *g), v))
        })
    }
}
