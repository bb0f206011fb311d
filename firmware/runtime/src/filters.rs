//! The subscriptions a board forwards upstream: the union of its instances' filters, without
//! the ones another filter already covers, so the gateway link carries each message once.

use alloc::vec::Vec;

use wasmfleet_proto::topic::filter_covers;

/// The filters of `filters` not covered by another one (of equivalent filters, the first).
/// Filters are relative to one namespace: call it per namespace and prefix each result with
/// `wasmfleet_proto::topic::app_topic`.
pub fn union_filters<'a>(filters: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let all: Vec<&str> = filters.into_iter().collect();
    all.iter()
        .enumerate()
        .filter(|&(i, f)| {
            !all.iter()
                .enumerate()
                .any(|(j, g)| j != i && filter_covers(g, f) && (!filter_covers(f, g) || j < i))
        })
        .map(|(_, f)| *f)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_and_repeated_filters_are_dropped() {
        let subs = ["a/+/t", "a/#", "b/x", "b/x", "c/+", "a/1/t"];
        assert_eq!(union_filters(subs), ["a/#", "b/x", "c/+"]);
        assert!(union_filters([]).is_empty());
    }
}
