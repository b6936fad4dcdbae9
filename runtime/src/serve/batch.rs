//! Batched response writes: a connection with a finished response lets every
//! other ready request on its worker run first, so that the responses of one
//! round go out back to back.
//!
//! Under load, sending each response the moment it is computed wakes the
//! client once per response: the client has gone back to waiting on its
//! sockets by the time the next one is ready, and waking it (an
//! inter-processor interrupt, costly in a VM) is a large share of a small
//! request. Sent back to back, the responses of one round wake it once. On
//! serving one core this took iris from about 21k to 26k requests/s and digits
//! from about 15k to 19k (`bench/serve.sh`).
//!
//! The deferral is tokio's yield: the connection's task is woken again after
//! the worker has polled its other ready tasks and checked for I/O, which it
//! does at least every few dozen tasks, so a response waits at most one round
//! of the worker's ready requests. With one request in flight, it waits only
//! for that check.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

type Yield = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An accepted connection that sends each response after its worker's
/// other ready tasks (see the module docs).
pub struct BatchedStream {
    io: TcpStream,
    /// Whether responses wait for their round at all.
    batch: bool,
    /// Whether the next write starts a response, and so waits for the round.
    armed: bool,
    /// The pending yield of a response waiting for its round.
    waiting: Option<Yield>,
}

impl AsyncRead for BatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl BatchedStream {
    /// An accepted connection whose responses wait for their round when
    /// `batch` is set.
    pub fn new(io: TcpStream, batch: bool) -> Self {
        // A response is one whole message: send it as soon as it is written.
        let _ = io.set_nodelay(true);
        BatchedStream {
            io,
            batch,
            armed: batch,
            waiting: None,
        }
    }

    /// Ready once this response's turn has come.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed {
            let turn = self
                .waiting
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(turn.as_mut().poll(cx));
            self.waiting = None;
            self.armed = false;
        }
        Poll::Ready(())
    }
}

impl AsyncWrite for BatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_turn(cx));
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_turn(cx));
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// The end of a response: the next write waits for its round again.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.armed = self.batch;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The gRPC server learns a connection's addresses as from a plain TCP one.
impl tonic::transport::server::Connected for BatchedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// A TCP listener whose connections batch their response writes (see the
/// module docs), or write each at once when batching is off.
pub struct BatchedListener {
    listener: TcpListener,
    batch: bool,
}

impl BatchedListener {
    /// Wraps `listener`.
    pub fn new(listener: TcpListener, batch: bool) -> Self {
        BatchedListener { listener, batch }
    }
}

impl axum::serve::Listener for BatchedListener {
    type Io = BatchedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (BatchedStream::new(io, self.batch), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// One accepted connection of a fresh listener, and its client end.
    async fn connection(batch: bool) -> (BatchedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = BatchedListener::new(listener, batch);
        let (client, (server, _)) = tokio::join!(
            TcpStream::connect(addr),
            axum::serve::Listener::accept(&mut listener)
        );
        (server, client.unwrap())
    }

    fn write(s: &mut BatchedStream, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(s).poll_write(&mut Context::from_waker(Waker::noop()), bytes)
    }

    fn written(p: Poll<io::Result<usize>>) -> usize {
        match p {
            Poll::Ready(Ok(n)) => n,
            other => panic!("expected a completed write, got {other:?}"),
        }
    }

    /// With batching, a response's first write waits for one round of the
    /// worker (the task yields once); its later writes and the flush go
    /// straight through, and the flush arms the next response. Without
    /// batching nothing waits. Either way the bytes arrive in order.
    #[tokio::test(flavor = "current_thread")]
    async fn a_response_waits_one_round_only_when_batching() {
        for batch in [true, false] {
            let (mut server, mut client) = connection(batch).await;
            for response in [&b"first"[..], b"second"] {
                let start = write(&mut server, &response[..2]);
                let n = if batch {
                    assert!(start.is_pending(), "batching, a response starts by waiting");
                    tokio::task::yield_now().await;
                    written(write(&mut server, &response[..2]))
                } else {
                    written(start)
                };
                assert_eq!(n, 2);
                assert_eq!(
                    written(write(&mut server, &response[2..])),
                    response.len() - 2
                );
                let flush =
                    Pin::new(&mut server).poll_flush(&mut Context::from_waker(Waker::noop()));
                assert!(matches!(flush, Poll::Ready(Ok(()))), "batch={batch}");
            }
            drop(server);
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"firstsecond", "batch={batch}");
        }
    }
}
