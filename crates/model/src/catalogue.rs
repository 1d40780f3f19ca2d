//! The indicator catalogue of docs/indicators.md: names, tags, streams, default cadences, and the
//! keys of the series the dataflow keeps.
//!
//! A [`SeriesKey`] names one output series (an indicator and its tag value). A [`Slot`] names
//! one accumulated quantity inside an indicator's group: most indicators have one slot per
//! tag value, a few keep hidden parts from which the output is derived (availability keeps
//! available and total heartbeat seconds; the added-value group keeps the previous four
//! quarters for growth).

use serde::{Deserialize, Serialize};

use crate::event::{Cluster, Field, PlatformKind, Region, Stream};
use crate::time::{Nanos, DAY, HOUR};

/// The tag an indicator's series carry besides `indicator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// No tag.
    None,
    /// `cluster`.
    Cluster,
    /// `field` (the eight fields plus `unassigned` for usage).
    Field,
    /// `region`.
    Region,
    /// `platform_kind`.
    PlatformKind,
}

impl TagKind {
    /// The tag's key in line protocol and metrics.
    pub fn key(self) -> Option<&'static str> {
        match self {
            TagKind::None => None,
            TagKind::Cluster => Some("cluster"),
            TagKind::Field => Some("field"),
            TagKind::Region => Some("region"),
            TagKind::PlatformKind => Some("platform_kind"),
        }
    }

    /// The spelling of tag value `tag`.
    pub fn value(self, tag: u8) -> Option<&'static str> {
        let i = tag as usize;
        match self {
            TagKind::None => None,
            TagKind::Cluster => Cluster::ALL.get(i).map(|c| c.as_str()),
            TagKind::Field => {
                if i == UNASSIGNED_FIELD as usize {
                    Some("unassigned")
                } else {
                    Field::ALL.get(i).map(|f| f.as_str())
                }
            }
            TagKind::Region => Region::ALL.get(i).map(|r| r.as_str()),
            TagKind::PlatformKind => PlatformKind::ALL.get(i).map(|k| k.as_str()),
        }
    }

    /// Every tag a series of this kind can carry, in order ([`NO_TAG`] alone when the
    /// kind is untagged).
    pub fn tags(self) -> Vec<u8> {
        if self.key().is_none() {
            return vec![NO_TAG];
        }
        (0..NO_TAG)
            .take_while(|t| self.value(*t).is_some())
            .collect()
    }

    /// Parses a tag value.
    pub fn parse(self, value: &str) -> Option<u8> {
        let idx = match self {
            TagKind::None => return None,
            TagKind::Cluster => Cluster::from_str(value).map(|c| c.index()),
            TagKind::Field if value == "unassigned" => Some(UNASSIGNED_FIELD as usize),
            TagKind::Field => Field::from_str(value).map(|f| f.index()),
            TagKind::Region => Region::from_str(value).map(|r| r.index()),
            TagKind::PlatformKind => PlatformKind::from_str(value).map(|k| k.index()),
        };
        idx.map(|i| i as u8)
    }
}

/// The tag value of the `field` tag for usage of a scenario without a stage event.
pub const UNASSIGNED_FIELD: u8 = 8;
/// The `tag` of a series without a tag.
pub const NO_TAG: u8 = u8::MAX;

macro_rules! indicators {
    ($($variant:ident = $name:literal, $stream:ident, $tag:ident, $cadence:ident, $zero:literal;)+) => {
        /// The 24 indicators of docs/indicators.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Indicator { $(
            #[doc = concat!("`", $name, "`")]
            $variant
        ),+ }
        impl Indicator {
            /// Every indicator, in catalogue order.
            pub const ALL: &'static [Indicator] = &[$(Indicator::$variant),+];
            /// The indicator's name (the `indicator` tag).
            pub fn name(self) -> &'static str { match self { $(Indicator::$variant => $name),+ } }
            /// The stream it reads.
            pub fn stream(self) -> Stream { match self { $(Indicator::$variant => Stream::$stream),+ } }
            /// Its tag besides `indicator`.
            pub fn tag_kind(self) -> TagKind { match self { $(Indicator::$variant => TagKind::$tag),+ } }
            /// Default cadence in nanoseconds.
            pub fn default_cadence(self) -> Nanos { match self { $(Indicator::$variant => $cadence),+ } }
            /// Whether it is a count or a sum: 0 when its group is empty, and 0 where never
            /// written. The others (ratios) have no value without data.
            pub fn zero_default(self) -> bool { match self { $(Indicator::$variant => $zero),+ } }
        }
    };
}

indicators! {
    QuasiUnicorns = "quasi_unicorns", Filings, None, DAY, true;
    SrdiEnterprises = "srdi_enterprises", Filings, None, DAY, true;
    ClusterEnterprises = "cluster_enterprises", Filings, Cluster, DAY, true;
    SmesOnCloud = "smes_on_cloud", Filings, None, DAY, true;
    CoreIndustryRevenueCny = "core_industry_revenue_cny", Filings, None, DAY, true;
    ClusterRevenueCny = "cluster_revenue_cny", Filings, Cluster, DAY, true;
    DigitalEconomyAddedValueCny = "digital_economy_added_value_cny", Filings, None, DAY, true;
    DigitalEconomyAddedValueGrowth = "digital_economy_added_value_growth", Filings, None, DAY, false;
    ApplicationScenariosLive = "application_scenarios_live", Scenarios, None, DAY, true;
    ApplicationScenariosLaunched = "application_scenarios_launched", Scenarios, None, DAY, true;
    ApplicationScenariosLiveByField = "application_scenarios_live_by_field", Scenarios, Field, DAY, true;
    ScenarioFieldsCovered = "scenario_fields_covered", Scenarios, None, DAY, true;
    DataZonesOperational = "data_zones_operational", Scenarios, None, DAY, true;
    BenchmarkProjectsDelivered = "benchmark_projects_delivered", Scenarios, None, DAY, true;
    DemonstrationProjectsUnderway = "demonstration_projects_underway", Scenarios, None, DAY, true;
    DemonstrationProjectsUnderwayByRegion = "demonstration_projects_underway_by_region", Scenarios, Region, DAY, true;
    PlatformAvailability = "platform_availability", Telemetry, PlatformKind, HOUR, false;
    PlatformApiCalls = "platform_api_calls", Telemetry, PlatformKind, HOUR, true;
    PlatformRecordsShared = "platform_records_shared", Telemetry, PlatformKind, HOUR, true;
    PlatformConnectedEnterprises = "platform_connected_enterprises", Telemetry, PlatformKind, HOUR, true;
    ScenarioActiveUsers = "scenario_active_users", Scenarios, Field, HOUR, true;
    ScenarioTransactions = "scenario_transactions", Scenarios, Field, HOUR, true;
    ScenarioValueCny = "scenario_value_cny", Scenarios, Field, HOUR, true;
    ScenariosIdle = "scenarios_idle", Scenarios, None, HOUR, true;
}

impl Indicator {
    /// Looks an indicator up by name.
    pub fn parse(name: &str) -> Option<Indicator> {
        Indicator::ALL.iter().copied().find(|i| i.name() == name)
    }

    /// The group whose state computes this indicator: derived indicators live with the
    /// slots they are derived from.
    pub fn group(self) -> Indicator {
        match self {
            Indicator::DigitalEconomyAddedValueGrowth => Indicator::DigitalEconomyAddedValueCny,
            Indicator::ScenarioFieldsCovered => Indicator::ApplicationScenariosLiveByField,
            other => other,
        }
    }

    /// Whether its values are judged after the filing lag: the four indicators computed
    /// from `enterprise.financials`, whose quarters are filed weeks after they end
    /// (docs/indicators.md, "Verdicts"). The others' data lag is 0.
    pub fn lags_filings(self) -> bool {
        matches!(
            self,
            Indicator::CoreIndustryRevenueCny
                | Indicator::ClusterRevenueCny
                | Indicator::DigitalEconomyAddedValueCny
                | Indicator::DigitalEconomyAddedValueGrowth
        )
    }

    /// Position in [`Indicator::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One output series: an indicator and its tag value ([`NO_TAG`] when it has no tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The indicator.
    pub indicator: Indicator,
    /// The tag value's index in its enumeration, or [`NO_TAG`].
    pub tag: u8,
}

impl SeriesKey {
    /// A series without a tag.
    pub fn plain(indicator: Indicator) -> Self {
        SeriesKey {
            indicator,
            tag: NO_TAG,
        }
    }

    /// A tagged series.
    pub fn tagged(indicator: Indicator, tag: u8) -> Self {
        SeriesKey { indicator, tag }
    }

    /// The tag as (key, value), if any.
    pub fn tag_pair(&self) -> Option<(&'static str, &'static str)> {
        let kind = self.indicator.tag_kind();
        Some((kind.key()?, kind.value(self.tag)?))
    }

    /// A readable name, e.g. `cluster_revenue_cny{cluster=cybersecurity}`.
    pub fn display(&self) -> String {
        match self.tag_pair() {
            Some((k, v)) => format!("{}{{{k}={v}}}", self.indicator.name()),
            None => self.indicator.name().to_string(),
        }
    }
}

/// Which part of a group a slot accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Part {
    /// The indicator's own value (counts and sums).
    Value,
    /// Availability: heartbeat seconds with status up or degraded.
    AvailableSeconds,
    /// Availability: all heartbeat seconds.
    TotalSeconds,
    /// Added value over the four quarters before the current four (growth's P).
    PreviousAddedValue,
}

impl Part {
    /// Every part, in declaration order (`ALL[p as usize] == p`).
    pub const ALL: [Part; 4] = [
        Part::Value,
        Part::AvailableSeconds,
        Part::TotalSeconds,
        Part::PreviousAddedValue,
    ];
}

/// One accumulated quantity: the unit the dataflow sums deltas into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slot {
    /// The group (an indicator, see [`Indicator::group`]).
    pub group: Indicator,
    /// Which quantity.
    pub part: Part,
    /// Tag value or [`NO_TAG`].
    pub tag: u8,
}

impl Slot {
    /// The value slot of a series.
    pub fn value(indicator: Indicator, tag: u8) -> Slot {
        Slot {
            group: indicator,
            part: Part::Value,
            tag,
        }
    }

    /// The slot as one word ordered as slots are (group, part, tag), for keys hashed and
    /// sorted as plain integers.
    pub fn pack(self) -> u32 {
        ((self.group.index() as u32) << 16) | ((self.part as u32) << 8) | self.tag as u32
    }

    /// The slot [`Slot::pack`] made `bits` from.
    pub fn unpack(bits: u32) -> Slot {
        Slot {
            group: Indicator::ALL[(bits >> 16) as usize],
            part: Part::ALL[((bits >> 8) & 0xff) as usize],
            tag: bits as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_24_unique_indicators() {
        assert_eq!(Indicator::ALL.len(), 24);
        let mut names: Vec<_> = Indicator::ALL.iter().map(|i| i.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 24);
        for i in Indicator::ALL {
            assert_eq!(Indicator::parse(i.name()), Some(*i));
            assert_eq!(i.group().stream(), i.stream());
        }
    }

    #[test]
    fn slots_pack_in_their_order() {
        let mut slots = Vec::new();
        for &group in Indicator::ALL {
            for part in Part::ALL {
                for tag in [0, 1, 7, NO_TAG] {
                    slots.push(Slot { group, part, tag });
                }
            }
        }
        for (i, p) in Part::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
        for a in &slots {
            assert_eq!(Slot::unpack(a.pack()), *a);
            for b in &slots {
                assert_eq!(a.pack().cmp(&b.pack()), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn tags_round_trip() {
        let kinds = [
            TagKind::Cluster,
            TagKind::Field,
            TagKind::Region,
            TagKind::PlatformKind,
        ];
        for kind in kinds {
            let mut n = 0;
            while let Some(v) = kind.value(n) {
                assert_eq!(kind.parse(v), Some(n));
                n += 1;
            }
            assert!(n >= 4);
        }
        assert_eq!(TagKind::Field.value(UNASSIGNED_FIELD), Some("unassigned"));
        let s = SeriesKey::tagged(Indicator::ClusterRevenueCny, 0);
        assert_eq!(s.display(), "cluster_revenue_cny{cluster=cybersecurity}");
    }
}
