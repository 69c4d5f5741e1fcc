//! What each command does; `main.rs` only parses flags and maps the result to an exit code.

use crate::cli::{Command, DeadCommand, LogFormat, QueueCommand};
use crate::config::{redact_url, Config, StoreKind};
use crate::gateway::{Clock, Gateway};
use crate::idempotency::{self, Store};
use crate::profile::{Profile, ProfileSet};
use crate::verify::{Input, Secret, Verifier};
use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Providers { json, providers_dir } => providers(json, providers_dir.as_deref()),
        Command::Verify {
            provider,
            secrets,
            headers,
            method,
            url,
            now,
            body_file,
            providers_dir,
            explain,
        } => {
            let profile = lookup_profile(&provider, providers_dir.as_deref())?;
            let secrets: Vec<Secret> = secrets.into_iter().map(Secret::from).collect();
            let verifier =
                Verifier::new(profile, &secrets, None).map_err(|e| Usage(format!("--secret: {e}")))?;
            let headers = parse_headers(&headers)?;
            let method = parse_method(&method)?;
            let body = read_body(body_file.as_deref())?;
            let now = now.unwrap_or_else(|| Clock::System.now());
            let input = Input { method: &method, url: &url, headers: &headers, body: &body, now };
            let result =
                verifier.verify(&input).and_then(|v| verifier.event_id(&headers, &body).map(|id| (v, id)));
            match result {
                Ok((v, id)) => {
                    crate::outln!("valid: secret {} matched; event id {id}", v.secret_index)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("invalid: {e}");
                    if explain && e.is_mismatch() {
                        for line in crate::verify::diagnose::diagnose(&verifier, &input) {
                            eprintln!("  - {line}");
                        }
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Echo { listen } => echo(listen),
        Command::Queue { admin, route, command } => queue_command(&admin, route.as_deref(), command),
        Command::Sign { provider, secret, id, timestamp, method, url, body_file, providers_dir } => {
            let profile = lookup_profile(&provider, providers_dir.as_deref())?;
            let verifier = Verifier::new(profile, &[Secret::from(secret)], None)
                .map_err(|e| Usage(format!("--secret: {e}")))?;
            let body = read_body(body_file.as_deref())?;
            let id = id.unwrap_or_else(|| format!("msg_{:016x}", rand::random::<u64>()));
            let ts = timestamp.unwrap_or_else(|| Clock::System.now());
            let lines = verifier.sign(&parse_method(&method)?, &url, &body, &id, ts).ok_or_else(|| {
                Usage(format!(
                    "provider '{provider}' carries its signature inside the body, or the key given can only verify; it cannot be signed into headers"
                ))
            })?;
            for (name, value) in lines {
                crate::outln!("{name}: {value}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lookup_profile(name: &str, dir: Option<&Path>) -> anyhow::Result<Arc<Profile>> {
    let mut set = ProfileSet::builtin();
    if let Some(d) = dir {
        set.extend_from_dir(d).map_err(|e| Usage(e.to_string()))?;
    }
    set.get(name)
        .cloned()
        .ok_or_else(|| Usage(format!("unknown provider '{name}' (known: {})", set.names().join(", "))).into())
}

fn parse_headers(list: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for h in list {
        let (name, value) =
            h.split_once(':').ok_or_else(|| Usage(format!("--header '{h}' is not 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Usage(format!("--header: '{}' is not a header name", name.trim())))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| Usage(format!("--header {name}: the value is not a header value")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn parse_method(m: &str) -> anyhow::Result<Method> {
    Method::from_bytes(m.as_bytes()).map_err(|_| Usage(format!("--method: '{m}' is not a method")).into())
}

fn read_body(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).map_err(|e| Usage(format!("--body-file {}: {e}", p.display())).into()),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the body from stdin")?;
            Ok(buf)
        }
    }
}

fn providers(json: bool, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut set = ProfileSet::builtin();
    if let Some(d) = dir {
        set.extend_from_dir(d).map_err(|e| Usage(e.to_string()))?;
    }
    if json {
        let list: Vec<ProfileJson<'_>> = set.iter().map(|p| ProfileJson::of(p)).collect();
        crate::outln!("{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = set
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.signature_place(),
                p.algorithm.name().to_string(),
                p.encoding.name().to_string(),
                p.timestamp.as_ref().map(|t| t.describe()).unwrap_or_else(|| "none".into()),
                p.id.describe(),
            ]
        })
        .collect();
    let head = ["NAME", "HEADER", "ALGORITHM", "ENCODING", "TIMESTAMP", "ID"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        crate::outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One profile as `providers --json` prints it: every field of the scheme as data.
#[derive(serde::Serialize)]
struct ProfileJson<'a> {
    name: &'a str,
    title: &'a str,
    /// Where the scheme is documented.
    docs: Option<&'a str>,
    assumptions: &'a [String],
    methods: Vec<&'a str>,
    signature: SignatureJson<'a>,
    /// How the route's secrets are written.
    secret: crate::verify::mac::SecretEncoding,
    timestamp: Option<TimestampJson<'a>>,
    id: IdJson<'a>,
    /// A signed one-time value remembered to refuse replays: its JSON pointer in the body.
    nonce: Option<&'a str>,
    handshake: Option<crate::profile::Handshake>,
    order_by: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct SignatureJson<'a> {
    /// Header names looked in, in order (empty when the signature is in the body).
    headers: Vec<&'a str>,
    /// JSON pointer of the signature inside the body.
    json: Option<&'a str>,
    canonical: Option<crate::profile::Canonical>,
    format: crate::verify::header::Format,
    prefix: Option<&'a str>,
    /// Between entries, and between key (or version) and value; `null` for a raw value.
    separator: Option<&'a str>,
    kv_separator: Option<&'a str>,
    /// Keys (key-value) or versions (versioned) whose values are signatures.
    keys: &'a [String],
    timestamp_key: Option<&'a str>,
    algorithm: crate::verify::mac::Algorithm,
    encoding: crate::verify::mac::Encoding,
    /// The signed payload's template.
    payload: &'a str,
}

#[derive(serde::Serialize)]
struct TimestampJson<'a> {
    /// `header`, `signature` (a key of the signature header) or `json`.
    source: &'static str,
    header: Option<&'a str>,
    json: Option<&'a str>,
    unit: crate::profile::TimeUnit,
    tolerance_secs: u64,
    /// Whether it is held to the tolerance (only when the signature covers it).
    check: bool,
}

#[derive(serde::Serialize)]
struct IdJson<'a> {
    /// `header`, `json` (pointers joined with `:`) or `body-sha256`.
    source: &'static str,
    header: Option<&'a str>,
    json: Vec<&'a str>,
}

impl<'a> ProfileJson<'a> {
    fn of(p: &'a Profile) -> Self {
        use crate::profile::{IdSource, TimestampSource};
        use crate::verify::header::Format;
        let hf = &p.header_format;
        let raw = hf.format == Format::Raw;
        ProfileJson {
            name: &p.name,
            title: &p.title,
            docs: p.docs.as_deref(),
            assumptions: &p.assumptions,
            methods: p.methods.iter().map(Method::as_str).collect(),
            signature: SignatureJson {
                headers: p.headers.iter().map(HeaderName::as_str).collect(),
                json: p.signature_json.as_ref().map(|j| j.as_str()),
                canonical: p.canonical,
                format: hf.format,
                prefix: hf.prefix.as_deref(),
                separator: (!raw).then_some(hf.separator.as_str()),
                kv_separator: (!raw).then_some(hf.kv_separator.as_str()),
                keys: &hf.signature_keys,
                timestamp_key: hf.timestamp_key.as_deref(),
                algorithm: p.algorithm,
                encoding: p.encoding,
                payload: p.payload.as_str(),
            },
            secret: p.secret,
            timestamp: p.timestamp.as_ref().map(|t| {
                let (source, header, json) = match &t.source {
                    TimestampSource::Header(h) => ("header", Some(h.as_str()), None),
                    TimestampSource::Signature => ("signature", None, None),
                    TimestampSource::Json(j) => ("json", None, Some(j.as_str())),
                };
                TimestampJson {
                    source,
                    header,
                    json,
                    unit: t.unit,
                    tolerance_secs: t.tolerance.as_secs(),
                    check: t.check,
                }
            }),
            id: match &p.id {
                IdSource::Header(h) => IdJson { source: "header", header: Some(h.as_str()), json: vec![] },
                IdSource::Json(ps) => {
                    IdJson { source: "json", header: None, json: ps.iter().map(|j| j.as_str()).collect() }
                }
                IdSource::BodySha256 => IdJson { source: "body-sha256", header: None, json: vec![] },
            },
            nonce: p.replay.as_ref().map(|j| j.as_str()),
            handshake: p.handshake,
            order_by: p.order_by.as_ref().map(|j| j.as_str()),
        }
    }
}

fn describe_store(kind: &StoreKind) -> String {
    match kind {
        StoreKind::Memory { max_keys } => {
            format!("memory (at most {max_keys} keys; forgotten on restart)")
        }
        StoreKind::Embedded { path } => format!("embedded ({})", path.display()),
        StoreKind::Redis { url } => format!("redis ({})", redact_url(url)),
        StoreKind::RedisCluster { nodes } => {
            format!("redis-cluster ({})", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", "))
        }
    }
}

fn summary(config: &Config) -> String {
    let mut out = format!(
        "listen {}{}\nstore {}\nadmin {}\nroutes:\n",
        config.listen,
        if config.tls.is_some() { " (tls)" } else { "" },
        describe_store(&config.store.kind),
        config.admin.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
    );
    for r in &config.routes {
        out.push_str(&format!(
            "  {}{} [{}] -> {} (provider {}, max body {} B, timeout {}, ttl {})\n",
            r.path,
            r.selector.as_ref().map(|(h, v)| format!(" when {h}: {v}")).unwrap_or_default(),
            r.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            redact_url(&r.upstream.url),
            r.provider(),
            r.max_body,
            humantime::format_duration(r.upstream_timeout),
            humantime::format_duration(r.ttl),
        ));
    }
    out
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    crate::out!("{}", summary(&config))?;
    crate::outln!("ok: {} routes valid", config.routes.len())?;
    Ok(ExitCode::SUCCESS)
}

/// The delivery queue, when a route is `delivery: queued` (validation ensures a durable store).
pub fn open_queue(config: &Config) -> anyhow::Result<Option<Arc<crate::queue::Queue>>> {
    Ok(crate::queue::Queue::open(config)?.map(Arc::new))
}

/// Starts the queue's workers; they stop when `stop` turns true.
pub fn start_queue_workers(gateway: &Arc<Gateway>, stop: tokio::sync::watch::Receiver<bool>) {
    if let Some(queue) = &gateway.queue {
        let gw = gateway.clone();
        let workers = crate::queue::QueueWorkers {
            queue: queue.clone(),
            client: gateway.client.clone(),
            metrics: gateway.metrics.clone(),
            routes: Box::new(move || gw.routing().routes().filter(|r| r.queue.is_some()).collect()),
        };
        tokio::spawn(crate::queue::supervise(Arc::new(workers), stop));
    }
}

/// Opens the configured idempotency store.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let c = &config.store;
    Ok(match &c.kind {
        StoreKind::Memory { max_keys } => Arc::new(idempotency::memory::MemoryStore::new(*max_keys)),
        StoreKind::Embedded { path } => Arc::new(idempotency::embedded::EmbeddedStore::open(path)?),
        StoreKind::Redis { url } => Arc::new(idempotency::redis::RedisStore::single(
            url,
            &c.key_prefix,
            c.timeout,
            config.limits.workers,
        )?),
        StoreKind::RedisCluster { nodes } => {
            Arc::new(idempotency::redis::RedisStore::cluster(nodes, &c.key_prefix, c.timeout)?)
        }
    })
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = open_store(&config).await?;
        let store_kind = store.kind();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(arc_swap::ArcSwap::new(
                crate::tls::server_config(files).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ))),
            None => None,
        };
        let gateway = Arc::new(Gateway::new(&config, store, Clock::System).with_queue(open_queue(&config)?));
        let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
        start_queue_workers(&gateway, workers_stop);
        eprint!("{}", summary(&config));
        if let Some(addr) = config.admin {
            let admin =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding admin {addr}"))?;
            let admin_addr = admin.local_addr()?;
            eprintln!("admin http://{admin_addr} (/healthz /readyz /metrics)");
            // On stdout too, before `listening on`, for scripts and tests that bind port 0.
            let _ = crate::outln!("admin listening on {admin_addr}");
            tokio::spawn(crate::admin::run(admin, gateway.clone(), std::future::pending()));
        }
        tokio::spawn(reload_on_sighup(path.to_path_buf(), gateway.clone(), tls.clone()));
        let local = listener.local_addr()?;
        tracing::info!(listen = %local, store = store_kind, tls = tls.is_some(), "portcullis is serving");
        // One line on stdout for scripts and tests that bind port 0.
        // A closed stdout does not stop the gateway: the line is for whoever reads it.
        let _ = crate::outln!("listening on {local}");
        crate::server::run(listener, gateway, tls, shutdown_signal())
            .await
            .context("starting the connection workers")?;
        // Queued deliveries not yet acknowledged stay pending in Redis for another instance.
        stop_workers.send_replace(true);
        Ok(ExitCode::SUCCESS)
    })
}

/// On SIGHUP, loads the configuration again and puts it in force; a configuration that
/// fails validation is refused, logged and counted, and the running one stays.
async fn reload_on_sighup(
    path: std::path::PathBuf,
    gateway: Arc<Gateway>,
    tls: Option<crate::server::TlsHandle>,
) {
    #[cfg(unix)]
    {
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloads are off");
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = Config::load(&path).map_err(|e| e.to_string()).and_then(|config| {
                let cert = match (&tls, &config.tls) {
                    (Some(_), Some(files)) => Some(crate::tls::server_config(files)?),
                    (None, Some(_)) => return Err("tls cannot be turned on by a reload; restart".into()),
                    _ => None,
                };
                Ok((config, cert))
            });
            match loaded {
                Ok((config, cert)) => {
                    let ignored = gateway.reload(&config);
                    if let (Some(handle), Some(cert)) = (&tls, cert) {
                        handle.store(cert);
                    }
                    tracing::info!(routes = config.routes.len(), "configuration reloaded");
                    if !ignored.is_empty() {
                        tracing::warn!(changed = ?ignored, "these settings changed but take effect only after a restart");
                    }
                }
                Err(e) => {
                    gateway.metrics.reloads_failed.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "reload refused; the running configuration stays in force");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, gateway, tls);
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}

/// A demo upstream for the quick start: prints what it receives and answers 200 with JSON.
fn echo(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use http_body_util::{BodyExt, Full};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        // The bound address, so that `--listen 127.0.0.1:0` says which port it got.
        eprintln!("echo upstream listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let key = parts
                            .headers
                            .get("portcullis-idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // Printing is for a watching terminal: one gone away stops no answer.
                        let _ = crate::outln!(
                            "upstream received {} {} key={key} body={}",
                            parts.method,
                            parts.uri,
                            String::from_utf8_lossy(&body)
                        );
                        let mut res =
                            http::Response::new(Full::new(bytes::Bytes::from_static(b"{\"received\":true}")));
                        res.headers_mut()
                            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                        Ok::<_, std::convert::Infallible>(res)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// `portcullis queue …`: asks a running gateway's admin listener.
fn queue_command(admin: &str, route: Option<&str>, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(String, String)> =
        route.map(|r| vec![("route".into(), r.to_string())]).unwrap_or_default();
    let (method, path) = match command {
        QueueCommand::Stats => (Method::GET, "/queue"),
        QueueCommand::Dead { command: DeadCommand::List } => (Method::GET, "/queue/dead"),
        QueueCommand::Replay { id, all } => {
            match (id, all) {
                (Some(id), false) => query.push(("id".into(), id)),
                (None, true) => query.push(("all".into(), "1".into())),
                _ => return Err(Usage("queue replay: give an ID or --all".into()).into()),
            }
            (Method::POST, "/queue/replay")
        }
    };
    let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    let url = format!("{}{path}{}{qs}", admin.trim_end_matches('/'), if qs.is_empty() { "" } else { "?" });
    let uri: http::Uri = url.parse().map_err(|_| Usage(format!("--admin: '{admin}' is not a URL")))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, body) = runtime.block_on(async move {
        use http_body_util::{BodyExt, Full};
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let req = http::Request::builder().method(method).uri(uri).body(Full::default())?;
        let res =
            client.request(req).await.with_context(|| format!("reaching the admin listener at {admin}"))?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    let text = String::from_utf8_lossy(&body);
    let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
    if !status.is_success() {
        // The admin listener's reason (e.g. "no dead letter with id …"), on stderr; exit 1.
        let reason = json.as_ref().and_then(|v| v["error"].as_str()).map(str::to_string);
        anyhow::bail!("{} ({status})", reason.unwrap_or_else(|| text.trim().to_string()));
    }
    match json {
        Some(v) => crate::outln!("{}", serde_json::to_string_pretty(&v)?)?,
        None => crate::outln!("{text}")?,
    }
    Ok(ExitCode::SUCCESS)
}
