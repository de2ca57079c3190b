//! The walls around the Chromium process itself (issue 15 item 6): a network namespace of its
//! own, an unprivileged user with Chromium's sandbox on, and the DevTools connection opened
//! from inside that namespace.
//!
//! With [`Isolation::Netns`] (the default) Chromium is started as
//! `unshare --net -- sh -c '<ip> link set lo up && exec <setpriv> --reuid=U --regid=G
//! --clear-groups -- chromium …'`: `unshare` and `sh` exec in place, so the process pagefeat
//! spawned *is* the browser, the first process of a network namespace that holds only `lo`
//! (brought up so DevTools can listen on it). It then runs as `chromium.sandbox_uid` /
//! `chromium.sandbox_gid` (default 65534, `nobody`) without `--no-sandbox`: Chromium's
//! namespace sandbox needs only unprivileged user namespaces, not the setuid helper. Its
//! profile directory (and `HOME`) is handed to that user.
//!
//! DevTools listens on `127.0.0.1:<port>` *inside* that namespace. pagefeat connects to it
//! from a fresh thread that entered the namespace (`setns` on `/proc/<pid>/ns/net`) and drives
//! chromiumoxide's `Browser::connect` there with the process's tokio runtime
//! (`Handle::block_on`): the WebSocket's TCP socket is created in the namespace and keeps it,
//! while the runtime polls it like any other socket; the thread then ends. The one DevTools
//! connection is the only traffic in the browser's namespace, on `lo`.
//!
//! Measured choice (debug build, 2 shared cores, `pagefeat bench --pages 30`, Chromium
//! pages/s, each pair back to back with the old `--no-sandbox` binary): a byte-copying
//! forwarder (outer 127.0.0.1 listener, each connection opened from a thread in the
//! namespace, `copy_bidirectional`) 0.63 vs 0.74 and 0.62 vs 0.72, and 0.62 with the sandbox
//! off, so the forwarder was the cost; the direct connection above 0.75 vs 0.75 and 0.62 vs
//! 0.61. The forwarder was dropped. (`--remote-debugging-pipe` is not an option: chromiumoxide 0.9 speaks
//! WebSocket only; Chromium has no Unix-socket DevTools listener.)
//!
//! This needs root (`CAP_SYS_ADMIN` to create the namespace and to enter it from pagefeat): an
//! unprivileged pagefeat could make the namespace inside a user namespace of its own, but could
//! not `setns` into it to reach DevTools. Without root, or when `unshare`, `ip` or `setpriv`
//! are missing or the kernel refuses a network namespace, launching fails with
//! [`Error::IsolationUnavailable`]; there is no silent fallback. [`Isolation::None`] runs
//! Chromium as before: in pagefeat's own namespace, as pagefeat's user, with `--no-sandbox`
//! (root cannot run the sandbox), DevTools straight on 127.0.0.1.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use svckit::process::{ProcessSpec, find_program};

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

/// Runs `future` on a new thread that entered the network namespace of process `pid`, driven
/// by the current tokio runtime (`Handle::block_on`), and returns its output. The sockets it
/// opens are created on that thread, so they live in the namespace for good (a socket keeps
/// the namespace it was created in) while the runtime polls them like any other. The thread
/// ends afterwards, so no pool thread is left in the namespace.
///
/// # Errors
/// [`Error::ProcRead`]; [`Error::IsolationUnavailable`] when the process is in pagefeat's own
/// namespace or `setns` fails.
pub(crate) async fn in_namespace<F>(pid: u32, future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    if netns_of(Some(pid))? == netns_of(None)? {
        return Err(unavailable(format!(
            "Chromium (pid {pid}) is in pagefeat's own network namespace"
        )));
    }
    let netns = fs_err::File::open(&path)
        .map_err(|source| Error::ProcRead { path, source })?
        .into_parts()
        .0;
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pagefeat-netns".to_owned())
        .spawn(move || {
            let output = nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
                .map(|()| handle.block_on(future));
            let _ = tx.send(output);
        })
        .map_err(|e| {
            Error::io(
                "starting a thread for",
                "the browser's network namespace",
                e,
            )
        })?;
    match rx.await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(errno)) => Err(unavailable(format!(
            "entering the network namespace of pid {pid}: {errno}"
        ))),
        Err(_) => Err(unavailable(
            "the thread in the browser's network namespace ended without an answer",
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devtools_address_is_read_from_its_url() {
        let ws = "ws://127.0.0.1:36741/devtools/browser/12-ab";
        assert_eq!(ws_addr(ws).unwrap(), "127.0.0.1:36741".parse().unwrap());
        assert!(ws_addr("not a url").is_err());
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
