//! The order of sets (reference §2.5): Kamailio keeps sets in an AVL tree keyed by set id and
//! walks it post-order (left, right, node) everywhere — RPC listing, pings, matching over all
//! sets. To list sets exactly as Kamailio does, sipdisp builds the same tree shape: a standard
//! AVL insert (single and double rotations) in the order set ids are first seen, then a
//! post-order walk. The tree is only used to compute that order at snapshot build time;
//! lookups at run time use a hash map.

struct Node {
    key: u32,
    height: i32,
    left: Option<usize>,
    right: Option<usize>,
}

/// An arena AVL tree of set ids.
#[derive(Default)]
pub struct AvlOrder {
    nodes: Vec<Node>,
    root: Option<usize>,
}

impl AvlOrder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn h(&self, n: Option<usize>) -> i32 {
        n.map_or(0, |i| self.nodes[i].height)
    }

    fn fix(&mut self, n: usize) {
        let (l, r) = (self.nodes[n].left, self.nodes[n].right);
        self.nodes[n].height = 1 + self.h(l).max(self.h(r));
    }

    fn balance(&self, n: usize) -> i32 {
        self.h(self.nodes[n].left) - self.h(self.nodes[n].right)
    }

    fn rotate_right(&mut self, n: usize) -> usize {
        let l = self.nodes[n].left.expect("left child");
        self.nodes[n].left = self.nodes[l].right;
        self.nodes[l].right = Some(n);
        self.fix(n);
        self.fix(l);
        l
    }

    fn rotate_left(&mut self, n: usize) -> usize {
        let r = self.nodes[n].right.expect("right child");
        self.nodes[n].right = self.nodes[r].left;
        self.nodes[r].left = Some(n);
        self.fix(n);
        self.fix(r);
        r
    }

    fn insert_at(&mut self, n: Option<usize>, key: u32) -> usize {
        let Some(n) = n else {
            self.nodes.push(Node {
                key,
                height: 1,
                left: None,
                right: None,
            });
            return self.nodes.len() - 1;
        };
        let k = self.nodes[n].key;
        if key == k {
            return n;
        }
        if key < k {
            let c = self.insert_at(self.nodes[n].left, key);
            self.nodes[n].left = Some(c);
        } else {
            let c = self.insert_at(self.nodes[n].right, key);
            self.nodes[n].right = Some(c);
        }
        self.fix(n);
        let b = self.balance(n);
        if b > 1 {
            let l = self.nodes[n].left.expect("left-heavy");
            if self.balance(l) < 0 {
                let nl = self.rotate_left(l);
                self.nodes[n].left = Some(nl);
            }
            return self.rotate_right(n);
        }
        if b < -1 {
            let r = self.nodes[n].right.expect("right-heavy");
            if self.balance(r) > 0 {
                let nr = self.rotate_right(r);
                self.nodes[n].right = Some(nr);
            }
            return self.rotate_left(n);
        }
        n
    }

    /// Inserts a set id (no effect when present).
    pub fn insert(&mut self, key: u32) {
        let r = self.insert_at(self.root, key);
        self.root = Some(r);
    }

    /// The ids in post-order (left subtree, right subtree, node): Kamailio's listing order.
    pub fn post_order(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, bool)> = self.root.map(|r| (r, false)).into_iter().collect();
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                out.push(self.nodes[n].key);
                continue;
            }
            stack.push((n, true));
            if let Some(r) = self.nodes[n].right {
                stack.push((r, false));
            }
            if let Some(l) = self.nodes[n].left {
                stack.push((l, false));
            }
        }
        out
    }
}

/// Kamailio's set listing order for set ids in order of first appearance.
pub fn kamailio_set_order(first_seen: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut t = AvlOrder::new();
    for k in first_seen {
        t.insert(k);
    }
    t.post_order()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_examples() {
        let cases: &[(&[u32], &[u32])] = &[
            (&[], &[]),
            (&[5], &[5]),
            (&[1, 2], &[2, 1]),
            (&[1, 2, 3], &[1, 3, 2]),
            (&[1, 2, 3, 4, 5, 6], &[1, 3, 2, 6, 5, 4]),
            (&[1, 2, 3, 4, 5, 6, 7], &[1, 3, 2, 5, 7, 6, 4]),
            (&[3, 2, 1], &[1, 3, 2]),
            // double rotations
            (&[1, 3, 2], &[1, 3, 2]),
            (&[3, 1, 2], &[1, 3, 2]),
            (&[5, 1, 5, 1], &[1, 5]),
            (&[0, 10, 5, 7, 6], &[0, 6, 10, 7, 5]),
        ];
        for &(ins, want) in cases {
            assert_eq!(kamailio_set_order(ins.iter().copied()), want, "{ins:?}");
        }
    }
}
