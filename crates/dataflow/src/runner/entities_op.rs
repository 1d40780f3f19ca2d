//! The entity operator: accepted events in, by entity; deltas of slot levels out, with
//! the correction cutoffs following the watermarks.

use std::cell::RefCell;
use std::rc::Rc;

use paceline_model::{Event, Nanos, Stream};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::StreamVec;

use super::epochs::whole_epochs;
use super::marks::{Marks, WatermarkReport};
use super::recycle::Recycle;
use super::shard::entity_route;
use crate::entities::Entities;
use crate::intervals::Delta;

/// The entity operator of one worker: events exchanged by entity, each epoch applied whole.
/// `routed`: every event already comes in on the worker holding its entity (one process fed
/// by [`Runner::worker_of`](super::Runner::worker_of)), so it is taken where it is: the
/// exchange would hash each event again only to leave it on this worker, after a copy.
pub(super) fn entities<'scope>(
    events: StreamVec<'scope, u64, Event>,
    reports: StreamVec<'scope, u64, WatermarkReport>,
    state: (Rc<RefCell<Entities>>, Rc<RefCell<Marks>>),
    horizon: [Nanos; 3],
    fold_every: [Nanos; 3],
    routed: bool,
    spare: Recycle<Event>,
) -> StreamVec<'scope, u64, Delta> {
    let (entities, marks) = state;
    let logic =
        move |_t, events: Vec<Vec<Event>>, reports: Vec<WatermarkReport>, out: &mut Vec<Delta>| {
            let mut entities = entities.borrow_mut();
            for mut batch in events {
                for e in batch.drain(..) {
                    entities.apply(e);
                }
                spare.give(batch);
            }
            entities.drain_into(out);
            // A cutoff holds for the events of later epochs only: applied after its own
            // epoch's events.
            let mut m = marks.borrow_mut();
            m.record_all(&reports);
            for s in Stream::ALL {
                if let Some(w) = m.of(s) {
                    let c = w.saturating_sub(horizon[s.index()]);
                    entities.set_cutoff(s, c, fold_every[s.index()]);
                }
            }
        };
    if routed {
        whole_epochs(events, reports, Pipeline, "Entities", logic)
    } else {
        whole_epochs(
            events,
            reports,
            Exchange::new(entity_route),
            "Entities",
            logic,
        )
    }
}
