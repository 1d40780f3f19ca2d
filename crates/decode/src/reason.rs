//! Rejection reasons of docs/events.md ("Rejected events"), in the order they are checked.

use paceline_model::Stream;

/// Why an event was rejected. Declaration order is the order of checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Over 65 536 bytes.
    TooLarge,
    /// Brackets nested deeper than 32 levels.
    TooDeep,
    /// Not UTF-8, not JSON, not an object, or a repeated key.
    InvalidJson,
    /// `type` missing, not a string or unknown.
    UnknownType,
    /// The type belongs to another stream than its topic.
    WrongStream,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `occurred_at` is not RFC 3339 with an offset.
    BadTimestamp,
    /// An enumeration value outside its list, or a bad `period`.
    UnknownValue,
    /// A number or string length outside its range.
    OutOfRange,
    /// Older than the stream's watermark minus its correction horizon.
    TooLate,
}

impl Reason {
    /// Every reason, in checking order.
    pub const ALL: [Reason; 11] = [
        Reason::TooLarge,
        Reason::TooDeep,
        Reason::InvalidJson,
        Reason::UnknownType,
        Reason::WrongStream,
        Reason::MissingField,
        Reason::WrongType,
        Reason::BadTimestamp,
        Reason::UnknownValue,
        Reason::OutOfRange,
        Reason::TooLate,
    ];

    /// The reason's name in dead letters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::TooDeep => "too_deep",
            Reason::InvalidJson => "invalid_json",
            Reason::UnknownType => "unknown_type",
            Reason::WrongStream => "wrong_stream",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::UnknownValue => "unknown_value",
            Reason::OutOfRange => "out_of_range",
            Reason::TooLate => "too_late",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: the reason, the stream where it can be told, and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The reason.
    pub reason: Reason,
    /// The stream, where it can be told (else counted under `unknown`).
    pub stream: Option<Stream>,
    /// What exactly was wrong (field name and why).
    pub detail: String,
}

impl Rejection {
    /// An event that admission refused: older than its stream's watermark minus the
    /// correction horizon (`event_time` decides; this is what replay and serve both say).
    pub fn too_late(stream: Stream) -> Rejection {
        Rejection {
            reason: Reason::TooLate,
            stream: Some(stream),
            detail: "older than the watermark minus the correction horizon".into(),
        }
    }

    /// The stream's name, or `unknown`.
    pub fn stream_name(&self) -> &'static str {
        self.stream.map_or("unknown", |s| s.as_str())
    }
}
