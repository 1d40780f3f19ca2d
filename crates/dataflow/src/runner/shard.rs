//! Where work lands: events by entity, series by shard, both by a hash fixed across
//! toolchains and recorded in every checkpoint.

use paceline_model::catalogue::{SeriesKey, NO_TAG};
use paceline_model::{Event, Indicator};
use serde::{Deserialize, Serialize};

use crate::entities::entity_kind;

/// The unit of work of the series stage: a whole group, or one tag's part of a group whose
/// series each depend on their own tag's slots only. A few groups carry most of the deltas
/// (platform availability alone about half of them on the generated district), so whole
/// groups left the series stage to one worker; per-tag shards spread those groups too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// The group.
    pub group: Indicator,
    /// The tag this shard holds, or [`NO_TAG`] when it holds the whole group.
    pub tag: u8,
}

impl Shard {
    /// Whether every series of `group` is computed from slots of its own tag alone.
    /// `scenario_fields_covered` counts over every field's slots, so its group stays whole.
    pub(super) fn splits_by_tag(group: Indicator) -> bool {
        group.tag_kind().key().is_some() && group != Indicator::ApplicationScenariosLiveByField
    }

    /// The shard holding the slot or series with this tag.
    pub fn of_series(group: Indicator, tag: u8) -> Shard {
        let tag = if Shard::splits_by_tag(group) {
            tag
        } else {
            NO_TAG
        };
        Shard { group, tag }
    }

    /// Every shard: the whole groups, and each tag value of the groups split by tag.
    pub fn all() -> Vec<Shard> {
        Indicator::ALL
            .iter()
            .filter(|i| i.group() == **i)
            .flat_map(|&group| {
                let tags = if Shard::splits_by_tag(group) {
                    group.tag_kind().tags()
                } else {
                    vec![NO_TAG]
                };
                tags.into_iter().map(move |tag| Shard { group, tag })
            })
            .collect()
    }

    /// The exchange key: a group's shards go to consecutive workers, each group starting
    /// at its own index, so the tags of one heavy group land on different workers.
    pub(super) fn route(self) -> u64 {
        let tag = if self.tag == NO_TAG {
            0
        } else {
            self.tag as u64
        };
        self.group.index() as u64 + tag
    }

    /// Whether worker `index` of `peers` holds this shard.
    pub(super) fn held_by(self, index: usize, peers: usize) -> bool {
        (self.route() % peers as u64) as usize == index
    }
}

/// The worker (of `total_workers`, cluster-wide) whose series operator computes and emits
/// `series`: the only one that writes it.
pub fn writer_of(series: SeriesKey, total_workers: usize) -> usize {
    (Shard::of_series(series.indicator.group(), series.tag).route() % total_workers.max(1) as u64)
        as usize
}

/// The version of [`entity_route`] and of the shards' placement, recorded in every
/// checkpoint: state restored under another routing would sit on the wrong workers.
pub const ROUTING_VERSION: u32 = 1;

/// Routes an event to the worker that holds its entity: [`stable_hash`] of the entity's
/// kind, a 0 byte and its id. Never std's `DefaultHasher`, whose algorithm a toolchain
/// upgrade may change under restored state.
pub(super) fn entity_route(e: &Event) -> u64 {
    let kind = entity_kind(&e.body).as_bytes();
    let id = e.body.entity().as_bytes();
    stable_hash([kind, &[0], id])
}

/// FNV-1a (64 bits) over the parts in order, then SplitMix64's finalizer so that the low
/// bits (a modulo by the worker count) depend on every byte. Fixed: part of the routing
/// version.
pub fn stable_hash<const N: usize>(parts: [&[u8]; N]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::catalogue::{Part, Slot};

    /// Pinned: a change of these values is a change of routing, which needs a new
    /// [`ROUTING_VERSION`] (values computed apart, by a few lines of Python).
    #[test]
    fn the_routing_hash_is_fixed_and_spreads() {
        assert_eq!(
            stable_hash([b"enterprise".as_slice(), &[0], b"E1001"]),
            0x5d6a_d86e_57e6_7cc5
        );
        assert_eq!(stable_hash([b"".as_slice()]), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash([b"a".as_slice()]), 0x02c0_bdbf_4814_20f8);
        let mut per_worker = [0usize; 4];
        for i in 0..4000 {
            let id = format!("E{i:05}");
            per_worker
                [(stable_hash([b"enterprise".as_slice(), &[0], id.as_bytes()]) % 4) as usize] += 1;
        }
        assert!(
            per_worker.iter().all(|n| (850..1150).contains(n)),
            "{per_worker:?}"
        );
    }

    /// Every slot the operators can write lands in a shard some worker holds, exactly one
    /// whatever the worker count; the field-coverage group stays whole, and the tags of a
    /// heavy group are spread over two workers.
    #[test]
    fn every_slot_has_one_holder_and_heavy_groups_spread() {
        let all = Shard::all();
        for group in Indicator::ALL.iter().filter(|i| i.group() == **i) {
            let tags: Vec<u8> = (0..u8::MAX)
                .filter(|t| group.tag_kind().value(*t).is_some())
                .chain([NO_TAG])
                .collect();
            for tag in tags {
                let shard = Shard::of_series(*group, tag);
                if group.tag_kind().value(tag).is_some() || !Shard::splits_by_tag(*group) {
                    assert!(all.contains(&shard), "{group:?} tag {tag} has no shard");
                }
                for peers in 1..=5 {
                    let holders = (0..peers).filter(|w| shard.held_by(*w, peers)).count();
                    assert_eq!(holders, 1, "{shard:?} with {peers} workers");
                }
            }
        }
        let covered = Shard::of_series(Indicator::ApplicationScenariosLiveByField, 3);
        assert_eq!(
            covered.tag, NO_TAG,
            "scenario_fields_covered reads every field"
        );
        let slot = Slot {
            group: Indicator::PlatformAvailability,
            part: Part::TotalSeconds,
            tag: 0,
        };
        let kinds: Vec<Shard> = (0..4)
            .map(|tag| Shard::of_series(slot.group, tag))
            .collect();
        assert_eq!(kinds.len(), 4);
        let on_first = kinds.iter().filter(|s| s.held_by(0, 2)).count();
        assert_eq!(on_first, 2, "four platform kinds, two per worker");
    }
}
