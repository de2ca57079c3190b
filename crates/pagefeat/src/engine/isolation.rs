//! The walls around the Chromium process itself (issue 15 item 6): a network namespace of its
//! own, an unprivileged user with Chromium's sandbox on, and a DevTools forwarder across the
//! namespace boundary.
//!
//! With [`Isolation::Netns`] (the default) Chromium is started as
//! `unshare --net -- sh -c '<ip> link set lo up && exec <setpriv> --reuid=U --regid=G
//! --clear-groups -- chromium …'`: `unshare` and `sh` exec in place, so the process pagefeat
//! spawned *is* the browser, the first process of a network namespace that holds only `lo`
//! (brought up so DevTools can listen on it). It then runs as `chromium.sandbox_uid` /
//! `chromium.sandbox_gid` (default 65534, `nobody`) without `--no-sandbox`: Chromium's
//! namespace sandbox needs only unprivileged user namespaces, not the setuid helper. Its
//! profile directory is handed to that user.
//!
//! DevTools listens on `127.0.0.1:<port>` *inside* that namespace. pagefeat reaches it through
//! a [`Forwarder`]: a listener on the outer `127.0.0.1:0`; for each connection a fresh thread
//! enters the browser's namespace (`setns` on `/proc/<pid>/ns/net`), connects there (a socket
//! keeps the namespace it was created in), and hands the stream to tokio, which copies bytes
//! both ways. The one DevTools connection of a browser is therefore the only traffic in its
//! namespace, on `lo`. Cost: one thread start per connection (one per browser launch) and a
//! copy of every DevTools message through pagefeat; see the README for `pagefeat bench`
//! figures before and after.
//!
//! This needs root (`CAP_SYS_ADMIN` to create the namespace and to enter it from pagefeat): an
//! unprivileged pagefeat could make the namespace inside a user namespace of its own, but could
//! not `setns` into it to reach DevTools. Without root, or when `unshare`, `ip` or `setpriv`
//! are missing or the kernel refuses a network namespace, [`check`] fails with
//! [`Error::IsolationUnavailable`]; there is no silent fallback. [`Isolation::None`] runs
//! Chromium as before: in pagefeat's own namespace, as pagefeat's user, with `--no-sandbox`
//! (root cannot run the sandbox), DevTools straight on 127.0.0.1.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use svckit::process::{ProcessSpec, find_program};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// How Chromium is walled off from the machine (`chromium.isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A network namespace of its own (only `lo`), an unprivileged user and Chromium's sandbox
    /// on; needs root (see the module docs).
    #[default]
    Netns,
    /// Pagefeat's own namespace and user, `--no-sandbox`: only the in-browser walls.
    None,
}

/// The user a root pagefeat runs Chromium as: 65534 (`nobody`).
pub const DEFAULT_SANDBOX_ID: u32 = 65_534;

/// How long the namespace probe of [`check`] may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The tools a namespaced launch runs before Chromium, resolved to paths.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    unshare: PathBuf,
    ip: PathBuf,
    setpriv: PathBuf,
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::IsolationUnavailable {
        reason: reason.into(),
    }
}

/// Checks that [`Isolation::Netns`] can work here: pagefeat runs as root, `unshare`, `ip` and
/// `setpriv` are found, and `unshare --net true` succeeds (the kernel allows a new network
/// namespace). `None` for [`Isolation::None`].
///
/// # Errors
/// [`Error::IsolationUnavailable`] naming what is missing.
pub(crate) fn check(isolation: Isolation) -> Result<Option<Tools>> {
    check_as(isolation, nix::unistd::geteuid().is_root())
}

/// [`check`] for a pagefeat that is (`root`) or is not root.
fn check_as(isolation: Isolation, root: bool) -> Result<Option<Tools>> {
    if isolation == Isolation::None {
        return Ok(None);
    }
    if !root {
        return Err(unavailable(
            "a network namespace for Chromium needs root (CAP_SYS_ADMIN to create it and to \
             reach DevTools inside it); run as root or set chromium.isolation = \"none\"",
        ));
    }
    let find = |name: &str| {
        find_program(name).ok_or_else(|| {
            unavailable(format!(
                "`{name}` not found (util-linux / iproute2); run scripts/setup or set \
                 chromium.isolation = \"none\""
            ))
        })
    };
    let tools = Tools {
        unshare: find("unshare")?,
        ip: find("ip")?,
        setpriv: find("setpriv")?,
    };
    probe(&tools.unshare)?;
    Ok(Some(tools))
}

/// Runs `unshare --net -- true` and waits for it (bounded).
fn probe(unshare: &Path) -> Result<()> {
    let mut child = ProcessSpec::new(unshare.display().to_string())
        .args(["--net", "--", "true"])
        .spawn()
        .map_err(|e| unavailable(format!("starting `unshare`: {e}")))?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_exit_status() {
            if status.success() {
                return Ok(());
            }
            return Err(unavailable(format!(
                "`unshare --net true` failed ({status}): {}; set chromium.isolation = \"none\"",
                child.log_tail(3).trim()
            )));
        }
        if started.elapsed() > PROBE_TIMEOUT {
            return Err(unavailable("`unshare --net true` did not finish"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The spec that starts `chromium` with `args` in a new network namespace as `uid`:`gid`
/// (module docs). `chromium` must be a path.
pub(crate) fn namespaced_spec(
    tools: &Tools,
    chromium: &Path,
    args: &[String],
    uid: u32,
    gid: u32,
) -> ProcessSpec {
    // $0 = ip, $1 = setpriv, $2 = uid, $3 = gid, then Chromium and its arguments.
    let script = "\"$0\" link set lo up && s=\"$1\" && u=\"$2\" && g=\"$3\" && shift 3 && \
                  exec \"$s\" --reuid=\"$u\" --regid=\"$g\" --clear-groups -- \"$@\"";
    ProcessSpec::new(tools.unshare.display().to_string())
        .args(["--net", "--", "sh", "-c", script])
        .arg(&tools.ip)
        .arg(&tools.setpriv)
        .arg(uid.to_string())
        .arg(gid.to_string())
        .arg(chromium)
        .args(args)
}

/// Gives `path` to `uid`:`gid` (the profile and its parent, so the sandbox user can write).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn hand_over(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io("changing the owner of", path, e))
}

/// Identity of a network namespace: the inode of `/proc/<pid>/ns/net`.
///
/// # Errors
/// [`Error::ProcRead`].
pub fn netns_of(pid: Option<u32>) -> Result<u64> {
    let path = PathBuf::from(match pid {
        Some(pid) => format!("/proc/{pid}/ns/net"),
        None => "/proc/self/ns/net".to_owned(),
    });
    fs_err::metadata(&path)
        .map(|m| m.ino())
        .map_err(|source| Error::ProcRead { path, source })
}

/// Accepts DevTools connections on the outer 127.0.0.1 and forwards each to Chromium's port
/// inside its network namespace (module docs). Stops accepting when dropped.
#[derive(Debug)]
pub(crate) struct Forwarder {
    outer: SocketAddr,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Opens `/proc/<pid>/ns/net` (it must differ from pagefeat's own) and listens on
    /// 127.0.0.1:0 for connections to forward to `inner` in that namespace.
    ///
    /// # Errors
    /// [`Error::ProcRead`]; [`Error::IsolationUnavailable`] when the process is in pagefeat's
    /// own namespace; [`Error::Io`] when the listener cannot be bound.
    pub(crate) async fn start(pid: u32, inner: SocketAddr) -> Result<Self> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if netns_of(Some(pid))? == netns_of(None)? {
            return Err(unavailable(format!(
                "Chromium (pid {pid}) is in pagefeat's own network namespace"
            )));
        }
        let netns = fs_err::File::open(&path)
            .map_err(|source| Error::ProcRead {
                path: path.clone(),
                source,
            })?
            .into_parts()
            .0;
        let netns = Arc::new(netns);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::io("binding", "127.0.0.1:0 (DevTools forwarder)", e))?;
        let outer = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of", "the DevTools forwarder", e))?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut outside, _)) = listener.accept().await else {
                    break;
                };
                let netns = Arc::clone(&netns);
                tokio::spawn(async move {
                    match connect_in(netns, inner).await {
                        Ok(mut inside) => {
                            let copied =
                                tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                            tracing::debug!(?copied, "devtools forward closed");
                        }
                        Err(error) => {
                            tracing::warn!(%error, %inner, "devtools forward: connect failed");
                        }
                    }
                });
            }
        });
        tracing::debug!(%outer, %inner, pid, "devtools forwarder listening");
        Ok(Self { outer, task })
    }

    /// The outer address to connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.outer
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `inner` from a new thread that entered `netns` (the thread ends after the
/// connect, so no pool thread is left in the namespace).
async fn connect_in(
    netns: Arc<std::fs::File>,
    inner: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pagefeat-netns".to_owned())
        .spawn(move || {
            let stream = nix::sched::setns(&*netns, CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
                .and_then(|()| std::net::TcpStream::connect_timeout(&inner, PROBE_TIMEOUT));
            let _ = tx.send(stream);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("namespace thread ended without an answer"))??;
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn parse_ws(ws: &str) -> Result<url::Url> {
    url::Url::parse(ws).map_err(|e| Error::chromium("reading the DevTools URL", e))
}

/// The address in a DevTools URL (`ws://127.0.0.1:<port>/devtools/browser/<id>`).
///
/// # Errors
/// [`Error::Chromium`] when the URL does not parse or names no address.
pub(crate) fn ws_addr(ws: &str) -> Result<SocketAddr> {
    parse_ws(ws)?
        .socket_addrs(|| None)
        .ok()
        .and_then(|a| a.first().copied())
        .ok_or_else(|| Error::chromium("reading the DevTools URL", "no address in it"))
}

/// The DevTools URL `ws` with the host and port of `outer`.
///
/// # Errors
/// [`Error::Chromium`] when the URL does not parse or has no host.
pub(crate) fn ws_at(ws: &str, outer: SocketAddr) -> Result<String> {
    let mut url = parse_ws(ws)?;
    url.set_ip_host(outer.ip())
        .and_then(|()| url.set_port(Some(outer.port())))
        .map_err(|()| Error::chromium("rewriting the DevTools URL", "not a host URL"))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devtools_url_is_moved_to_the_forwarder() {
        let outer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let ws = "ws://127.0.0.1:36741/devtools/browser/12-ab";
        assert_eq!(
            ws_at(ws, outer).unwrap(),
            "ws://127.0.0.1:4000/devtools/browser/12-ab"
        );
        assert_eq!(ws_addr(ws).unwrap(), "127.0.0.1:36741".parse().unwrap());
    }

    #[test]
    fn netns_without_root_is_a_typed_error_not_a_fallback() {
        let error = check_as(Isolation::Netns, false).unwrap_err();
        assert!(
            matches!(&error, Error::IsolationUnavailable { reason } if reason.contains("root")),
            "{error:?}"
        );
        assert!(check_as(Isolation::None, false).unwrap().is_none());
    }

    #[test]
    fn the_isolation_setting_reads_as_kebab_case() {
        let netns: Isolation = serde_json::from_str("\"netns\"").unwrap();
        let none: Isolation = serde_json::from_str("\"none\"").unwrap();
        assert_eq!((netns, none), (Isolation::Netns, Isolation::None));
        assert_eq!(Isolation::default(), Isolation::Netns);
    }
}
