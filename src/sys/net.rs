//! Socket setup and accepting.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog for every public listener (the kernel caps it at
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 65535;

/// A non-blocking TCP listener bound with `SO_REUSEPORT`, so that each reactor
/// can own one socket on the same address and the kernel spreads accepts.
///
/// `send_buffer` is set as `SO_SNDBUF`, which accepted sockets inherit
/// (no system call per connection): it fixes each connection's kernel send
/// queue instead of letting it autotune up to `tcp_wmem`'s maximum (megabytes
/// per stalled listener). Returns the listener and the size the kernel
/// granted (it doubles the request, within `net.core.wmem_max`).
pub fn reuseport_listener(addr: SocketAddr, send_buffer: usize) -> io::Result<(OwnedFd, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_send_buffer_size(send_buffer)?;
    let granted = socket.send_buffer_size()?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok((socket.into(), granted))
}

/// One accepted connection: its fd (non-blocking, close-on-exec) and peer.
pub struct Accepted {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` on a listener. `Ok(None)` means the
/// accept queue is empty (`EAGAIN`).
pub fn accept(listener: RawFd) -> io::Result<Option<Accepted>> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a zeroed sockaddr_storage that outlives the call and
    // `len` holds its exact size, as accept4(2) requires.
    let fd = unsafe {
        libc::accept4(
            listener,
            storage.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the kernel wrote a socket address of `len` bytes into `storage`;
    // reading it as sockaddr_storage is valid, and the family field says which
    // concrete type it holds.
    let storage = unsafe { storage.assume_init() };
    Ok(Some(Accepted {
        fd,
        peer: to_socket_addr(&storage),
    }))
}

fn to_socket_addr(storage: &libc::sockaddr_storage) -> SocketAddr {
    match storage.ss_family as libc::c_int {
        libc::AF_INET6 => {
            // SAFETY: the family is AF_INET6, so the storage holds a sockaddr_in6,
            // which is smaller than and alignment-compatible with sockaddr_storage.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))
        }
        _ => {
            // SAFETY: accept4 on our IPv4/IPv6 listeners yields AF_INET or
            // AF_INET6; for AF_INET the storage holds a sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            ))
        }
    }
}

/// The IP address of a connected socket's peer.
pub fn peer_ip(fd: BorrowedFd<'_>) -> Option<std::net::IpAddr> {
    let addr: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getpeername(fd.as_raw_fd()).ok()?;
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(std::net::IpAddr::V4(v4.ip()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| std::net::IpAddr::V6(v6.ip()))
}

/// Makes the next close abortive (`SO_LINGER` 0: a reset), so that whatever
/// the kernel still holds for this socket is freed at once instead of
/// lingering in an orphaned connection.
pub fn abort_on_close(fd: BorrowedFd<'_>) {
    let _ = socket2::SockRef::from(&fd).set_linger(Some(std::time::Duration::ZERO));
}

/// Half-closes the write side, so the peer sees the end of a response while we
/// keep draining what it still sends (avoids a reset that eats the response).
pub fn shutdown_write(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}
