//! Epochs taken whole and in order: both operators stash what arrives for an epoch and
//! process it only once no input can add to it, so that a snapshot holds exactly the
//! epochs before it.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use super::marks::WatermarkReport;

/// Runs `logic` on each epoch of `input` whole, in order, with the epoch's watermark
/// reports (broadcast to every worker), once neither input can add to it; what `logic`
/// puts in its output vector goes downstream at that epoch. The epoch's data comes as the
/// containers it arrived in: merging them would copy every record once more.
pub(super) fn whole_epochs<'scope, D, O, P, L>(
    input: StreamVec<'scope, u64, D>,
    reports: StreamVec<'scope, u64, WatermarkReport>,
    pact: P,
    name: &str,
    mut logic: L,
) -> StreamVec<'scope, u64, O>
where
    D: Clone + 'static,
    O: Clone + 'static,
    P: ParallelizationContract<u64, Vec<D>>,
    L: FnMut(u64, Vec<Vec<D>>, Vec<WatermarkReport>, &mut Vec<O>) + 'static,
{
    input.binary_frontier::<_, CapacityContainerBuilder<Vec<O>>, _, _, _, _>(
        reports,
        pact,
        Pipeline,
        name,
        move |_cap, _info| {
            let mut stash: Stash<D> = BTreeMap::new();
            move |(in1, f1), (in2, f2), output| {
                let port = output.output_index();
                in1.for_each(|cap, data| stash_input(&mut stash, &cap, port, Some(data), None));
                in2.for_each(|cap, data| stash_input(&mut stash, &cap, port, None, Some(data)));
                let complete = |t: &u64| !(f1.less_equal(t) || f2.less_equal(t));
                let mut out = Vec::new();
                // The epoch's capability is held until `logic` returned: whatever it hands
                // over (the series operator's points) is done before the epoch completes.
                while let Some((t, (cap, data, reports))) = next_complete(&mut stash, complete) {
                    logic(t, data, reports, &mut out);
                    if let Some(cap) = cap.filter(|_| !out.is_empty()) {
                        output.session(&cap).give_container(&mut out);
                    }
                    out.clear();
                }
            }
        },
    )
}

/// The oldest stashed epoch if it is complete (no input can add to it: both frontiers
/// have passed it), taken out: epochs are processed whole and in order.
fn next_complete<D>(
    stash: &mut Stash<D>,
    complete: impl Fn(&u64) -> bool,
) -> Option<(u64, StashEntry<D>)> {
    let entry = stash.first_entry()?;
    let t = *entry.key();
    complete(&t).then(|| (t, entry.remove()))
}

type StashEntry<D> = (Option<Capability<u64>>, Vec<Vec<D>>, Vec<WatermarkReport>);

type Stash<D> = BTreeMap<u64, StashEntry<D>>;

/// Stashes what arrived for an epoch, keeping one capability for it.
fn stash_input<D>(
    stash: &mut Stash<D>,
    cap: &timely::dataflow::operators::InputCapability<u64>,
    port: usize,
    data: Option<&mut Vec<D>>,
    reports: Option<&mut Vec<WatermarkReport>>,
) {
    let Some(&t) = cap.least() else { return };
    let entry = stash
        .entry(t)
        .or_insert_with(|| (None, Vec::new(), Vec::new()));
    entry.0 = entry.0.take().or_else(|| cap.retain_least(port));
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        entry.1.push(std::mem::take(d));
    }
    if let Some(r) = reports {
        entry.2.append(r);
    }
}
