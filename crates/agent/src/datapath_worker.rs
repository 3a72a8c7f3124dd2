//! The node's datapath on a thread of its own. Every BPF map and link operation is a system call
//! that can take long (a sync of many services, a slice of the conntrack sweep): run inline they
//! would hold one of the agent's two async workers, and with it the CNI server, cluster DNS and
//! the datastore watches. The controllers send the work here and await its result instead.
//!
//! One thread, one queue: the datapath's operations run one at a time in the order they were
//! sent, as they did under the mutex this replaces. Long work (garbage collection) is sent in
//! slices, so what is queued behind it (a pod's programs during CNI ADD) waits one slice at most.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use datapath::LbDatapath;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&mut dyn LbDatapath) + Send>;

/// The datapath thread stopped or a job on it panicked: no result.
#[derive(Debug, thiserror::Error)]
#[error("the datapath worker did not answer: its thread stopped or the operation panicked")]
pub struct WorkerGone;

impl From<WorkerGone> for datapath::Error {
    fn from(_: WorkerGone) -> Self {
        datapath::Error::Syscall {
            call: "the datapath worker thread",
            source: std::io::Error::other("it stopped, or the operation panicked"),
        }
    }
}

/// A handle on the datapath thread; clones share it. The thread ends when the last handle is
/// dropped.
#[derive(Clone)]
pub struct DatapathHandle {
    jobs: mpsc::Sender<Job>,
}

impl DatapathHandle {
    /// Moves `datapath` to a new thread named `datapath`. The thread inherits the calling
    /// thread's network namespace, which the datapath's attach operations work in.
    pub fn spawn(mut datapath: Box<dyn LbDatapath>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("datapath".into()).spawn(move || {
            for job in queue {
                // A panicking operation loses its own answer only (its caller gets
                // `WorkerGone`); the thread goes on with the next.
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(datapath.as_mut()))).is_err() {
                    tracing::error!("a datapath operation panicked");
                }
            }
        })?;
        Ok(DatapathHandle { jobs })
    }

    /// Sends `f` to the datapath thread at once and returns the future of its result: awaiting
    /// it leaves the async worker free. Calls run in the order they were made.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn LbDatapath) -> R + Send + 'static,
    ) -> impl std::future::Future<Output = Result<R, WorkerGone>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(f, tx);
        async move {
            sent?;
            rx.await.map_err(|_| WorkerGone)
        }
    }

    /// [`Self::call`] for the datapath's own fallible operations: a worker that did not answer
    /// is one more datapath error.
    pub async fn try_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn LbDatapath) -> datapath::Result<T> + Send + 'static,
    ) -> datapath::Result<T> {
        self.call(f).await?
    }

    fn send<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn LbDatapath) -> R + Send + 'static,
        reply: oneshot::Sender<R>,
    ) -> Result<(), WorkerGone> {
        let job: Job = Box::new(move |dp| {
            // The caller may have stopped waiting (shutdown): nothing to report then.
            let _ = reply.send(f(dp));
        });
        self.jobs.send(job).map_err(|_| WorkerGone)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use datapath::FakeDatapath;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn slow_datapath_work_leaves_the_async_worker_free() {
        let handle = DatapathHandle::spawn(Box::new(FakeDatapath::default())).unwrap();
        let slow = handle.call(|_| std::thread::sleep(Duration::from_millis(300)));
        // On a single-threaded runtime a blocked worker would starve this timer until the sleep ends.
        let started = Instant::now();
        let ticker = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started.elapsed()
        };
        let (slow, ticked) = tokio::join!(slow, ticker);
        slow.unwrap();
        assert!(ticked < Duration::from_millis(200), "the timer waited for the datapath: {ticked:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn operations_run_in_the_order_sent_and_a_panic_loses_only_its_own_answer() {
        let handle = DatapathHandle::spawn(Box::new(FakeDatapath::default())).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let order = order.clone();
                handle.call(move |_| order.lock().unwrap().push(i))
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
        let panicked = handle.call(|_| -> u8 { panic!("a bug in one operation") }).await;
        assert!(panicked.is_err());
        assert_eq!(handle.call(|dp| dp.gc_conntrack().unwrap()).await.unwrap(), 0, "the thread goes on");
    }
}
