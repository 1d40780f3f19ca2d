//! Names people read (docs/indicators.md, "Names people read"): every indicator, tag value,
//! status and verdict in English and Chinese, each indicator's unit, and numbers written as
//! people read them (money in CNY billions or millions, 亿元 or 万元; ratios as percentages;
//! counts as integers). Identifiers stay in the data and the API; every output that shows a
//! person a name takes it from here.

use crate::catalogue::{Indicator, SeriesKey, TagKind, UNASSIGNED_FIELD};
use crate::event::{Cluster, Field, PlatformKind, Region, Stream};
use crate::point::{Status, Verdict};

/// A language people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// Both languages.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    /// `en` or `zh`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// Parses `en`, `zh` and their regional forms (`zh-CN`, `en_GB`), case aside.
    pub fn parse(s: &str) -> Option<Lang> {
        let primary = s.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The language a browser's `Accept-Language` header prefers among ours: the highest
    /// `q` (1 when absent), the first listed among equals; `None` when it names neither.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f64, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let Some(lang) = pieces.next().and_then(Lang::parse) else {
                continue;
            };
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f64>().ok())
                .filter(|q| q.is_finite() && *q > 0.0);
            if let Some(q) = q {
                if best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, lang)| lang)
    }
}

/// A name in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Title {
    /// English.
    pub en: &'static str,
    /// 中文.
    pub zh: &'static str,
}

impl Title {
    /// The name in `lang`.
    pub fn get(self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Zh => self.zh,
        }
    }
}

const fn t(en: &'static str, zh: &'static str) -> Title {
    Title { en, zh }
}

/// What an indicator's values count or measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Enterprises.
    Enterprises,
    /// Money, CNY.
    Cny,
    /// Application scenarios.
    Scenarios,
    /// Application-scenario fields.
    Fields,
    /// Data zones.
    Zones,
    /// Projects.
    Projects,
    /// A ratio, read as a percentage (0.08 reads 8 %).
    Percent,
    /// API calls.
    Calls,
    /// Records.
    Records,
    /// Users.
    Users,
    /// Transactions.
    Transactions,
}

impl Unit {
    /// The unit's name, as a column header or an axis reads it.
    pub fn title(self) -> Title {
        match self {
            Unit::Enterprises => t("enterprises", "家"),
            Unit::Cny => t("CNY", "元"),
            Unit::Scenarios => t("scenarios", "个"),
            Unit::Fields => t("fields", "个领域"),
            Unit::Zones => t("zones", "个"),
            Unit::Projects => t("projects", "个"),
            Unit::Percent => t("percent", "%"),
            Unit::Calls => t("calls", "次"),
            Unit::Records => t("records", "条"),
            Unit::Users => t("users", "人"),
            Unit::Transactions => t("transactions", "笔"),
        }
    }

    /// Its identifier in the API and the dashboards: `enterprises`, `cny`, `percent`, ...
    pub fn code(self) -> &'static str {
        match self {
            Unit::Enterprises => "enterprises",
            Unit::Cny => "cny",
            Unit::Scenarios => "scenarios",
            Unit::Fields => "fields",
            Unit::Zones => "zones",
            Unit::Projects => "projects",
            Unit::Percent => "percent",
            Unit::Calls => "calls",
            Unit::Records => "records",
            Unit::Users => "users",
            Unit::Transactions => "transactions",
        }
    }

    /// `value` as people read it in `lang`: money in billions or millions of CNY (亿元 or
    /// 万元 in Chinese), a ratio as a percentage, a count as an integer.
    pub fn format(self, value: f64, lang: Lang) -> String {
        if !value.is_finite() {
            return "–".into();
        }
        match self {
            Unit::Cny => money(value, lang),
            Unit::Percent => match lang {
                Lang::En => format!("{:.1} %", value * 100.0),
                Lang::Zh => format!("{:.1}%", value * 100.0),
            },
            _ => grouped(value.round(), lang),
        }
    }
}

/// Money: English in CNY bn from a billion on, else CNY M; Chinese in 亿元 from 亿 (10⁸)
/// on, else 万元.
fn money(value: f64, lang: Lang) -> String {
    let a = value.abs();
    match lang {
        Lang::En if a >= 1e9 => format!("CNY {:.2} bn", value / 1e9),
        Lang::En => format!("CNY {:.1} M", value / 1e6),
        Lang::Zh if a >= 1e8 => format!("{:.2} 亿元", value / 1e8),
        Lang::Zh => format!("{:.1} 万元", value / 1e4),
    }
}

/// An integer with thousands separators in English (1,234), none in Chinese.
fn grouped(value: f64, lang: Lang) -> String {
    let n = value as i64;
    if lang == Lang::Zh {
        return n.to_string();
    }
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

impl Indicator {
    /// The indicator's title.
    pub fn title(self) -> Title {
        use Indicator::*;
        match self {
            QuasiUnicorns => t("Quasi-unicorn enterprises", "准独角兽企业"),
            SrdiEnterprises => t(
                "SRDI (\"specialized, refined, distinctive, innovative\") enterprises",
                "专精特新企业",
            ),
            ClusterEnterprises => t("Enterprises by industry cluster", "各产业集群企业数"),
            SmesOnCloud => t("SMEs on the cloud", "上云中小企业"),
            CoreIndustryRevenueCny => t(
                "Core digital-economy industry revenue, last four quarters",
                "数字经济核心产业营业收入（近四个季度）",
            ),
            ClusterRevenueCny => t(
                "Industry cluster revenue, last four quarters",
                "产业集群营业收入（近四个季度）",
            ),
            DigitalEconomyAddedValueCny => t(
                "Digital-economy added value, last four quarters",
                "数字经济增加值（近四个季度）",
            ),
            DigitalEconomyAddedValueGrowth => t(
                "Digital-economy added value growth, year on year",
                "数字经济增加值同比增速",
            ),
            ApplicationScenariosLive => t("Application scenarios live", "运行中应用场景"),
            ApplicationScenariosLaunched => {
                t("Application scenarios put in place", "已落地应用场景")
            }
            ApplicationScenariosLiveByField => t(
                "Application scenarios live, by field",
                "各领域运行中应用场景",
            ),
            ScenarioFieldsCovered => t("Application-scenario fields covered", "应用场景覆盖领域"),
            DataZonesOperational => t("Specialized data zones in operation", "已建成数据专区"),
            BenchmarkProjectsDelivered => t("Benchmark projects delivered", "已交付标杆项目"),
            DemonstrationProjectsUnderway => t(
                "Demonstration projects in the four key regions",
                "四大重点区域示范项目",
            ),
            DemonstrationProjectsUnderwayByRegion => t(
                "Demonstration projects underway, by region",
                "各区域在建及已交付示范项目",
            ),
            PlatformAvailability => t(
                "Platform availability, last 24 hours",
                "平台可用率（近24小时）",
            ),
            PlatformApiCalls => t(
                "Platform API calls, last 24 hours",
                "平台接口调用量（近24小时）",
            ),
            PlatformRecordsShared => t(
                "Platform records shared, last 24 hours",
                "平台数据共享条数（近24小时）",
            ),
            PlatformConnectedEnterprises => {
                t("Enterprises connected to platforms", "平台接入企业数")
            }
            ScenarioActiveUsers => t(
                "Application-scenario active users, last 7 days",
                "应用场景活跃用户（近7天）",
            ),
            ScenarioTransactions => t(
                "Application-scenario transactions, last 7 days",
                "应用场景交易笔数（近7天）",
            ),
            ScenarioValueCny => t(
                "Application-scenario transaction value, last 7 days",
                "应用场景交易额（近7天）",
            ),
            ScenariosIdle => t(
                "Live application scenarios idle for 7 days",
                "近7天无使用的运行中应用场景",
            ),
        }
    }

    /// The unit of its values.
    pub fn unit(self) -> Unit {
        use Indicator::*;
        match self {
            QuasiUnicorns
            | SrdiEnterprises
            | ClusterEnterprises
            | SmesOnCloud
            | PlatformConnectedEnterprises => Unit::Enterprises,
            CoreIndustryRevenueCny
            | ClusterRevenueCny
            | DigitalEconomyAddedValueCny
            | ScenarioValueCny => Unit::Cny,
            DigitalEconomyAddedValueGrowth | PlatformAvailability => Unit::Percent,
            ApplicationScenariosLive
            | ApplicationScenariosLaunched
            | ApplicationScenariosLiveByField
            | ScenariosIdle => Unit::Scenarios,
            ScenarioFieldsCovered => Unit::Fields,
            DataZonesOperational => Unit::Zones,
            BenchmarkProjectsDelivered
            | DemonstrationProjectsUnderway
            | DemonstrationProjectsUnderwayByRegion => Unit::Projects,
            PlatformApiCalls => Unit::Calls,
            PlatformRecordsShared => Unit::Records,
            ScenarioActiveUsers => Unit::Users,
            ScenarioTransactions => Unit::Transactions,
        }
    }
}

impl Cluster {
    /// The cluster's title.
    pub fn title(self) -> Title {
        match self {
            Cluster::Cybersecurity => t("Cybersecurity", "网络安全"),
            Cluster::UrbanTechnology => t("Urban technology", "城市科技"),
            Cluster::DigitalDesign => t("Digital design", "数字设计"),
            Cluster::DigitalContent => t("Digital content", "数字内容"),
            Cluster::Blockchain => t("Blockchain", "区块链"),
            Cluster::Metaverse => t("Metaverse", "元宇宙"),
            Cluster::OtherDigital => t("Other digital industries", "其他数字产业"),
            Cluster::NonDigital => t("Non-digital industries", "非数字产业"),
        }
    }
}

impl Region {
    /// The region's title.
    pub fn title(self) -> Title {
        match self {
            Region::AdministrativeOfficeArea => t("Administrative office area", "行政办公区"),
            Region::CanalBusinessDistrict => t("Canal business district", "运河商务区"),
            Region::ZhangjiawanDesignTown => t("Zhangjiawan design town", "张家湾设计小镇"),
            Region::CulturalTourismArea => t("Cultural tourism area", "文化旅游区"),
            Region::Other => t("Other areas", "其他区域"),
        }
    }
}

impl Field {
    /// The field's title.
    pub fn title(self) -> Title {
        match self {
            Field::DigitalCulturalTourism => t("Digital cultural tourism", "数字文旅"),
            Field::DigitalFinance => t("Digital finance", "数字金融"),
            Field::DigitalConsumption => t("Digital consumption", "数字消费"),
            Field::DigitalTrade => t("Digital trade", "数字贸易"),
            Field::DigitalGovernmentServices => t("Digital government services", "数字政务"),
            Field::SmartBuildings => t("Smart buildings", "智慧楼宇"),
            Field::IntelligentManufacturing => t("Intelligent manufacturing", "智能制造"),
            Field::DigitalAgriculture => t("Digital agriculture", "数字农业"),
        }
    }
}

impl PlatformKind {
    /// The platform kind's title.
    pub fn title(self) -> Title {
        match self {
            PlatformKind::NetworkCommunication => {
                t("Network communication infrastructure", "网络通信基础设施")
            }
            PlatformKind::GovernmentBigDataPlatform => {
                t("Government big-data platform", "政务大数据平台")
            }
            PlatformKind::IndustrialInternetPlatform => {
                t("Industrial internet platform", "工业互联网平台")
            }
            PlatformKind::SmePublicServicePlatform => {
                t("SME public service platform", "中小企业公共服务平台")
            }
        }
    }
}

impl TagKind {
    /// The title of tag value `tag` (the `unassigned` field included).
    pub fn title(self, tag: u8) -> Option<Title> {
        let i = tag as usize;
        match self {
            TagKind::None => None,
            TagKind::Cluster => Cluster::ALL.get(i).map(|c| c.title()),
            TagKind::Field if tag == UNASSIGNED_FIELD => {
                Some(t("Field not yet assigned", "未分配领域"))
            }
            TagKind::Field => Field::ALL.get(i).map(|f| f.title()),
            TagKind::Region => Region::ALL.get(i).map(|r| r.title()),
            TagKind::PlatformKind => PlatformKind::ALL.get(i).map(|k| k.title()),
        }
    }
}

impl SeriesKey {
    /// The series' title in `lang`: the indicator's, with its tag value's after a dash.
    pub fn title(&self, lang: Lang) -> String {
        let base = self.indicator.title().get(lang);
        match self.indicator.tag_kind().title(self.tag) {
            Some(tag) => match lang {
                Lang::En => format!("{base} — {}", tag.en),
                // A title already ending in a parenthesis takes its tag after a colon.
                Lang::Zh if base.ends_with('）') => format!("{base}：{}", tag.zh),
                Lang::Zh => format!("{base}（{}）", tag.zh),
            },
            None => base.to_string(),
        }
    }
}

impl Stream {
    /// The stream's title.
    pub fn title(self) -> Title {
        match self {
            Stream::Filings => t("Enterprise filings", "企业申报数据"),
            Stream::Telemetry => t("Platform telemetry", "平台运行数据"),
            Stream::Scenarios => t("Scenario and project records", "应用场景与项目数据"),
        }
    }
}

impl Status {
    /// The status's title.
    pub fn title(self) -> Title {
        match self {
            Status::Met => t("met", "已完成"),
            Status::OnTrack => t("on track", "按进度推进"),
            Status::AtRisk => t("at risk", "存在风险"),
            Status::Behind => t("behind", "进度滞后"),
        }
    }
}

impl Verdict {
    /// The verdict's title.
    pub fn title(self) -> Title {
        match self {
            Verdict::Met => t("met", "已完成"),
            Verdict::Missed => t("missed", "未完成"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planned_titles_are_the_contracts() {
        let s = |ind: Indicator| ind.title();
        assert_eq!(s(Indicator::QuasiUnicorns).zh, "准独角兽企业");
        assert_eq!(
            s(Indicator::ApplicationScenariosLaunched).en,
            "Application scenarios put in place"
        );
        assert_eq!(
            s(Indicator::DemonstrationProjectsUnderway).zh,
            "四大重点区域示范项目"
        );
        assert_eq!(
            s(Indicator::DigitalEconomyAddedValueGrowth).zh,
            "数字经济增加值同比增速"
        );
        assert_eq!(
            Indicator::DigitalEconomyAddedValueGrowth.unit(),
            Unit::Percent
        );
        assert_eq!(Status::Behind.title().zh, "进度滞后");
        assert_eq!(Verdict::Missed.title().zh, "未完成");
    }

    #[test]
    fn every_indicator_and_tag_value_has_two_titles() {
        for ind in Indicator::ALL {
            let title = ind.title();
            assert!(
                !title.en.is_empty() && !title.zh.is_empty(),
                "{}",
                ind.name()
            );
            assert!(!title.zh.is_ascii(), "{} reads Chinese", ind.name());
            for tag in ind.tag_kind().tags() {
                let key = SeriesKey::tagged(*ind, tag);
                for lang in Lang::ALL {
                    assert!(!key.title(lang).is_empty());
                }
                if ind.tag_kind().key().is_some() {
                    assert!(ind.tag_kind().title(tag).is_some(), "{}", key.display());
                }
            }
        }
    }

    #[test]
    fn numbers_read_as_people_read_them() {
        // Hand-written: 5 500 000 000 is CNY 5.50 bn, 55.00 亿元; 12 300 000 is CNY 12.3 M,
        // 1230.0 万元; 0.0596 is 6.0 %; counts are integers.
        assert_eq!(Unit::Cny.format(5.5e9, Lang::En), "CNY 5.50 bn");
        assert_eq!(Unit::Cny.format(5.5e9, Lang::Zh), "55.00 亿元");
        assert_eq!(Unit::Cny.format(1.23e7, Lang::En), "CNY 12.3 M");
        assert_eq!(Unit::Cny.format(1.23e7, Lang::Zh), "1230.0 万元");
        assert_eq!(Unit::Percent.format(0.0596, Lang::En), "6.0 %");
        assert_eq!(Unit::Percent.format(0.0596, Lang::Zh), "6.0%");
        assert_eq!(Unit::Enterprises.format(1234.0, Lang::En), "1,234");
        assert_eq!(Unit::Enterprises.format(1234.0, Lang::Zh), "1234");
        assert_eq!(Unit::Scenarios.format(7.0, Lang::En), "7");
        assert_eq!(Lang::parse("zh-CN"), Some(Lang::Zh));
        assert_eq!(Lang::parse("en_GB"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }

    #[test]
    fn accept_language_picks_the_preferred_of_ours() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Some(Lang::Zh)
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR, en-GB;q=0.7, zh;q=0.5"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.3, zh-TW;q=0.6"),
            Some(Lang::Zh)
        );
        assert_eq!(Lang::from_accept_language("en-US,zh"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("zh;q=0, fr"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }
}
