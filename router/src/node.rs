//! One node-id space for all views (DESIGN.md §4 rules 1 and 2).
//!
//! A node id carries its view: the high 32 bits are the view id and the low 32 bits the entry's
//! index in that view. The root is 1 in every view. View ids start at 1 and are never reused
//! while the process lives, so two views can never hand out the same node id, and the view of
//! any node other than the root is known from the id alone.

/// A FUSE node id (inode number as the kernel sees it).
pub type NodeId = u64;

/// The root's node id, the same in every view.
pub const ROOT: NodeId = 1;

/// A view's id: never 0, never reused while the process lives.
pub type ViewId = u32;

/// The node id of entry `index` of view `view`. Index 0 is the view's root.
#[inline]
pub fn encode(view: ViewId, index: u32) -> NodeId {
    if index == 0 {
        ROOT
    } else {
        (u64::from(view) << 32) | u64::from(index)
    }
}

/// The view and entry index of a node id other than the root, or `None` for the root and for
/// ids no view can have handed out.
#[inline]
pub fn decode(node: NodeId) -> Option<(ViewId, u32)> {
    let view = (node >> 32) as u32;
    let index = node as u32;
    if view == 0 || index == 0 {
        None
    } else {
        Some((view, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_one_in_every_view() {
        assert_eq!(encode(1, 0), ROOT);
        assert_eq!(encode(u32::MAX, 0), ROOT);
        assert_eq!(decode(ROOT), None);
    }

    #[test]
    fn ids_round_trip_and_differ_across_views() {
        for view in [1, 2, 77, u32::MAX] {
            for index in [1, 2, 1000, u32::MAX] {
                let id = encode(view, index);
                assert_ne!(id, ROOT);
                assert_eq!(decode(id), Some((view, index)));
            }
        }
        assert_ne!(encode(1, 5), encode(2, 5));
    }

    #[test]
    fn ids_no_view_hands_out_do_not_decode() {
        assert_eq!(decode(0), None);
        assert_eq!(decode(5), None);
        assert_eq!(decode(7 << 32), None);
    }
}
