//! Request bodies that must keep arriving: a body that pauses longer than the allowed idle time, or that
//! after that time averages fewer bytes per second than the slowest accepted rate, ends in an error, so a
//! client sending a byte a second cannot hold a connection and an upload slot for hours.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::Exposure;

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum SlowBody {
    /// Nothing arrived for too long.
    #[error("the request body stalled: nothing arrived for {0} s")]
    Stalled(u64),
    /// Data arrived, but too slowly.
    #[error("the request body arrived too slowly ({rate} bytes/s on average; at least {min} are needed)")]
    TooSlow {
        /// The average rate so far.
        rate: u64,
        /// The slowest accepted rate.
        min: u64,
    },
}

/// A body timed as it arrives.
pub struct TimedBody {
    inner: Body,
    started: Instant,
    received: u64,
    idle: Duration,
    min_rate: u64,
    pause: Pin<Box<Sleep>>,
}

impl TimedBody {
    /// Times `inner` with `exposure`'s idle time and slowest rate.
    pub fn new(inner: Body, exposure: &Exposure) -> Self {
        let now = Instant::now();
        Self {
            inner,
            started: now,
            received: 0,
            idle: exposure.body_timeout,
            min_rate: exposure.min_body_rate,
            pause: Box::pin(tokio::time::sleep_until(now + exposure.body_timeout)),
        }
    }

    /// The error when the average rate is too low, once the idle time has passed since the start.
    fn too_slow(&self) -> Option<SlowBody> {
        let elapsed = self.started.elapsed();
        if elapsed <= self.idle {
            return None;
        }
        let rate = (self.received as f64 / elapsed.as_secs_f64()) as u64;
        (rate < self.min_rate).then_some(SlowBody::TooSlow {
            rate,
            min: self.min_rate,
        })
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                if let Some(slow) = this.too_slow() {
                    return Poll::Ready(Some(Err(axum::Error::new(slow))));
                }
                let deadline = Instant::now() + this.idle;
                this.pause.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.pause.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(SlowBody::Stalled(this.idle.as_secs()))))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The middleware: every request's body is timed.
pub async fn time_bodies(State(exposure): State<std::sync::Arc<Exposure>>, request: Request, next: Next) -> Response {
    let request = request.map(|body| Body::new(TimedBody::new(body, &exposure)));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(idle_ms: u64, min_rate: u64) -> Exposure {
        Exposure {
            body_timeout: Duration::from_millis(idle_ms),
            min_body_rate: min_rate,
            ..Exposure::default()
        }
    }

    /// A body that sends `chunks` chunks of `size` bytes, `gap` apart.
    struct Trickle {
        chunks: usize,
        size: usize,
        gap: Duration,
        next: Pin<Box<Sleep>>,
    }

    fn trickle(chunks: usize, size: usize, gap: Duration) -> Body {
        Body::new(Trickle {
            chunks,
            size,
            gap,
            next: Box::pin(tokio::time::sleep(gap)),
        })
    }

    impl http_body::Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = &mut *self;
            if this.chunks == 0 {
                return Poll::Ready(None);
            }
            match this.next.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    this.chunks -= 1;
                    let deadline = Instant::now() + this.gap;
                    this.next.as_mut().reset(deadline);
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![7u8; this.size])))))
                }
            }
        }
    }

    async fn read(body: TimedBody) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(Body::new(body), usize::MAX).await
    }

    #[tokio::test]
    async fn a_steady_body_arrives_whole() {
        let body = TimedBody::new(trickle(5, 100, Duration::from_millis(5)), &exposure(200, 1));
        assert_eq!(read(body).await.unwrap().len(), 500);
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_off() {
        let body = TimedBody::new(trickle(3, 10, Duration::from_millis(300)), &exposure(50, 1));
        let error = read(body).await.unwrap_err();
        assert!(format!("{error:?}").contains("Stalled"), "{error:?}");
    }

    #[tokio::test]
    async fn a_trickle_below_the_slowest_rate_is_cut_off_after_the_idle_time() {
        // 1 byte every 20 ms = 50 bytes/s, against 1000 bytes/s required after 100 ms.
        let body = TimedBody::new(trickle(50, 1, Duration::from_millis(20)), &exposure(100, 1000));
        let error = read(body).await.unwrap_err();
        assert!(format!("{error:?}").contains("TooSlow"), "{error:?}");
    }
}
