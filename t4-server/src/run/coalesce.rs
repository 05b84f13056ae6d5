//! A client connection whose writes wait one turn of the runtime, so that the answers of
//! one durable batch leave together.
//!
//! When a batch of writes becomes durable, the core answers all of them at once, and each
//! answer wakes its gRPC handler task. The first handler to finish wakes its connection's
//! task, which would write that one answer to the socket (one `writev`, on loopback also the
//! receiver's whole TCP receive path) before the other handlers of the same connection have
//! run. [`Coalescing`] makes the connection's first attempt to write after a flush yield
//! instead — it asks to be polled again and reports the socket busy — so the handlers that
//! are already runnable queue their answers first, and one `writev` carries them all. The
//! delay is one pass of the runtime's queue, not a timer.
//!
//! It yields only while some call is still waiting for its answer ([`Answering`], counted
//! by [`AnsweringLayer`]): with none, nothing could join the write. A lone client's answer
//! then goes out at once; yielding would cost more than a pass of the queue, as a task that
//! wakes itself is queued behind the others and another worker is woken to steal it, so the
//! answer would leave from another thread (measured: `t4 run` with one writer; docs/benchmarks.md).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// How many gRPC calls wait for their service to answer, on every connection of a server.
/// A streaming call counts until its stream is set up, not while it streams.
#[derive(Clone, Debug, Default)]
pub struct Answering(Arc<AtomicUsize>);

impl Answering {
    /// Whether some call still waits for its answer.
    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// Counts one call until the returned guard is dropped.
    fn start(&self) -> Waiting {
        self.0.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }
}

/// One call counted in [`Answering`] until dropped.
#[derive(Debug)]
struct Waiting(Answering);

impl Drop for Waiting {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The layer that counts calls into an [`Answering`]:
/// `tonic::transport::Server::builder().layer(AnsweringLayer::new(answering.clone()))`.
#[derive(Clone, Debug)]
pub struct AnsweringLayer {
    answering: Answering,
}

impl AnsweringLayer {
    /// Counts calls into `answering`.
    pub fn new(answering: Answering) -> AnsweringLayer {
        AnsweringLayer { answering }
    }
}

impl<S> tower::Layer<S> for AnsweringLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            answering: self.answering.clone(),
        }
    }
}

/// A service whose calls are counted while they wait for their answer.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    answering: Answering,
}

impl<S, Req> tower::Service<Req> for Counted<S>
where
    S: tower::Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        CountedFuture {
            waiting: Some(self.answering.start()),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The answer of a [`Counted`] service; the call stops counting when it is ready (or
    /// dropped).
    pub struct CountedFuture<F> {
        #[pin]
        inner: F,
        waiting: Option<Waiting>,
    }
}

impl<F: Future> Future for CountedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        this.waiting.take();
        Poll::Ready(answer)
    }
}

/// A connection whose first write after each flush yields once while calls wait for their
/// answers (module docs).
#[derive(Debug)]
pub struct Coalescing<S> {
    inner: S,
    /// The server's calls waiting for their answers.
    answering: Answering,
    /// Set when a write yielded; the next write goes through and clears it.
    yielded: bool,
}

impl<S> Coalescing<S> {
    /// Wraps an accepted connection of the server whose calls `answering` counts.
    pub fn new(inner: S, answering: Answering) -> Coalescing<S> {
        Coalescing {
            inner,
            answering,
            yielded: false,
        }
    }

    /// `Pending` (having scheduled another poll) the first time while calls wait for their
    /// answers, `Ready` the next time or when none wait.
    fn take_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded || !self.answering.any() {
            self.yielded = false;
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl<S: Connected> Connected for Coalescing<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.take_turn(cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.take_turn(cx));
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn pair(answering: &Answering) -> (Coalescing<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            Coalescing::new(accepted.unwrap().0, answering.clone()),
            client.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_write_yields_once_then_goes_through_while_a_call_waits() {
        let answering = Answering::default();
        let _waiting = answering.start();
        let (mut conn, mut peer) = pair(&answering).await;
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);

        // First attempt: nothing written, and the task is asked to poll again.
        let first = Pin::new(&mut conn).poll_write(&mut cx, b"one");
        assert!(first.is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);

        // Second attempt: written.
        match Pin::new(&mut conn).poll_write_vectored(&mut cx, &[IoSlice::new(b"one")]) {
            Poll::Ready(Ok(3)) => {}
            other => panic!("expected the write to go through, got {other:?}"),
        }
        // And the next write after it yields again.
        assert!(Pin::new(&mut conn).poll_write(&mut cx, b"two").is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        match Pin::new(&mut conn).poll_write(&mut cx, b"two") {
            Poll::Ready(Ok(3)) => {}
            other => panic!("expected the write to go through, got {other:?}"),
        }

        let mut got = [0u8; 6];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"onetwo");
    }

    #[tokio::test]
    async fn a_write_goes_through_at_once_when_no_call_waits() {
        let answering = Answering::default();
        let (mut conn, mut peer) = pair(&answering).await;
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..2 {
            match Pin::new(&mut conn).poll_write(&mut cx, b"one") {
                Poll::Ready(Ok(3)) => {}
                other => panic!("expected the write to go through, got {other:?}"),
            }
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no turn was taken");
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"oneone");
    }

    /// Answers when `gate` is open.
    #[derive(Clone)]
    struct Gated(Arc<std::sync::atomic::AtomicBool>);

    impl tower::Service<()> for Gated {
        type Response = ();
        type Error = ();
        type Future = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            let gate = self.0.clone();
            Box::pin(std::future::poll_fn(move |cx| {
                if gate.load(Ordering::SeqCst) {
                    Poll::Ready(Ok(()))
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }))
        }
    }

    #[tokio::test]
    async fn the_layer_counts_a_call_until_it_is_answered_or_dropped() {
        use tower::{Layer, Service};
        let answering = Answering::default();
        let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut service = AnsweringLayer::new(answering.clone()).layer(Gated(gate.clone()));
        assert!(!answering.any());

        let dropped = service.call(());
        assert!(answering.any(), "a call waits for its answer");
        drop(dropped);
        assert!(!answering.any(), "a dropped call no longer waits");

        let mut answered = Box::pin(service.call(()));
        let waker = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        assert!(answered.as_mut().poll(&mut cx).is_pending());
        assert!(answering.any());
        gate.store(true, Ordering::SeqCst);
        assert!(matches!(
            answered.as_mut().poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(!answering.any(), "an answered call no longer waits");
    }

    #[tokio::test]
    async fn reads_are_not_delayed() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut peer) = pair(&Answering::default()).await;
        peer.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        assert!(conn.connect_info().remote_addr().is_some());
    }
}
