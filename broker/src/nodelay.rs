//! TCP_NODELAY for the embedded broker's connections.
//!
//! rumqttd leaves Nagle's algorithm on for the connections it accepts, so each small packet it sends
//! (a PUBACK, a command forwarded to ingest, a verdict forwarded to the bridge) can wait for the peer's
//! delayed acknowledgement: tens of milliseconds per hop. rumqttd binds its listener itself and offers no
//! hook, but on Linux an accepted socket inherits TCP_NODELAY from its listening socket, so the option is
//! set on rumqttd's listening socket, found among this process's file descriptors by its local address.

use std::net::SocketAddr;

/// Sets TCP_NODELAY on this process's listening TCP socket bound to `addr`.
#[allow(unsafe_code)]
pub(crate) fn set_on_listener(addr: SocketAddr) -> std::io::Result<()> {
    let mut found = false;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() else { continue };
        if is_listener_on(fd, addr) {
            let one: libc::c_int = 1;
            // SAFETY: fd is an open socket of this process; the option value is a valid c_int.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            found = true;
        }
    }
    if found { Ok(()) } else { Err(std::io::Error::new(std::io::ErrorKind::NotFound, "listening socket not found")) }
}

/// Whether `fd` is a listening TCP socket bound to `addr`.
#[allow(unsafe_code)]
fn is_listener_on(fd: i32, addr: SocketAddr) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`; a non-socket fd just fails.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || accepting == 0 {
        return false;
    }
    // SAFETY: sockaddr_storage is plain data, valid when zeroed, and large enough for any address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut slen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `slen` bytes into `storage`.
    if unsafe { libc::getsockname(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut slen) } != 0 {
        return false;
    }
    let local = match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            SocketAddr::from((u32::from_be(sin.sin_addr.s_addr).to_be_bytes(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            SocketAddr::from((sin6.sin6_addr.s6_addr, u16::from_be(sin6.sin6_port)))
        }
        _ => return false,
    };
    local == addr
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        super::set_on_listener(addr).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "fd {}", accepted.as_raw_fd());
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        drop(other);
        assert!(super::set_on_listener("127.0.0.1:1".parse().unwrap()).is_err());
    }
}
