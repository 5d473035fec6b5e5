//! TCP sockets set up the same way for every backend: `TCP_NODELAY`, and the socket buffer
//! sizes of [`Config`](crate::Config) set before `connect`/`listen` (so window scaling is
//! negotiated for them). Accepted sockets inherit the listener's buffer sizes.

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Config;

/// Backlog of a listening socket.
const LISTEN_BACKLOG: i32 = 128;

/// A connected, blocking TCP stream to `addr`, tuned by `config`.
pub(crate) fn connect(addr: SocketAddr, config: &Config) -> io::Result<TcpStream> {
    let fd = new_socket(addr)?;
    set_buffers(fd.as_raw_fd(), config)?;
    let (storage, len) = sockaddr(addr);
    loop {
        // SAFETY: `storage` holds a valid address of `len` bytes for the socket's family.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A listening TCP socket on `addr` (port 0 picks a free one), tuned by `config`.
pub(crate) fn listen(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let fd = new_socket(addr)?;
    let one: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, one)?;
    set_buffers(fd.as_raw_fd(), config)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: as in `connect`.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a plain call on a socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Tunes an accepted socket (its buffer sizes come from the listener).
pub(crate) fn tune_accepted(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}

fn new_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: creating a socket has no memory-safety preconditions.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_buffers(fd: RawFd, config: &Config) -> io::Result<()> {
    if config.socket_buffer_bytes == 0 {
        return Ok(());
    }
    let bytes = libc::c_int::try_from(config.socket_buffer_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket buffer too large"))?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
}

fn setsockopt(fd: RawFd, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clears `O_NONBLOCK`, so that io_uring waits for readiness instead of returning `EAGAIN`.
pub(crate) fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            let out = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { out.write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            let out = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { out.write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn connects_on_v4_and_v6_loopback() {
        let config = Config::default();
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let addr: SocketAddr = host.parse().unwrap();
            let listener = match listen(addr, &config) {
                Ok(l) => l,
                // A machine without IPv6 loopback: nothing to test there.
                Err(e) if addr.is_ipv6() => {
                    eprintln!("skipping {host}: {e}");
                    continue;
                }
                Err(e) => panic!("listen {host}: {e}"),
            };
            let local = listener.local_addr().unwrap();
            let mut client = connect(local, &config).unwrap();
            assert!(client.nodelay().unwrap());
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"hi").unwrap();
            let mut buf = [0u8; 2];
            server.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi");
        }
    }

    #[test]
    fn refused_connection_is_an_error() {
        let listener = listen("127.0.0.1:0".parse().unwrap(), &Config::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(connect(addr, &Config::default()).is_err());
    }
}
