//! A node's name, held once per node and shared.
//!
//! The controller keeps a node's record, desired state, status, send time and place in the
//! placement in maps of their own, each keyed or valued by the node's name. As `String`s
//! those were six copies per node, a third of the hub's allocations per node at rest, and
//! every copy-on-write of a map (a snapshot held it while the controller changed it) copied
//! every name again. A `NodeName` is a shared pointer to one copy: cloning it allocates
//! nothing.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A node's name (its MQTT client id and topic segment), shared.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Arc<str>);

impl NodeName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for NodeName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by `NodeName` are looked up by `&str`, as every report names its node.
impl Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeName {
    fn from(name: &str) -> Self {
        NodeName(name.into())
    }
}

impl From<String> for NodeName {
    fn from(name: String) -> Self {
        NodeName(name.into())
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> Self {
        name.0.as_ref().to_owned()
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for NodeName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<NodeName> for str {
    fn eq(&self, other: &NodeName) -> bool {
        *self == *other.0
    }
}

impl PartialEq<NodeName> for &str {
    fn eq(&self, other: &NodeName) -> bool {
        **self == *other.0
    }
}

impl PartialEq<NodeName> for String {
    fn eq(&self, other: &NodeName) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn clones_share_one_copy_and_maps_find_it_by_str() {
        let name = NodeName::from("gw-7");
        let copy = name.clone();
        assert!(
            std::ptr::eq(name.as_str(), copy.as_str()),
            "shared, not copied"
        );
        let map = BTreeMap::from([(copy, 1)]);
        assert_eq!(map.get("gw-7"), Some(&1));
        assert_eq!(name, "gw-7");
        assert_eq!("gw-7".to_string(), name);
        assert_eq!(format!("{name} {name:?}"), "gw-7 \"gw-7\"");
    }

    #[test]
    fn orders_as_its_string() {
        let mut names: Vec<NodeName> = ["b", "a", "ab"].into_iter().map(NodeName::from).collect();
        names.sort();
        assert_eq!(names, ["a", "ab", "b"]);
    }
}
