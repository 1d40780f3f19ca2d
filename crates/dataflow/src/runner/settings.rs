//! What the dataflow takes from the configuration, and the series groups made from it.

use std::collections::HashMap;

use paceline_model::config::{Config, PlanSpec};
use paceline_model::{Indicator, Nanos, Stream};

use super::shard::Shard;
use crate::series::Group;

/// What the dataflow needs from the configuration.
#[derive(Debug, Clone)]
pub struct DataflowSettings {
    /// Cadence of each group.
    pub cadence: HashMap<Indicator, Nanos>,
    /// Correction horizon of each stream.
    pub horizon: [Nanos; 3],
    /// Plan items.
    pub plans: Vec<PlanSpec>,
    /// Filing lag.
    pub filing_lag: Nanos,
    /// Worker threads.
    pub workers: usize,
    /// How far the correction cutoff moves between two folds of every entity, per stream.
    pub fold_every: [Nanos; 3],
    /// Restoring: rewrite every tick up to here on its next evaluation
    /// ([`Group::rewrite_through`]).
    pub rewrite_until: Option<Nanos>,
    /// The feeder gives every event to the worker holding its entity
    /// ([`Runner::worker_of`](super::Runner::worker_of)), as replay does: the entity operator
    /// then takes events where they arrive. Only a process that is the whole dataflow can
    /// promise that; a cluster member exchanges whatever this says.
    pub input_routed: bool,
}

impl DataflowSettings {
    /// From a validated configuration.
    pub fn from_config(config: &Config) -> Self {
        DataflowSettings {
            cadence: Indicator::ALL
                .iter()
                .map(|i| (*i, config.cadence(*i)))
                .collect(),
            horizon: Stream::ALL.map(|s| config.streams.get(s).horizon()),
            plans: config.plan_specs(),
            filing_lag: config.filing_lag(),
            workers: config.dataflow.workers,
            fold_every: Stream::ALL.map(|s| (config.streams.get(s).horizon() / 8).max(1)),
            rewrite_until: None,
            input_routed: false,
        }
    }

    pub(super) fn plans_of(&self, shard: Shard) -> Vec<PlanSpec> {
        self.plans
            .iter()
            .filter(|p| Shard::of_series(p.series.indicator.group(), p.series.tag) == shard)
            .cloned()
            .collect()
    }

    pub(super) fn new_group(&self, shard: Shard) -> Group {
        let group = shard.group;
        Group::new(
            group,
            self.cadence[&group],
            self.horizon[group.stream().index()],
            self.plans_of(shard),
        )
    }
}
