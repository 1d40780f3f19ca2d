//! The typed events of the three input streams (docs/events.md), after validation.
//!
//! Only what the indicators read is kept: names and `source` are dropped once validated.
//! These structs cross timely workers, so they are plain owned data (bincode-friendly).

use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

use crate::time::{Nanos, QuarterIndex};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The value as written in events and outputs.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the spelling used in events.
            #[allow(clippy::should_implement_trait)]
            pub fn from_str(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize { self as usize }
        }
    };
}

/// The three input streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stream {
    /// Enterprise filings.
    Filings,
    /// Platform telemetry.
    Telemetry,
    /// Scenario and project usage and stages.
    Scenarios,
}

impl Stream {
    /// All streams.
    pub const ALL: [Stream; 3] = [Stream::Filings, Stream::Telemetry, Stream::Scenarios];
    /// The stream's name in metrics and dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Filings => "filings",
            Stream::Telemetry => "telemetry",
            Stream::Scenarios => "scenarios",
        }
    }
    /// Position in [`Stream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
    /// Parses a stream name.
    pub fn parse(s: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

string_enum!(
    /// Industry cluster of an enterprise.
    Cluster {
        /// Cybersecurity.
        Cybersecurity = "cybersecurity",
        /// Urban technology.
        UrbanTechnology = "urban_technology",
        /// Digital design.
        DigitalDesign = "digital_design",
        /// Digital content.
        DigitalContent = "digital_content",
        /// Blockchain.
        Blockchain = "blockchain",
        /// Metaverse.
        Metaverse = "metaverse",
        /// Other core digital industry.
        OtherDigital = "other_digital",
        /// Not a core digital-economy industry.
        NonDigital = "non_digital",
    }
);

impl Cluster {
    /// Whether the cluster is a core digital-economy industry.
    pub fn is_core(self) -> bool {
        self != Cluster::NonDigital
    }
}

string_enum!(
    /// Region of the district.
    Region {
        /// Administrative office area.
        AdministrativeOfficeArea = "administrative_office_area",
        /// Canal business district.
        CanalBusinessDistrict = "canal_business_district",
        /// Zhangjiawan design town.
        ZhangjiawanDesignTown = "zhangjiawan_design_town",
        /// Cultural tourism area.
        CulturalTourismArea = "cultural_tourism_area",
        /// Elsewhere.
        Other = "other",
    }
);

impl Region {
    /// Whether it is one of the four key regions of the plan (all but `other`).
    pub fn is_key(self) -> bool {
        self != Region::Other
    }
}

string_enum!(
    /// The eight application-scenario fields.
    Field {
        /// Digital cultural tourism.
        DigitalCulturalTourism = "digital_cultural_tourism",
        /// Digital finance.
        DigitalFinance = "digital_finance",
        /// Digital consumption.
        DigitalConsumption = "digital_consumption",
        /// Digital trade.
        DigitalTrade = "digital_trade",
        /// Digital government services.
        DigitalGovernmentServices = "digital_government_services",
        /// Smart buildings.
        SmartBuildings = "smart_buildings",
        /// Intelligent manufacturing.
        IntelligentManufacturing = "intelligent_manufacturing",
        /// Digital agriculture.
        DigitalAgriculture = "digital_agriculture",
    }
);

string_enum!(
    /// Kind of digital-infrastructure platform.
    PlatformKind {
        /// Network and communication.
        NetworkCommunication = "network_communication",
        /// Government big-data platform.
        GovernmentBigDataPlatform = "government_big_data_platform",
        /// Industrial internet platform.
        IndustrialInternetPlatform = "industrial_internet_platform",
        /// SME public service platform.
        SmePublicServicePlatform = "sme_public_service_platform",
    }
);

string_enum!(
    /// Kind of project.
    ProjectKind {
        /// A data zone.
        DataZone = "data_zone",
        /// A benchmark project.
        BenchmarkProject = "benchmark_project",
        /// A demonstration project.
        DemonstrationProject = "demonstration_project",
    }
);

string_enum!(
    /// Heartbeat status of a platform.
    PlatformStatus {
        /// Up.
        Up = "up",
        /// Degraded (still counts as available).
        Degraded = "degraded",
        /// Down.
        Down = "down",
    }
);

string_enum!(
    /// Stage of an application scenario.
    ScenarioStage {
        /// Planned.
        Planned = "planned",
        /// Piloting.
        Piloting = "piloting",
        /// Live.
        Live = "live",
        /// Retired.
        Retired = "retired",
    }
);

string_enum!(
    /// Stage of a project.
    ProjectStage {
        /// Planned.
        Planned = "planned",
        /// Underway.
        Underway = "underway",
        /// Delivered.
        Delivered = "delivered",
        /// Cancelled.
        Cancelled = "cancelled",
    }
);

/// One accepted event: envelope and typed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `event_id`, unique within its stream.
    pub id: SmolStr,
    /// `occurred_at` in nanoseconds since the epoch (finer fractions truncated).
    pub at: Nanos,
    /// The type-specific fields.
    pub body: Body,
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// `enterprise.registered`.
    Registered {
        /// `enterprise_id`.
        enterprise: SmolStr,
        /// `cluster`.
        cluster: Cluster,
        /// `region`.
        region: Region,
        /// `sme`.
        sme: bool,
    },
    /// `enterprise.deregistered`.
    Deregistered {
        /// `enterprise_id`.
        enterprise: SmolStr,
    },
    /// `enterprise.valuation`.
    Valuation {
        /// `enterprise_id`.
        enterprise: SmolStr,
        /// `valuation_cny`.
        valuation_cny: f64,
    },
    /// `enterprise.certification` (certification `srdi`).
    Certification {
        /// `enterprise_id`.
        enterprise: SmolStr,
        /// `action` is `granted` (else `revoked`).
        granted: bool,
    },
    /// `enterprise.financials`.
    Financials {
        /// `enterprise_id`.
        enterprise: SmolStr,
        /// `period` as a quarter index.
        period: QuarterIndex,
        /// `revenue_cny`.
        revenue_cny: f64,
        /// `added_value_cny`.
        added_value_cny: f64,
        /// `revision`.
        revision: u64,
    },
    /// `enterprise.cloud_migration`.
    CloudMigration {
        /// `enterprise_id`.
        enterprise: SmolStr,
        /// `level` is `deep` (else `basic`).
        deep: bool,
    },
    /// `platform.heartbeat`.
    Heartbeat {
        /// `platform_id`.
        platform: SmolStr,
        /// `platform_kind`.
        kind: PlatformKind,
        /// `status`.
        status: PlatformStatus,
        /// `interval_s`.
        interval_s: f64,
    },
    /// `platform.usage`.
    PlatformUsage {
        /// `platform_id`.
        platform: SmolStr,
        /// `platform_kind`.
        kind: PlatformKind,
        /// `api_calls`.
        api_calls: u64,
        /// `records_shared`.
        records_shared: u64,
        /// `connected_enterprises`.
        connected_enterprises: u64,
    },
    /// `scenario.stage`.
    ScenarioStage {
        /// `scenario_id`.
        scenario: SmolStr,
        /// `field`.
        field: Field,
        /// `region`.
        region: Region,
        /// `stage`.
        stage: ScenarioStage,
    },
    /// `scenario.usage`.
    ScenarioUsage {
        /// `scenario_id`.
        scenario: SmolStr,
        /// `active_users`.
        active_users: u64,
        /// `transactions`.
        transactions: u64,
        /// `value_cny`.
        value_cny: f64,
    },
    /// `project.stage`.
    ProjectStage {
        /// `project_id`.
        project: SmolStr,
        /// `project_kind`.
        kind: ProjectKind,
        /// `region`.
        region: Region,
        /// `stage`.
        stage: ProjectStage,
    },
}

/// The event types of docs/events.md: each type's name and stream live in
/// [`EventType::TABLE`] and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `enterprise.registered`.
    Registered,
    /// `enterprise.deregistered`.
    Deregistered,
    /// `enterprise.valuation`.
    Valuation,
    /// `enterprise.certification`.
    Certification,
    /// `enterprise.financials`.
    Financials,
    /// `enterprise.cloud_migration`.
    CloudMigration,
    /// `platform.heartbeat`.
    Heartbeat,
    /// `platform.usage`.
    PlatformUsage,
    /// `scenario.stage`.
    ScenarioStage,
    /// `scenario.usage`.
    ScenarioUsage,
    /// `project.stage`.
    ProjectStage,
}

impl EventType {
    /// Every type with its name and stream, in declaration order (so that a type's row is
    /// at its discriminant).
    pub const TABLE: [(EventType, &'static str, Stream); 11] = [
        (
            EventType::Registered,
            "enterprise.registered",
            Stream::Filings,
        ),
        (
            EventType::Deregistered,
            "enterprise.deregistered",
            Stream::Filings,
        ),
        (
            EventType::Valuation,
            "enterprise.valuation",
            Stream::Filings,
        ),
        (
            EventType::Certification,
            "enterprise.certification",
            Stream::Filings,
        ),
        (
            EventType::Financials,
            "enterprise.financials",
            Stream::Filings,
        ),
        (
            EventType::CloudMigration,
            "enterprise.cloud_migration",
            Stream::Filings,
        ),
        (
            EventType::Heartbeat,
            "platform.heartbeat",
            Stream::Telemetry,
        ),
        (
            EventType::PlatformUsage,
            "platform.usage",
            Stream::Telemetry,
        ),
        (
            EventType::ScenarioStage,
            "scenario.stage",
            Stream::Scenarios,
        ),
        (
            EventType::ScenarioUsage,
            "scenario.usage",
            Stream::Scenarios,
        ),
        (EventType::ProjectStage, "project.stage", Stream::Scenarios),
    ];

    /// The `type` field's value.
    pub fn name(self) -> &'static str {
        Self::TABLE[self as usize].1
    }

    /// The stream events of this type belong to.
    pub fn stream(self) -> Stream {
        Self::TABLE[self as usize].2
    }

    /// The type named `name`, if any.
    pub fn from_name(name: &str) -> Option<EventType> {
        Self::TABLE
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(t, _, _)| *t)
    }
}

impl Body {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Body::Registered { .. } => EventType::Registered,
            Body::Deregistered { .. } => EventType::Deregistered,
            Body::Valuation { .. } => EventType::Valuation,
            Body::Certification { .. } => EventType::Certification,
            Body::Financials { .. } => EventType::Financials,
            Body::CloudMigration { .. } => EventType::CloudMigration,
            Body::Heartbeat { .. } => EventType::Heartbeat,
            Body::PlatformUsage { .. } => EventType::PlatformUsage,
            Body::ScenarioStage { .. } => EventType::ScenarioStage,
            Body::ScenarioUsage { .. } => EventType::ScenarioUsage,
            Body::ProjectStage { .. } => EventType::ProjectStage,
        }
    }

    /// The stream the event belongs to.
    pub fn stream(&self) -> Stream {
        self.event_type().stream()
    }

    /// The entity whose state the event changes: the key events are grouped by.
    pub fn entity(&self) -> &SmolStr {
        match self {
            Body::Registered { enterprise, .. }
            | Body::Deregistered { enterprise }
            | Body::Valuation { enterprise, .. }
            | Body::Certification { enterprise, .. }
            | Body::Financials { enterprise, .. }
            | Body::CloudMigration { enterprise, .. } => enterprise,
            Body::Heartbeat { platform, .. } | Body::PlatformUsage { platform, .. } => platform,
            Body::ScenarioStage { scenario, .. } | Body::ScenarioUsage { scenario, .. } => scenario,
            Body::ProjectStage { project, .. } => project,
        }
    }
}

/// Formats a quarter index as `YYYY-Qn`.
pub fn format_quarter(q: QuarterIndex) -> String {
    format!("{:04}-Q{}", q.div_euclid(4), q.rem_euclid(4) + 1)
}

#[cfg(test)]
mod event_type_tests {
    use super::*;

    #[test]
    fn each_row_sits_at_its_types_discriminant_and_names_are_unique() {
        for (i, (t, name, _)) in EventType::TABLE.iter().enumerate() {
            assert_eq!(*t as usize, i, "{name}");
            assert_eq!(EventType::from_name(name), Some(*t));
            assert_eq!(t.name(), *name);
        }
        assert_eq!(EventType::from_name("enterprise.unknown"), None);
        // The name's prefix is its stream's family (docs/events.md).
        for (t, name, stream) in EventType::TABLE {
            let family = name.split('.').next().unwrap_or_default();
            let expected = match family {
                "enterprise" => Stream::Filings,
                "platform" => Stream::Telemetry,
                _ => Stream::Scenarios,
            };
            assert_eq!(stream, expected, "{t:?}");
        }
    }
}
