//! The network allowlist: a sandboxed task with `allow_hosts` still gets its own empty
//! network namespace, plus one way out: an HTTP proxy on the namespace's loopback that
//! connects only to the allowed hosts.
//!
//! How it is wired, without `unsafe`:
//! 1. Before entering the namespace, the trampoline starts `owl __sandbox-proxy` (still in
//!    the host's network) with one end of a Unix socket pair as its stdin.
//! 2. Inside the new namespace it brings `lo` up (one netlink message), binds a TCP listener
//!    on 127.0.0.1 and passes the listener's descriptor over the socket pair (SCM_RIGHTS).
//! 3. The proxy accepts on that listener (its connections live in the task's namespace) and
//!    dials out from the host's namespace, for `CONNECT host:port` and absolute-form HTTP
//!    requests whose host is on the list; anything else gets `403`.
//!
//! The task finds the proxy through `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, which curl, git,
//! pip, npm, cargo and the coding CLIs honour. A program that ignores them has no network.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// The hidden subcommand that runs the proxy.
pub const SUBCOMMAND: &str = "__sandbox-proxy";
/// The variable that carries the allowlist (JSON array) to the proxy.
pub const ALLOW_VAR: &str = "OWL_SANDBOX_ALLOW";

/// Whether `host:port` is allowed by `list`. Entries are `host`, `host:port`, `*.domain`
/// (any subdomain, not the domain itself) or `*` (anything); names compare case-insensitively.
pub fn allowed(list: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    list.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let (pattern, want_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse::<u16>() {
                Ok(p) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), Some(p)),
                Err(_) => (entry.clone(), None),
            },
            _ => (entry.clone(), None),
        };
        if want_port.is_some_and(|p| p != port) {
            return false;
        }
        if pattern == "*" {
            return true;
        }
        match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        }
    })
}

/// Step 1: starts the proxy process; returns it and this side of the socket pair.
pub(crate) fn spawn(allow: &[String]) -> Result<(std::process::Child, OwnedFd), String> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (ours, theirs) =
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).map_err(|e| format!("socketpair: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the owl binary: {e}"))?;
    let child = std::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .env(ALLOW_VAR, serde_json::to_string(allow).expect("a list of strings serializes"))
        .env_remove(crate::SPEC_VAR)
        .stdin(std::process::Stdio::from(theirs))
        .spawn()
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    Ok((child, ours))
}

/// Step 2, inside the namespace: loopback up, a listener handed to the proxy. Returns the
/// port the task connects to.
pub(crate) fn hand_over(channel: &OwnedFd) -> Result<u16, String> {
    loopback_up()?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("cannot listen on the namespace's loopback: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let fd: OwnedFd = listener.into();
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        return Err("cannot attach the listener to the message".into());
    }
    rustix::net::sendmsg(channel, &[IoSlice::new(b"L")], &mut control, rustix::net::SendFlags::empty())
        .map_err(|e| format!("cannot hand the listener to the proxy: {e}"))?;
    Ok(port)
}

/// `ip link set lo up`, as one RTM_NEWLINK request (a fresh namespace's `lo` is index 1).
fn loopback_up() -> Result<(), String> {
    use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const IFF_UP: u32 = 1;
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None).map_err(|e| format!("netlink socket: {e}"))?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    msg.extend_from_slice(&[0u8, 0u8]); // ifi_family AF_UNSPEC, padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    send(&fd, &msg, SendFlags::empty()).map_err(|e| format!("netlink send: {e}"))?;
    let mut buf = [0u8; 256];
    let (_, n) = recv(&fd, &mut buf[..], RecvFlags::empty()).map_err(|e| format!("netlink reply: {e}"))?;
    // nlmsghdr (16 bytes), then for NLMSG_ERROR (type 2) an i32 error code: 0 is success.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(format!("bringing loopback up failed: {}", std::io::Error::from_raw_os_error(-code)));
        }
    }
    Ok(())
}

/// The proxy process (`owl __sandbox-proxy`): receives the listener on stdin, then serves.
/// Exits when its parent (the task) is gone.
pub fn serve() -> ! {
    let allow: Vec<String> = match std::env::var(ALLOW_VAR).ok().and_then(|j| serde_json::from_str(&j).ok()) {
        Some(a) => a,
        None => {
            eprintln!("owl proxy: {ALLOW_VAR} is missing; this subcommand is started by the sandbox");
            std::process::exit(2);
        }
    };
    let listener = match receive_listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("owl proxy: {e}");
            std::process::exit(2);
        }
    };
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    });
    let allow = std::sync::Arc::new(allow);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let allow = allow.clone();
        std::thread::spawn(move || {
            let _ = handle(conn, &allow);
        });
    }
    std::process::exit(0)
}

fn receive_listener() -> Result<TcpListener, String> {
    let stdin = std::io::stdin();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(stdin.as_fd(), &mut [IoSliceMut::new(&mut byte)], &mut control, rustix::net::RecvFlags::empty())
        .map_err(|e| format!("no listener arrived: {e}"))?;
    for msg in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(TcpListener::from(fd));
            }
        }
    }
    Err("the sandbox sent no listener".into())
}

/// One client connection: a request head, then a tunnel or a forwarded request.
fn handle(client: TcpStream, allow: &[String]) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.by_ref().take(8192).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if head.len() > 64 * 1024 {
            return refuse(client, 431, "request head too large");
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let first = text.lines().next().unwrap_or_default().to_string();
    let mut parts = first.split_whitespace();
    let (method, target, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("HTTP/1.1"));
    let (host, port, rewritten) = if method.eq_ignore_ascii_case("CONNECT") {
        match split_host_port(target, 443) {
            Some((h, p)) => (h, p, None),
            None => return refuse(client, 400, "CONNECT needs host:port"),
        }
    } else {
        let Some(rest) = target.strip_prefix("http://") else {
            return refuse(client, 400, "this proxy takes CONNECT or absolute http:// requests");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        match split_host_port(authority, 80) {
            Some((h, p)) => {
                let mut new_head = format!("{method} {path} {version}\r\n");
                new_head.push_str(text.split_once('\n').map(|x| x.1).unwrap_or(""));
                (h, p, Some(new_head))
            }
            None => return refuse(client, 400, "no host in the request"),
        }
    };
    if !allowed(allow, &host, port) {
        eprintln!("[owl sandbox] refused a connection to {host}:{port}: not in the task's network allowlist");
        return refuse(client, 403, &format!("{host}:{port} is not in this task's network allowlist (owl add --allow-host)"));
    }
    let addr = (host.as_str(), port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let upstream = match TcpStream::connect_timeout(&addr, Duration::from_secs(15)) {
        Ok(s) => s,
        Err(e) => return refuse(client, 502, &format!("cannot reach {host}:{port}: {e}")),
    };
    let mut client_w = client.try_clone()?;
    let mut upstream_w = upstream.try_clone()?;
    match rewritten {
        None => client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?,
        Some(h) => upstream_w.write_all(h.as_bytes())?,
    }
    // Bytes the reader already buffered belong to the upstream.
    let pending = reader.buffer().to_vec();
    upstream_w.write_all(&pending)?;
    client.set_read_timeout(None)?;
    let mut up_r = upstream;
    let down = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(std::net::Shutdown::Write);
    });
    let mut client_r = client;
    let _ = std::io::copy(&mut client_r, &mut upstream_w);
    let _ = upstream_w.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_string(), p.parse().ok()?)),
        _ if !s.is_empty() => Some((s.to_string(), default_port)),
        _ => None,
    }
}

fn refuse(mut client: TcpStream, code: u16, why: &str) -> std::io::Result<()> {
    let reason = match code {
        403 => "Forbidden",
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        _ => "Bad Gateway",
    };
    let body = format!("owl sandbox: {why}\n");
    write!(
        client,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn allowlist_matches_hosts_ports_and_subdomains() {
        let list: Vec<String> =
            ["api.anthropic.com", "*.github.com", "localhost:8080", "[::1]:9000"].iter().map(|s| s.to_string()).collect();
        assert!(allowed(&list, "api.anthropic.com", 443));
        assert!(allowed(&list, "API.Anthropic.com.", 443));
        assert!(!allowed(&list, "anthropic.com", 443));
        assert!(!allowed(&list, "api.anthropic.com.evil.net", 443));
        assert!(allowed(&list, "codeload.github.com", 443));
        assert!(!allowed(&list, "github.com", 443));
        assert!(!allowed(&list, "evilgithub.com", 443));
        assert!(allowed(&list, "localhost", 8080));
        assert!(!allowed(&list, "localhost", 8081));
        assert!(allowed(&list, "::1", 9000));
        assert!(!allowed(&[], "example.com", 80));
        assert!(allowed(&["*".to_string()], "example.com", 80));
    }
}
