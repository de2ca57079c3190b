//! Command line: `streamgate registry | media | forwarder | proxy | camera | demo | bench`.
//!
//! Each serving subcommand runs one part in its own process until SIGINT/SIGTERM.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 the demo ran but failed one
//! of its checks (clap's usage errors exit 2 as well).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::{Config, ENV_PREFIX};
use crate::service::Running;

/// `streamgate`'s command line: the global flags ([`svckit::cli::CommonArgs`]) and [`Command`];
/// name, version and description come from the crate (`svckit::about!`).
pub type Cli = svckit::cli::Cli<Command>;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry (labels -> addresses, with leases).
    Registry(RegistryArgs),
    /// Run a media server: pull cameras over RTSP, serve HTTP-FLV.
    Media(MediaArgs),
    /// Run a forwarder bound to one media server's label.
    Forwarder(ForwarderArgs),
    /// Run the reverse proxy: the one public port.
    Proxy(ProxyArgs),
    /// Run the test camera (gst-rtsp-server) on 127.0.0.1.
    Camera(CameraArgs),
    /// Start a camera, a registry, two namespaces of media servers and forwarders and a proxy
    /// on 127.0.0.1, and check streams, fan-out, restart and errors.
    Demo(DemoArgs),
    /// Time to first frame and per-frame latency added by proxy and forwarder, against a
    /// direct pull.
    Bench(BenchArgs),
    /// Print a signed play URL path (`?expires=…&kid=…&sig=…`) for a public path, with a key
    /// of `proxy.auth.keys` (configure it through `STREAMGATE_PROXY__AUTH__KEYS__<KID>`).
    Sign(SignArgs),
}

/// `streamgate sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The public path, e.g. `/realtime-ServiceA-NameSpaceA/main_stream/0.flv`.
    #[arg(long)]
    pub path: String,
    /// The key id in `proxy.auth.keys`.
    #[arg(long)]
    pub key_id: String,
    /// Validity from now, seconds.
    #[arg(long, default_value_t = 3600)]
    pub valid_for_s: u64,
}

/// `--registry` / `--etcd` shared by the parts that use discovery.
#[derive(Debug, Args)]
pub struct DiscoveryArgs {
    /// Registry base URL (overrides `discovery.registry_url`); `""` uses the static lists of
    /// the configuration instead.
    #[arg(long, value_name = "URL", conflicts_with = "etcd")]
    pub registry: Option<String>,
    /// etcd member client URLs, comma-separated (selects `discovery.backend = "etcd"` and
    /// overrides `discovery.endpoints`).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub etcd: Vec<String>,
}

/// `streamgate registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Listen address (default `127.0.0.1:7400`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `streamgate media`.
#[derive(Debug, Args)]
pub struct MediaArgs {
    /// The server's unique label.
    #[arg(long)]
    pub label: Option<String>,
    /// Its namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Data-plane listen address (default `127.0.0.1:7410`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listen address for /healthz, /metrics and /v1/streams.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// A camera: `STREAM=rtsp://host:port/path` (repeatable; adds to the configured map).
    #[arg(long = "camera", value_name = "STREAM=URL")]
    pub cameras: Vec<String>,
    /// Time to reach PLAY and the first frame, ms.
    #[arg(long)]
    pub rtsp_timeout_ms: Option<u64>,
    /// How long a pull outlives its last viewer, ms.
    #[arg(long)]
    pub idle_stop_ms: Option<u64>,
    /// Registry to register with.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// `streamgate forwarder`.
#[derive(Debug, Args)]
pub struct ForwarderArgs {
    /// The forwarding service's name (`{service}` in public paths).
    #[arg(long)]
    pub service: Option<String>,
    /// Its namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The media server's label it is bound to.
    #[arg(long)]
    pub label: Option<String>,
    /// Data-plane listen address (default `127.0.0.1:7420`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listen address for /healthz and /metrics.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Where labels are resolved.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// `streamgate proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The public listen address (default `127.0.0.1:8080`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listen address for /healthz and /metrics.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Where routes come from.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// `streamgate camera`.
#[derive(Debug, Args)]
pub struct CameraArgs {
    /// RTSP port on 127.0.0.1.
    #[arg(long, default_value_t = 8554)]
    pub port: u16,
    /// H.264 clip (MP4 or TS) for /main_stream (default: the bundled Big Buck Bunny clip).
    #[arg(long)]
    pub input: Option<PathBuf>,
}

/// `streamgate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// H.264 clip (MP4 or TS) the camera serves at /main_stream (default: the bundled clip).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Concurrent viewers in the fan-out check.
    #[arg(long, default_value_t = 50)]
    pub viewers: usize,
    /// Open viewers kept across the media server's restart.
    #[arg(long, default_value_t = 20)]
    pub restart_viewers: usize,
    /// Print the report as one JSON line on stdout (last line).
    #[arg(long)]
    pub json: bool,
    /// Keep the logs directory (its path is printed).
    #[arg(long)]
    pub keep_logs: bool,
}

/// `streamgate bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// H.264 clip for the camera (default: the bundled clip).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Viewers opened one after another for the time to first frame.
    #[arg(long, default_value_t = 40)]
    pub opens: usize,
    /// Seconds of frames compared for the added latency.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Instead: the load comparison with nginx at these viewer counts (e.g. `200,1000,5000`).
    #[arg(long, value_delimiter = ',')]
    pub viewers: Vec<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The bundled clip, `data/video/big_buck_bunny_640x360_60s.mp4`, looked up next to the
/// working directory and the source tree.
pub fn bundled_clip() -> PathBuf {
    let relative = "data/video/big_buck_bunny_640x360_60s.mp4";
    let local = PathBuf::from(relative);
    if local.is_file() {
        return local;
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn discovery_override(config: &mut Config, args: &DiscoveryArgs) {
    if let Some(url) = &args.registry {
        config.discovery.backend = crate::config::Backend::Registry;
        config.discovery.registry_url.clone_from(url);
    }
    if !args.etcd.is_empty() {
        config.discovery.backend = crate::config::Backend::Etcd;
        config.discovery.endpoints.clone_from(&args.etcd);
    }
}

async fn until_signal(running: Running) -> anyhow::Result<()> {
    let signal = svckit::shutdown_signal().context("installing signal handlers")?;
    tokio::select! {
        () = signal => {}
        () = running.stopped() => {}
    }
    running.stop().await;
    Ok(())
}

/// Runs the parsed command line.
///
/// # Errors
/// Any failure, with context.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config: Config =
        svckit::cli::load_config(&cli.common, ENV_PREFIX).context("loading the configuration")?;
    if !matches!(cli.command, Command::Camera(_)) {
        // Idle sockets must not exhaust the default soft limit of 1024 descriptors.
        match crate::hop::raise_nofile_limit() {
            Ok((before, after)) => {
                tracing::debug!(before, after, "RLIMIT_NOFILE raised to the hard limit");
            }
            Err(error) => tracing::warn!(%error, "cannot raise RLIMIT_NOFILE"),
        }
    }
    match cli.command {
        Command::Registry(args) => {
            if let Some(listen) = args.listen {
                config.registry.listen = listen;
            }
            let running = crate::service::start_registry(&config.registry).await?;
            until_signal(running).await?;
        }
        Command::Media(args) => {
            discovery_override(&mut config, &args.discovery);
            let m = &mut config.media;
            if let Some(v) = args.label {
                m.label = v;
            }
            if let Some(v) = args.namespace {
                m.namespace = v;
            }
            if let Some(v) = args.listen {
                m.listen = v;
            }
            if let Some(v) = args.admin_listen {
                m.admin_listen = v;
            }
            if let Some(v) = args.rtsp_timeout_ms {
                m.rtsp_timeout_ms = v;
            }
            if let Some(v) = args.idle_stop_ms {
                m.idle_stop_ms = v;
            }
            for camera in &args.cameras {
                let (stream, url) = camera
                    .split_once('=')
                    .with_context(|| format!("--camera `{camera}` is not STREAM=URL"))?;
                m.cameras.insert(stream.to_owned(), url.to_owned());
            }
            let running =
                crate::service::start_media(&config.media, config.discovery.registrar()?).await?;
            until_signal(running).await?;
        }
        Command::Forwarder(args) => {
            discovery_override(&mut config, &args.discovery);
            let f = &mut config.forwarder;
            if let Some(v) = args.service {
                f.service = v;
            }
            if let Some(v) = args.namespace {
                f.namespace = v;
            }
            if let Some(v) = args.label {
                f.label = v;
            }
            if let Some(v) = args.listen {
                f.listen = v;
            }
            if let Some(v) = args.admin_listen {
                f.admin_listen = v;
            }
            let running = crate::service::start_forwarder(
                &config.forwarder,
                config.discovery.source()?,
                config.discovery.registrar()?,
            )
            .await?;
            until_signal(running).await?;
        }
        Command::Proxy(args) => {
            discovery_override(&mut config, &args.discovery);
            if let Some(v) = args.listen {
                config.proxy.listen = v;
            }
            if let Some(v) = args.admin_listen {
                config.proxy.admin_listen = v;
            }
            let running =
                crate::service::start_proxy(&config.proxy, config.discovery.source()?).await?;
            until_signal(running).await?;
        }
        Command::Camera(args) => {
            let input = args.input.unwrap_or_else(bundled_clip);
            let port = args.port;
            let camera = tokio::task::spawn_blocking(move || {
                crate::camera::Camera::start(port, &input, Duration::from_secs(20))
            })
            .await??;
            for path in crate::camera::PATHS {
                tracing::info!(url = %camera.url(path), "camera serving");
            }
            svckit::shutdown_signal()?.await;
            drop(camera);
        }
        Command::Demo(args) => {
            let options = crate::demo::DemoOptions {
                input: args.input.unwrap_or_else(bundled_clip),
                viewers: args.viewers,
                restart_viewers: args.restart_viewers,
                keep_logs: args.keep_logs,
                progress: svckit::cli::progress_wanted(args.json),
            };
            let outcome = crate::demo::run(&options).await?;
            svckit::cli::stderr_text(&outcome.table());
            return Ok(svckit::cli::finish_demo(
                &outcome.report,
                &outcome.failures,
                args.json,
            )?);
        }
        Command::Sign(args) => {
            let path = crate::route::parse_public_path(&args.path)
                .with_context(|| format!("`{}` is not a public stream path", args.path))?;
            let key = config
                .proxy
                .auth
                .keys
                .get(&args.key_id)
                .with_context(|| format!("no key `{}` in proxy.auth.keys", args.key_id))?;
            let expires =
                crate::auth::unix_seconds(std::time::SystemTime::now()) + args.valid_for_s;
            let resource = crate::auth::resource(&path.segment, &path.stream, path.channel);
            let query = crate::auth::sign(&resource, &args.key_id, key, expires);
            let bare = args.path.split('?').next().unwrap_or_default();
            svckit::cli::stdout_line(&format!("{bare}?{query}"))?;
        }
        Command::Bench(args) if !args.viewers.is_empty() => {
            let input = args.input.unwrap_or_else(bundled_clip);
            let rows = crate::bench::run_load(&input, &args.viewers, args.seconds).await?;
            svckit::cli::print_report(&rows, args.json, || crate::bench::load::table(&rows))?;
        }
        Command::Bench(args) => {
            let options = crate::bench::BenchOptions {
                input: args.input.unwrap_or_else(bundled_clip),
                opens: args.opens,
                seconds: args.seconds,
            };
            let rows = crate::bench::run(&options).await?;
            svckit::cli::print_report(&rows, args.json, || crate::bench::table(&rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
