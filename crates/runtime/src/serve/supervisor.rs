//! The running pipeline's stop, as one supervisor does it: each stage stopped in the order
//! data flows (stop reading, drain, flush, checkpoint), all under one deadline. A stage
//! that fails or runs out of time does not stop the others from being stopped: they are
//! told that the run failed (a sink is then not waited for, a pending checkpoint is
//! abandoned), and the first failure is the result.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::commit::CommitProgress;
use super::status::SourceStatus;
use super::{PipelineError, ServeError};

/// The one stop signal of a run: raised once, by the supervisor's first stage stop; every
/// stage's loop looks at it between two units of work.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, or less once cancelled (looked at every 100 ms, so a stop is seen within
    /// that); true when cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while !self.is_cancelled() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        true
    }
}

/// How a stage that fails for good stops the run: the supervisor, waiting in
/// `until_stopped`, receives the first report and stops every stage.
#[derive(Debug, Clone)]
pub(crate) struct Fatal(UnboundedSender<ServeError>);

impl Fatal {
    /// A reporter and the supervisor's end.
    pub fn channel() -> (Fatal, UnboundedReceiver<ServeError>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Fatal(tx), rx)
    }

    pub fn report(&self, e: ServeError) {
        // The supervisor gone means the run is already stopping: nothing is left to tell.
        let _ = self.0.send(e);
    }
}

/// What every stage is started with: the stop signal, the fatal reporter, and the typed
/// status the stages share (written by one, read by the others; never read back from the
/// metrics).
#[derive(Clone)]
pub(crate) struct StageContext {
    pub cancel: Cancel,
    pub fatal: Fatal,
    /// Per partition: where its source stands, the broker's end, idle; per stream: the
    /// watermark (the lag, the page's freshness and the gauges read it).
    pub status: Arc<SourceStatus>,
    /// Points handed and acknowledged, dead letters delivered: whether a checkpoint counts.
    pub progress: CommitProgress,
}

/// How a stage's stop ended: done, failed, or the deadline passed (`Err(None)`).
pub(crate) type Stopped = Result<(), Option<ServeError>>;

/// A stage's stop in progress.
pub(crate) type Stopping = Pin<Box<dyn Future<Output = Stopped> + Send>>;

/// What a stage is told when it is stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopContext {
    /// Every stage's stop ends by then.
    pub deadline: Instant,
    /// The run failed, or an earlier stage failed to stop: output is not waited for.
    pub failed: bool,
}

/// One stage of the running pipeline, as the supervisor stops it.
pub(crate) trait Stage: Send {
    /// Its name, in the log when its stop fails.
    fn name(&self) -> &'static str;

    /// Stops it (the stage's threads joined, its tasks ended) within `ctx.deadline`.
    fn stop(self: Box<Self>, ctx: StopContext) -> Stopping;
}

/// How long a stage started at or past the deadline may take.
const AFTER_DEADLINE: Duration = Duration::from_secs(1);

/// Stops `stages` in order within `timeout`; the first failure (`early`, the run's own,
/// first of all) is the result. A stage's stop that outlives the deadline is a timeout,
/// named by `timed_out`.
pub(crate) async fn stop_in_order(
    stages: Vec<Box<dyn Stage>>,
    early: Option<ServeError>,
    timeout: Duration,
    timed_out: impl Fn() -> ServeError,
) -> Option<ServeError> {
    let deadline = Instant::now() + timeout;
    let mut failure = early;
    for stage in stages {
        let name = stage.name();
        let ctx = StopContext {
            deadline,
            failed: failure.is_some(),
        };
        // A stage that waits past the deadline by itself is cut there, or a second after
        // it starts: the stages after a slow one still get to flush or abandon.
        let cut = deadline.max(Instant::now() + AFTER_DEADLINE);
        let bounded = tokio::time::timeout_at(cut.into(), stage.stop(ctx));
        let result = match bounded.await {
            Ok(r) => r,
            Err(_) => Err(None),
        };
        if let Err(e) = result {
            let e = e.unwrap_or_else(&timed_out);
            tracing::warn!(stage = name, error = %e, "stopping a stage failed");
            prefer(&mut failure, e);
        }
    }
    failure
}

/// Keeps the first failure, except that a part's stop signal gives way to the error the
/// part's thread hands over.
fn prefer(failure: &mut Option<ServeError>, e: ServeError) {
    if matches!(
        failure,
        None | Some(ServeError::Pipeline(PipelineError::Stopped(_)))
    ) {
        *failure = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What each stage saw, in the order the supervisor stopped them.
    type Log = Arc<Mutex<Vec<(&'static str, bool)>>>;

    enum Then {
        Done,
        Fail,
        Hang,
    }

    struct Fake {
        name: &'static str,
        then: Then,
        log: Log,
    }

    impl Stage for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn stop(self: Box<Self>, ctx: StopContext) -> Stopping {
            self.log.lock().unwrap().push((self.name, ctx.failed));
            Box::pin(async move {
                match self.then {
                    Then::Done => Ok(()),
                    Then::Fail => Err(Some(ServeError::Kafka(format!("{} failed", self.name)))),
                    Then::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            })
        }
    }

    fn stages(log: &Log, plan: Vec<(&'static str, Then)>) -> Vec<Box<dyn Stage>> {
        plan.into_iter()
            .map(|(name, then)| {
                Box::new(Fake {
                    name,
                    then,
                    log: log.clone(),
                }) as Box<dyn Stage>
            })
            .collect()
    }

    fn run(plan: Vec<(&'static str, Then)>, timeout: Duration) -> (Option<String>, Log) {
        let log = Log::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let failure = rt.block_on(stop_in_order(stages(&log, plan), None, timeout, || {
            ServeError::ShutdownTimeout(timeout.as_secs(), 0)
        }));
        (failure.map(|e| e.to_string()), log)
    }

    #[test]
    fn every_stage_is_stopped_in_flow_order() {
        let (failure, log) = run(
            vec![
                ("drain", Then::Done),
                ("sink", Then::Done),
                ("checkpoints", Then::Done),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(failure, None);
        assert_eq!(
            *log.lock().unwrap(),
            vec![("drain", false), ("sink", false), ("checkpoints", false)]
        );
    }

    /// A failing stage: the later ones are still stopped, told the run failed (a pending
    /// checkpoint is then abandoned), and the first failure is the result.
    #[test]
    fn a_failure_is_kept_and_the_later_stages_are_told() {
        let (failure, log) = run(
            vec![
                ("drain", Then::Done),
                ("sink", Then::Fail),
                ("dead letters", Then::Fail),
                ("checkpoints", Then::Done),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(failure.as_deref(), Some("Kafka: sink failed"));
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                ("drain", false),
                ("sink", false),
                ("dead letters", true),
                ("checkpoints", true)
            ]
        );
    }

    /// A stage that does not stop by itself is cut at the deadline, named a timeout, and
    /// the rest are still stopped (past the deadline, at once).
    #[test]
    fn a_stage_that_hangs_is_cut_at_the_deadline() {
        let started = Instant::now();
        let (failure, log) = run(
            vec![("drain", Then::Hang), ("checkpoints", Then::Done)],
            Duration::from_millis(300),
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not cut at the deadline"
        );
        assert!(
            failure
                .as_deref()
                .is_some_and(|f| f.contains("shutdown did not finish")),
            "{failure:?}"
        );
        assert_eq!(
            *log.lock().unwrap(),
            vec![("drain", false), ("checkpoints", true)]
        );
    }

    /// A stage sleeping between two looks sees the stop within a slice, not after its
    /// whole sleep; one that is not stopped sleeps the time asked.
    #[test]
    fn a_cancelled_sleep_ends_at_the_stop() {
        let cancel = Cancel::default();
        let started = Instant::now();
        assert!(!cancel.sleep(Duration::from_millis(150)));
        assert!(started.elapsed() >= Duration::from_millis(150));
        let stopper = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stopper.cancel();
        });
        let started = Instant::now();
        assert!(cancel.sleep(Duration::from_secs(600)));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stop was not seen"
        );
        t.join().unwrap();
        assert!(cancel.is_cancelled());
    }

    /// The first report reaches the supervisor; reporting once it has gone is harmless.
    #[test]
    fn a_fatal_report_reaches_the_supervisor() {
        let (fatal, mut rx) = Fatal::channel();
        fatal
            .clone()
            .report(ServeError::Kafka("broker gone".into()));
        assert_eq!(rx.try_recv().unwrap().to_string(), "Kafka: broker gone");
        drop(rx);
        fatal.report(ServeError::Kafka("after the stop".into()));
    }
}
