//! A whole deployment on 127.0.0.1, each part its own process of this binary (for the demo
//! and the bench): the registry, media servers, forwarders and the proxy, started with
//! `svckit::process` guards (killed with their process group when dropped) and logs in one
//! directory.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use svckit::process::{ChildGuard, ProcessSpec, Readiness};
use svckit::redact::Secret;

use crate::registry::{MediaRecord, RegistryClient, RouteSnapshot};

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .context("binding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// One started part.
#[derive(Debug)]
pub struct Part {
    /// The process.
    pub child: ChildGuard,
    /// Its main port.
    pub port: u16,
    /// Its admin port (`/metrics`) when separate.
    pub admin_port: Option<u16>,
}

impl Part {
    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The address serving `/metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        loopback(self.admin_port.unwrap_or(self.port))
    }
}

/// The registry credentials of one deployment: a secret per role, made fresh for each run.
#[derive(Debug, Clone)]
pub struct DeploymentSecrets {
    /// For media servers.
    pub media: Secret,
    /// For forwarders.
    pub forwarder: Secret,
    /// For the proxy (read only).
    pub reader: Secret,
    /// The proxy's URL-signing key, key id [`SIGNING_KEY_ID`].
    pub signing: Secret,
}

/// The key id of a deployment's URL-signing key.
pub const SIGNING_KEY_ID: &str = "demo";

impl DeploymentSecrets {
    /// Three fresh secrets (SHA-256 of the process id, the time and a counter, hex).
    pub fn fresh() -> Self {
        use sha2::Digest;
        let seed = format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
        );
        let make =
            |role: &str| Secret::new(hex::encode(sha2::Sha256::digest(format!("{seed}-{role}"))));
        Self {
            media: make("media"),
            forwarder: make("forwarder"),
            reader: make("reader"),
            signing: make("signing"),
        }
    }

    /// `path` with a signature valid for `valid_for` from now.
    pub fn sign(&self, path: &str, valid_for: Duration) -> String {
        let expires = crate::auth::unix_seconds(std::time::SystemTime::now()) + valid_for.as_secs();
        self.sign_until(path, expires)
    }

    /// `path` with a signature valid until `expires` (Unix seconds; a past time makes an
    /// expired link). Paths that do not parse are returned unsigned.
    pub fn sign_until(&self, path: &str, expires: u64) -> String {
        let Ok(parsed) = crate::route::parse_public_path(path) else {
            return path.to_owned();
        };
        let resource = crate::auth::resource(&parsed.segment, &parsed.stream, parsed.channel);
        let query = crate::auth::sign(&resource, SIGNING_KEY_ID, &self.signing, expires);
        format!("{path}?{query}")
    }

    /// The environment that configures a registry with these credentials.
    fn registry_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for (id, role, secret) in [
            ("media", "media", &self.media),
            ("forwarder", "forwarder", &self.forwarder),
            ("proxy", "reader", &self.reader),
        ] {
            let prefix = format!("STREAMGATE_REGISTRY__CREDENTIALS__{}", id.to_uppercase());
            env.push((format!("{prefix}__SECRET"), secret.expose().to_owned()));
            env.push((format!("{prefix}__ROLE"), role.to_owned()));
        }
        env
    }
}

/// The environment variable carrying a part's registry credential.
const TOKEN_ENV: &str = "STREAMGATE_DISCOVERY__TOKEN";

/// Starts parts of one deployment.
#[derive(Debug)]
pub struct Launcher {
    exe: PathBuf,
    logs: PathBuf,
    registry_url: String,
    counter: usize,
    secrets: DeploymentSecrets,
}

impl Launcher {
    /// A launcher running `exe` (this binary), writing logs into `logs`, pointing parts at
    /// the registry `registry_url`.
    pub fn new(exe: PathBuf, logs: &Path, registry_url: String) -> Self {
        Self {
            exe,
            logs: logs.to_path_buf(),
            registry_url,
            counter: 0,
            secrets: DeploymentSecrets::fresh(),
        }
    }

    /// The registry URL.
    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    /// The deployment's registry credentials.
    pub fn secrets(&self) -> &DeploymentSecrets {
        &self.secrets
    }

    /// A client of the deployment's registry (read only).
    pub fn registry_client(&self) -> RegistryClient {
        RegistryClient::new(&self.registry_url).with_token(&self.secrets.reader)
    }

    fn spawn(
        &mut self,
        name: &str,
        args: &[String],
        env: &[(String, String)],
        ready: &Readiness,
    ) -> anyhow::Result<ChildGuard> {
        self.counter += 1;
        let log = self.logs.join(format!("{:02}-{name}.log", self.counter));
        let mut spec = ProcessSpec::new(self.exe.display().to_string())
            .args(args)
            .env("RUST_LOG", "streamgate=info,svckit=warn,warn")
            .env("NO_COLOR", "1")
            .log_file(&log);
        for (key, value) in env {
            spec = spec.env(key, value);
        }
        let mut child = spec.spawn().with_context(|| format!("starting {name}"))?;
        child
            .wait_ready(ready, Duration::from_secs(20))
            .with_context(|| format!("{name} did not become ready (log {})", log.display()))?;
        Ok(child)
    }

    /// `streamgate registry` on `port`.
    ///
    /// # Errors
    /// When it does not start.
    pub fn registry(&mut self, port: u16) -> anyhow::Result<Part> {
        let args = vec![
            "registry".to_owned(),
            "--listen".to_owned(),
            loopback(port).to_string(),
        ];
        let env = self.secrets.registry_env();
        let child = self.spawn(
            "registry",
            &args,
            &env,
            &Readiness::Http {
                addr: loopback(port),
                path: "/healthz".to_owned(),
            },
        )?;
        Ok(Part {
            child,
            port,
            admin_port: None,
        })
    }

    /// `streamgate media` with `label`, `namespace` and `cameras` (stream -> RTSP URL) on
    /// `port`.
    ///
    /// # Errors
    /// When it does not start.
    pub fn media(
        &mut self,
        label: &str,
        namespace: &str,
        port: u16,
        cameras: &[(&str, String)],
        extra: &[&str],
    ) -> anyhow::Result<Part> {
        let admin = free_port()?;
        let mut args = vec![
            "media".to_owned(),
            "--label".to_owned(),
            label.to_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--listen".to_owned(),
            loopback(port).to_string(),
            "--admin-listen".to_owned(),
            loopback(admin).to_string(),
            "--registry".to_owned(),
            self.registry_url.clone(),
        ];
        for (stream, url) in cameras {
            args.push("--camera".to_owned());
            args.push(format!("{stream}={url}"));
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let env = [(TOKEN_ENV.to_owned(), self.secrets.media.expose().to_owned())];
        let child = self.spawn(
            &format!("media-{label}"),
            &args,
            &env,
            &Readiness::Http {
                addr: loopback(admin),
                path: "/healthz".to_owned(),
            },
        )?;
        Ok(Part {
            child,
            port,
            admin_port: Some(admin),
        })
    }

    /// `streamgate forwarder` for (`service`, `namespace`) bound to `label`.
    ///
    /// # Errors
    /// When it does not start.
    pub fn forwarder(
        &mut self,
        service: &str,
        namespace: &str,
        label: &str,
    ) -> anyhow::Result<Part> {
        let port = free_port()?;
        let admin = free_port()?;
        let args = vec![
            "forwarder".to_owned(),
            "--service".to_owned(),
            service.to_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--label".to_owned(),
            label.to_owned(),
            "--listen".to_owned(),
            loopback(port).to_string(),
            "--admin-listen".to_owned(),
            loopback(admin).to_string(),
            "--registry".to_owned(),
            self.registry_url.clone(),
        ];
        let env = [(
            TOKEN_ENV.to_owned(),
            self.secrets.forwarder.expose().to_owned(),
        )];
        let child = self.spawn(
            &format!("forwarder-{service}"),
            &args,
            &env,
            &Readiness::Http {
                addr: loopback(admin),
                path: "/healthz".to_owned(),
            },
        )?;
        Ok(Part {
            child,
            port,
            admin_port: Some(admin),
        })
    }

    /// `streamgate proxy` on `port`.
    ///
    /// # Errors
    /// When it does not start.
    pub fn proxy(&mut self, port: u16) -> anyhow::Result<Part> {
        let admin = free_port()?;
        let args = vec![
            "proxy".to_owned(),
            "--listen".to_owned(),
            loopback(port).to_string(),
            "--admin-listen".to_owned(),
            loopback(admin).to_string(),
            "--registry".to_owned(),
            self.registry_url.clone(),
        ];
        let env = [
            (
                TOKEN_ENV.to_owned(),
                self.secrets.reader.expose().to_owned(),
            ),
            (
                format!(
                    "STREAMGATE_PROXY__AUTH__KEYS__{}",
                    SIGNING_KEY_ID.to_uppercase()
                ),
                self.secrets.signing.expose().to_owned(),
            ),
        ];
        let child = self.spawn(
            "proxy",
            &args,
            &env,
            &Readiness::Http {
                addr: loopback(admin),
                path: "/healthz".to_owned(),
            },
        )?;
        Ok(Part {
            child,
            port,
            admin_port: Some(admin),
        })
    }
}

/// Waits until the registry lists at least `media` media servers and `forwarders`
/// forwarders.
///
/// # Errors
/// When that does not happen within `within`.
pub async fn wait_for_routes(
    registry: &RegistryClient,
    media: usize,
    forwarders: usize,
    within: Duration,
) -> anyhow::Result<RouteSnapshot> {
    let started = Instant::now();
    loop {
        if let Ok(snapshot) = registry.routes(None, Duration::ZERO).await
            && snapshot.media.len() >= media
            && snapshot.forwarders.len() >= forwarders
        {
            return Ok(snapshot);
        }
        if started.elapsed() > within {
            bail!(
                "the registry did not list {media} media servers and {forwarders} forwarders within {within:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the registry every `every` until `label` is registered at an address other than
/// `old`; returns the record and when it was first seen.
///
/// # Errors
/// When that does not happen within `within`.
pub async fn wait_for_new_address(
    registry: &RegistryClient,
    label: &str,
    old: SocketAddr,
    every: Duration,
    within: Duration,
) -> anyhow::Result<(MediaRecord, Instant)> {
    let started = Instant::now();
    loop {
        if let Ok(Some(record)) = registry.media(label).await
            && record.addr != old
        {
            return Ok((record, Instant::now()));
        }
        if started.elapsed() > within {
            bail!("`{label}` did not re-register within {within:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Reads one counter (`name` with the label `stream="{stream}"`) from a `/metrics` page.
pub fn metric_value(page: &str, name: &str, stream: &str) -> Option<f64> {
    let label = format!("stream=\"{stream}\"");
    page.lines()
        .filter(|line| line.starts_with(name) && line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// `GET http://{addr}{path}` as text.
///
/// # Errors
/// When the request fails.
pub async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let client = crate::viewer::client(Duration::from_secs(10));
    let viewer = crate::viewer::Viewer::open(&client, &format!("http://{addr}{path}")).await?;
    let status = viewer.status().as_u16();
    Ok((status, viewer.text().await?))
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn reads_a_counter_by_stream() {
        let page = "# HELP streamgate_rtsp_sessions RTSP sessions\n\
                    # TYPE streamgate_rtsp_sessions counter\n\
                    streamgate_rtsp_sessions_total{stream=\"main_stream\"} 1\n\
                    streamgate_rtsp_sessions_total{stream=\"sub_stream\"} 3\n";
        assert_eq!(
            metric_value(page, "streamgate_rtsp_sessions_total", "main_stream"),
            Some(1.0)
        );
        assert_eq!(
            metric_value(page, "streamgate_rtsp_sessions_total", "sub_stream"),
            Some(3.0)
        );
        assert_eq!(
            metric_value(page, "streamgate_rtsp_sessions_total", "aux_stream"),
            None
        );
    }
}
