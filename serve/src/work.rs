//! Bounded work: each inference carries a [`WorkTicket`] — a deadline, and a flag raised when its client
//! goes away (the request's future is dropped) — that the worker checks before each slice, so a 3D walk
//! stops within one slice of either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a job stopped before it finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The request's time ran out.
    #[error("the request ran out of its {0} s of inference time")]
    Deadline(u64),
    /// The client went away.
    #[error("the client closed the connection")]
    Cancelled,
}

/// A job's deadline and cancellation flag.
#[derive(Clone, Debug)]
pub struct WorkTicket {
    deadline: Instant,
    budget: Duration,
    cancelled: Arc<AtomicBool>,
}

impl WorkTicket {
    /// A ticket for `budget` of work from now.
    pub fn new(budget: Duration) -> Self {
        Self {
            deadline: Instant::now() + budget,
            budget,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `Err` once the deadline has passed or the request was cancelled.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Interrupted::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(Interrupted::Deadline(self.budget.as_secs()));
        }
        Ok(())
    }

    /// A guard that cancels the ticket when dropped: held by the request's future, which is dropped when
    /// its client disconnects (or when it is done, when nothing is left to cancel).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Arc::clone(&self.cancelled))
    }
}

/// Cancels a [`WorkTicket`] when dropped.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_stops_at_its_deadline_or_when_its_guard_is_dropped() {
        let ticket = WorkTicket::new(Duration::from_secs(60));
        let guard = ticket.cancel_on_drop();
        assert_eq!(ticket.check(), Ok(()));
        drop(guard);
        assert_eq!(ticket.check(), Err(Interrupted::Cancelled));
        let expired = WorkTicket::new(Duration::ZERO);
        assert_eq!(expired.check(), Err(Interrupted::Deadline(0)));
    }
}
