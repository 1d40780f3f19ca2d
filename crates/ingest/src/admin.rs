//! Asking the brokers about topics: their partitions, creating the missing ones, the
//! largest message a topic takes.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::IngestError;

/// Why a topic could not be described: the reason, and whether waiting cannot help (the
/// broker says the topic does not exist).
pub(crate) type Undescribed = (String, bool);

/// The partitions of `topic` as the brokers describe them now, sorted.
pub(crate) fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, Undescribed> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| (e.to_string(), false))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| ("topic missing from the metadata".to_string(), false))?;
    if let Some(e) = t.error() {
        let code = RDKafkaErrorCode::from(e);
        let missing = matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
        );
        let reason = if missing {
            "the topic does not exist".to_string()
        } else {
            format!("{code:?}")
        };
        return Err((reason, missing));
    }
    let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    parts.sort_unstable();
    if parts.is_empty() {
        return Err(("the topic has no partitions".into(), false));
    }
    Ok(parts)
}

/// A topic to create when it is missing.
#[derive(Debug, Clone)]
pub struct NewTopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// `retention.ms`; None keeps everything (`-1`).
    pub retention_ms: Option<u64>,
}

/// Creates those of `topics` the brokers do not have; returns the names created. A topic
/// another client created meanwhile counts as there.
pub fn create_missing_topics(
    config: &ClientConfig,
    topics: &[NewTopicSpec],
    timeout: Duration,
) -> Result<Vec<String>, IngestError> {
    let brokers = config.get("bootstrap.servers").unwrap_or("").to_string();
    let consumer: BaseConsumer = config.create().map_err(|source| IngestError::Client {
        what: "metadata client",
        source,
    })?;
    let mut missing = Vec::new();
    for t in topics {
        match describe(&consumer, &t.name, timeout) {
            Ok(_) => {}
            Err((_, true)) => missing.push(t),
            Err((reason, false)) => {
                return Err(IngestError::Metadata {
                    topic: t.name.clone(),
                    brokers,
                    reason,
                })
            }
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| IngestError::Client {
            what: "admin client",
            source,
        })?;
    let retention: Vec<String> = missing
        .iter()
        .map(|t| t.retention_ms.map_or("-1".to_string(), |ms| ms.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retention)
        .map(|(t, r)| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
            .set("retention.ms", r)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results =
        block_on(admin.create_topics(&new, &options)).map_err(|e| IngestError::Metadata {
            topic: missing
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            brokers: brokers.clone(),
            reason: format!("cannot create: {e}"),
        })?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(IngestError::Metadata {
                    topic: name,
                    brokers,
                    reason: format!("cannot create: {code}"),
                })
            }
        }
    }
    Ok(created)
}

/// The topic's `max.message.bytes` as the brokers describe it; `None` where they do not
/// say (a broker without DescribeConfigs, or no answer within `timeout`).
pub fn topic_max_message_bytes(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Option<usize> {
    let admin: AdminClient<DefaultClientContext> = config.create().ok()?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described = block_on(
        admin.describe_configs(&[rdkafka::admin::ResourceSpecifier::Topic(topic)], &options),
    )
    .ok()?;
    described
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|e| e.name == "max.message.bytes")
        .and_then(|e| e.value?.parse().ok())
}

/// Runs a future to completion on this thread (the admin client's futures are completed
/// by its own background thread; no async runtime is needed, and a blocking caller may be
/// inside one).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
