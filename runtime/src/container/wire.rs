//! The message format shared by the helper and the monitors: one JSON value per
//! `SOCK_SEQPACKET` packet, with file descriptors attached as SCM_RIGHTS.
//!
//! Also the Unix socket plumbing both need: a listener and a connect that work
//! whatever the length of the state root (a socket path is limited to 107 bytes).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    recvmsg, sendmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags,
    SocketType,
};
use serde::{Deserialize, Serialize};

/// Largest message (a spec with the seccomp profile is ~40 KiB).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Most fds one message may carry (a process's stdin, stdout and stderr).
pub const MAX_FDS: usize = 3;

/// Socket paths longer than this are reached through `/proc/self/fd/<dir>/<name>`.
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed message: {0}")]
    Protocol(String),
}

/// Sends `value` with `fds` as one packet. Never raises SIGPIPE.
pub fn send_message(
    socket: BorrowedFd<'_>,
    value: &impl Serialize,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_MESSAGE {
        return Err(io::Error::other("message larger than 1 MiB"));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many fds for one message"));
    }
    let sent = loop {
        match sendmsg(
            socket,
            &[IoSlice::new(&body)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    if sent != body.len() {
        return Err(io::Error::other("short write on a packet socket"));
    }
    Ok(())
}

/// One message and its fds; `None` when the peer closed the socket.
pub fn recv_message<T: for<'de> Deserialize<'de>>(
    socket: BorrowedFd<'_>,
) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
    // Sized to the packet: zeroing 1 MiB per message cost ~1 ms per container.
    let mut body = vec![0u8; next_packet_len(socket)?.clamp(1, MAX_MESSAGE)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut body)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            // A peer that died with unread data resets instead of closing.
            Err(rustix::io::Errno::CONNRESET) => return Ok(None),
            other => break other.map_err(io::Error::from)?,
        }
    };
    let fds = received_fds(&mut control);
    if received.bytes == 0 {
        return Ok(None);
    }
    if received.flags.contains(ReturnFlags::TRUNC) || received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(WireError::Protocol("message truncated".into()));
    }
    let body = body.get(..received.bytes).unwrap_or_default();
    let value = serde_json::from_slice(body).map_err(|e| WireError::Protocol(e.to_string()))?;
    Ok(Some((value, fds)))
}

/// The length of the next packet, without taking it (0 when the peer closed).
fn next_packet_len(socket: BorrowedFd<'_>) -> Result<usize, WireError> {
    loop {
        let mut nothing = [0u8; 0];
        match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut nothing)],
            &mut RecvAncillaryBuffer::default(),
            RecvFlags::PEEK | RecvFlags::TRUNC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CONNRESET) => return Ok(0),
            Err(e) => return Err(io::Error::from(e).into()),
            Ok(received) => return Ok(received.bytes),
        }
    }
}

fn received_fds(control: &mut RecvAncillaryBuffer<'_>) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    fds
}

/// Connects a `SOCK_SEQPACKET` socket to the listener at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    with_short_path(path, |short| {
        let address = SocketAddrUnix::new(short)?;
        rustix::net::connect(&socket, &address)?;
        Ok(())
    })?;
    Ok(socket)
}

/// Binds a listening `SOCK_SEQPACKET` socket at `path` (replacing a stale one).
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    with_short_path(path, |short| {
        let address = SocketAddrUnix::new(short)?;
        rustix::net::bind(&socket, &address)?;
        Ok(())
    })?;
    rustix::net::listen(&socket, 64)?;
    Ok(socket)
}

/// Accepts one connection (close-on-exec).
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Calls `f` with `path`, or, when that is too long for a socket address, with
/// `/proc/self/fd/<n>/<name>` where `n` is an open handle on its directory.
fn with_short_path(path: &Path, f: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other(format!(
            "socket path {} has no directory",
            path.display()
        )));
    };
    let dir = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_fd().as_raw_fd().to_string())
        .join(name);
    f(&short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::socketpair;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Ping {
        n: u32,
    }

    #[test]
    fn messages_and_fds_cross_the_socket() {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send_message(a.as_fd(), &Ping { n: 7 }, &[devnull.as_fd()]).unwrap();
        let (got, fds) = recv_message::<Ping>(b.as_fd()).unwrap().unwrap();
        assert_eq!(got, Ping { n: 7 });
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv_message::<Ping>(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn large_messages_arrive_whole() {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let big = "x".repeat(150_000);
        send_message(a.as_fd(), &big, &[]).unwrap();
        send_message(a.as_fd(), &"small", &[]).unwrap();
        let (got, _) = recv_message::<String>(b.as_fd()).unwrap().unwrap();
        assert_eq!(got, big);
        let (got, _) = recv_message::<String>(b.as_fd()).unwrap().unwrap();
        assert_eq!(got, "small");
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        send_message(a.as_fd(), &"not a ping", &[]).unwrap();
        let err = recv_message::<Ping>(b.as_fd()).unwrap_err();
        assert!(matches!(err, WireError::Protocol(_)), "{err}");
    }

    #[test]
    fn long_socket_paths_work() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("monitor.sock");
        assert!(path.as_os_str().len() > 107);
        let listener = listen(&path).unwrap();
        let client = connect(&path).unwrap();
        let server = accept(listener.as_fd()).unwrap();
        send_message(client.as_fd(), &Ping { n: 1 }, &[]).unwrap();
        let (got, _) = recv_message::<Ping>(server.as_fd()).unwrap().unwrap();
        assert_eq!(got, Ping { n: 1 });
        // A stale socket file is replaced.
        drop(listener);
        let _again = listen(&path).unwrap();
    }
}
