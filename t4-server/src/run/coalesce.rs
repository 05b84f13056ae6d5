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

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A connection whose first write after each flush yields once (module docs).
#[derive(Debug)]
pub struct Coalescing<S> {
    inner: S,
    /// Set when a write yielded; the next write goes through and clears it.
    yielded: bool,
}

impl<S> Coalescing<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Coalescing<S> {
        Coalescing {
            inner,
            yielded: false,
        }
    }

    /// `Pending` (having scheduled another poll) the first time, `Ready` the next.
    fn take_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
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
        std::task::ready!(this.take_turn(cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.take_turn(cx));
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

    async fn pair() -> (Coalescing<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Coalescing::new(accepted.unwrap().0), client.unwrap())
    }

    #[tokio::test]
    async fn a_write_yields_once_then_goes_through() {
        let (mut conn, mut peer) = pair().await;
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
    async fn reads_are_not_delayed() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut peer) = pair().await;
        peer.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        assert!(conn.connect_info().remote_addr().is_some());
    }
}
