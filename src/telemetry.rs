//! W3C trace context (`traceparent`, `tracestate`) and the optional OTLP/HTTP span export.
//!
//! Without `telemetry:` nothing is allocated for tracing: a sender's `traceparent` is parsed
//! (55 bytes, on the stack), the gateway takes a new span id for its work (one random `u64`)
//! and passes the trace on to the upstream with that id as the parent; a request without a
//! valid `traceparent` carries none further. With `telemetry: {otlp_endpoint}` the gateway's
//! work is a span (`delivery`), with the store calls and the upstream call as child spans,
//! batched and exported off the request path by the SDK's batch processor on the Tokio
//! runtime.
//!
//! The exporter is process-wide, as the log subscriber is: [`install`] puts it in place
//! when a gateway starts with `telemetry:`, [`shutdown`] flushes and removes it.

use crate::config::TelemetryConfig;
use arc_swap::ArcSwapOption;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The fields of a version-00 `traceparent`: trace id, parent (span) id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-{32 hex}-{16 hex}-{2 hex}` (lower-case hex, as the spec requires). A later
    /// version's value is read by its first four fields, as the spec asks; an all-zero id,
    /// version `ff` or any other shape is refused (`None`: the trace restarts here).
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&v[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, span_id, flags })
    }

    /// Whether the sender (or the gateway) records this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `traceparent` value, version 00, written without allocating a string.
    pub fn value(&self) -> HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        write_hex(&self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        write_hex(&self.span_id, &mut out[36..52]);
        out[52] = b'-';
        write_hex(&[self.flags], &mut out[53..55]);
        HeaderValue::from_bytes(&out).expect("hex and dashes")
    }

    fn span_context(&self, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            remote,
            TraceState::default(),
        )
    }

    fn of(sc: &SpanContext) -> TraceParent {
        TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        }
    }
}

/// The trace id in hex, for the log line (written when the line is, not before).
pub struct TraceIdHex([u8; 16]);

impl std::fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = [0u8; 32];
        write_hex(&self.0, &mut out);
        f.write_str(std::str::from_utf8(&out).expect("hex"))
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(d(two[0])? << 4 | d(two[1])?)
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

/// A request's place in its trace, put in the request's extensions by the observe layer:
/// the layers below open child spans under it, and the forwarder passes it to the upstream.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace id, the gateway's span id (the upstream's parent) and the flags.
    pub parent: TraceParent,
    /// The sender's `tracestate`, passed on unchanged.
    pub state: Option<HeaderValue>,
}

impl Trace {
    /// The trace id for the log line.
    pub fn trace_id(&self) -> TraceIdHex {
        TraceIdHex(self.parent.trace_id)
    }

    /// Writes `traceparent` (this trace, `span` or the gateway's span as the parent) and the
    /// sender's `tracestate` into what goes to the upstream.
    pub fn set(&self, headers: &mut HeaderMap, span: Option<&ChildSpan>) {
        let parent = span.map_or(self.parent, |s| s.parent);
        headers.insert(TRACEPARENT.clone(), parent.value());
        match &self.state {
            Some(s) => headers.insert(TRACESTATE.clone(), s.clone()),
            None => headers.remove(&TRACESTATE),
        };
    }

    /// Removes a sender's trace headers from a request that has no trace (its `traceparent`
    /// was absent or invalid: a `tracestate` alone means nothing, per the spec).
    pub fn clear(headers: &mut HeaderMap) {
        headers.remove(&TRACEPARENT);
        headers.remove(&TRACESTATE);
    }
}

/// The exporter in force, if any; [`ENABLED`] lets the request path skip the load.
static EXPORTER: ArcSwapOption<Exporter> = ArcSwapOption::const_empty();
static ENABLED: AtomicBool = AtomicBool::new(false);

struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

fn exporter() -> Option<Arc<Exporter>> {
    if !ENABLED.load(Relaxed) {
        return None;
    }
    EXPORTER.load_full()
}

/// Errors of setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Starts exporting spans to `config`'s collector (replacing an exporter already in place).
/// Must run on a Tokio runtime: the batch processor and its HTTP client live there.
pub fn install(config: &TelemetryConfig) -> Result<(), TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{span_processor_with_async_runtime::BatchSpanProcessor, Sampler};
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(
        std::time::Duration::from_secs(10),
        None,
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.traces_url())
        .build()?;
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portcullis");
    if let Some(old) = EXPORTER.swap(Some(Arc::new(Exporter { provider, tracer }))) {
        // Waiting for its batch processor here could block the very worker it runs on.
        tokio::task::spawn_blocking(move || flush_and_stop(old));
    }
    ENABLED.store(true, Relaxed);
    tracing::info!(endpoint = %config.traces_url(), service = %config.service_name,
        sample_ratio = config.sample_ratio, "exporting trace spans over OTLP/HTTP");
    Ok(())
}

/// Exports the spans still batched and stops exporting.
pub async fn shutdown() {
    ENABLED.store(false, Relaxed);
    if let Some(old) = EXPORTER.swap(None) {
        // The SDK's shutdown waits for the batch processor, which runs on this runtime:
        // it is waited for on a blocking thread.
        let _ = tokio::task::spawn_blocking(move || flush_and_stop(old)).await;
    }
}

fn flush_and_stop(e: Arc<Exporter>) {
    if let Err(err) = e.provider.shutdown() {
        tracing::warn!(error = %err, "exporting the last trace spans failed");
    }
}

/// The gateway's span for one request: its trace (for the layers below) and, when spans are
/// exported, the span itself (ended by [`RequestSpan::end`] or on drop).
pub struct RequestSpan {
    pub trace: Trace,
    /// Boxed: the SDK's span is large, and the observe layer's future, which holds this,
    /// lives inline in every connection's future; the box is only allocated when exporting.
    span: Option<Box<opentelemetry_sdk::trace::Span>>,
}

impl RequestSpan {
    /// Starts the gateway's span for a request with these headers: a child of the sender's
    /// `traceparent` when it is valid. `None` when spans are not exported and the request
    /// has no valid `traceparent`: there is nothing to pass on.
    pub fn start(headers: &HeaderMap) -> Option<RequestSpan> {
        let sender = headers.get(&TRACEPARENT).and_then(|v| TraceParent::parse(v.as_bytes()));
        let state = || headers.get(&TRACESTATE).filter(|v| !v.is_empty()).cloned();
        let Some(e) = exporter() else {
            let sender = sender?;
            let parent = TraceParent { span_id: new_span_id(), ..sender };
            return Some(RequestSpan { trace: Trace { parent, state: state() }, span: None });
        };
        let cx = match &sender {
            Some(p) => Context::new().with_remote_span_context(p.span_context(true)),
            None => Context::new(),
        };
        let span =
            e.tracer.span_builder("delivery").with_kind(SpanKind::Server).start_with_context(&e.tracer, &cx);
        let parent = TraceParent::of(span.span_context());
        // A new trace's `tracestate` is the gateway's (none); a sender's is passed on.
        let state = if sender.is_some() { state() } else { None };
        Some(RequestSpan { trace: Trace { parent, state }, span: Some(Box::new(span)) })
    }

    /// Whether the span records attributes (exported and sampled).
    pub fn is_recording(&self) -> bool {
        self.span.as_ref().is_some_and(|s| s.is_recording())
    }

    /// Ends the span with the request's route, provider, outcome and status.
    pub fn end(mut self, attributes: impl FnOnce() -> Vec<KeyValue>, status: u16) {
        if let Some(span) = &mut self.span {
            if span.is_recording() {
                span.set_attributes(attributes());
                if status >= 500 {
                    span.set_status(Status::error(format!("answered {status}")));
                }
            }
            span.end();
        }
    }
}

/// A span for a call the gateway makes for a request (store, upstream), a child of the
/// request's span; ended on drop.
pub struct ChildSpan {
    parent: TraceParent,
    span: opentelemetry_sdk::trace::Span,
}

impl ChildSpan {
    /// Starts `name` under `trace`, when spans are exported.
    pub fn start(trace: Option<&Trace>, name: &'static str, kind: SpanKind) -> Option<ChildSpan> {
        let trace = trace?;
        let e = exporter()?;
        let cx = Context::new().with_remote_span_context(trace.parent.span_context(false));
        let span = e.tracer.span_builder(name).with_kind(kind).start_with_context(&e.tracer, &cx);
        Some(ChildSpan { parent: TraceParent::of(span.span_context()), span })
    }

    /// Records an attribute, when the span records.
    pub fn set(&mut self, kv: impl FnOnce() -> KeyValue) {
        if self.span.is_recording() {
            self.span.set_attribute(kv());
        }
    }

    /// Marks the call as failed.
    pub fn fail(&mut self, why: impl std::fmt::Display) {
        if self.span.is_recording() {
            self.span.set_status(Status::error(why.to_string()));
        }
    }
}

/// A random, non-zero span id; no allocation, the thread's generator.
fn new_span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_traceparent() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(v.as_bytes()).unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.span_id[7], 0xb7);
        assert!(p.sampled());
        assert_eq!(p.value(), v);
        assert_eq!(TraceIdHex(p.trace_id).to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A later version may append fields; version 00 may not.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(TraceParent::parse(later.as_bytes()).is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert!(TraceParent::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_the_trace_is_passed_on_with_a_new_parent() {
        let mut h = HeaderMap::new();
        assert!(RequestSpan::start(&h).is_none(), "no traceparent: nothing to pass on");
        h.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert(&TRACESTATE, HeaderValue::from_static("vendor=x"));
        let s = RequestSpan::start(&h).unwrap();
        assert_eq!(s.trace.parent.trace_id, TraceParent::parse(h[&TRACEPARENT].as_bytes()).unwrap().trace_id);
        assert_ne!(s.trace.parent.span_id, [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        let mut out = HeaderMap::new();
        s.trace.set(&mut out, None);
        assert_eq!(out[&TRACESTATE], "vendor=x");
        assert!(out[&TRACEPARENT].to_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }
}
