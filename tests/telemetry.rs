//! W3C trace context and OTLP export: the upstream sees the sender's trace with the gateway's
//! span as its parent, and a test OTLP/HTTP receiver gets the gateway's spans (the delivery,
//! with route, provider and outcome, and its store and upstream calls as children).

use crate::util::process::GatewayProcess;
use crate::util::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tiny OTLP/HTTP receiver: decodes each `POST /v1/traces` (protobuf) and keeps the spans.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let kept = kept.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                            for rs in export.resource_spans {
                                let service = rs
                                    .resource
                                    .iter()
                                    .flat_map(|r| &r.attributes)
                                    .find(|a| a.key == "service.name")
                                    .and_then(|a| string(a.value.as_ref()?.value.as_ref()?))
                                    .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for s in ss.spans {
                                        kept.lock().unwrap().push((service.clone(), s));
                                    }
                                }
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { url, spans }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes.iter().find(|a| a.key == key).and_then(|a| string(a.value.as_ref()?.value.as_ref()?))
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_trace_reaches_the_upstream_and_the_collector() {
    let up = Upstream::start().await;
    let receiver = Receiver::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\ntelemetry:\n  otlp_endpoint: {:?}\n  service_name: gw-under-test\nroutes:\n{}",
        receiver.url,
        route("/p", "paylent", &["trace-secret"], &up.url("/p"), "")
    );
    let mut gw = GatewayProcess::start(&yaml);
    let c = client();
    let body = br#"{"event":"x","event_id":"tr1"}"#.to_vec();
    let mut headers = sign("paylent", "trace-secret", &body, "", 0);
    headers.push(("traceparent".into(), format!("00-{TRACE_ID}-{SENDER_SPAN}-01")));
    headers.push(("tracestate".into(), "vendor=abc".into()));
    let ok = post(&c, &gw.url("/p"), &headers, body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // A request without a traceparent starts a trace of its own.
    let body = br#"{"event":"x","event_id":"tr2"}"#.to_vec();
    let ok = post(&c, &gw.url("/p"), &sign("paylent", "trace-secret", &body, "", 0), body).await;
    assert_eq!(ok.status, 200);

    let seen = up.seen();
    let tp = seen[0].headers["traceparent"].to_str().unwrap().to_string();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"), "same trace, sampled: {tp}");
    assert_ne!(parts[2], SENDER_SPAN, "the gateway's span is the upstream's parent");
    assert_eq!(seen[0].headers["tracestate"], "vendor=abc");
    let own = seen[1].headers["traceparent"].to_str().unwrap().to_string();
    assert!(!own.contains(TRACE_ID) && own.len() == 55, "a new trace: {own}");
    assert!(!seen[1].headers.contains_key("tracestate"));

    // SIGTERM: the gateway drains and exports the spans still batched before it exits.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let d = Deadline::new("the gateway exits", Duration::from_secs(20));
    while gw.child.try_wait().unwrap().is_none() {
        d.tick().await;
    }
    wait_until("the spans are received", Duration::from_secs(10), || {
        receiver.spans().iter().filter(|(_, s)| hex::encode(&s.trace_id) == TRACE_ID).count() >= 3
    })
    .await;
    let spans: Vec<Span> = receiver
        .spans()
        .into_iter()
        .filter(|(service, s)| service == "gw-under-test" && hex::encode(&s.trace_id) == TRACE_ID)
        .map(|(_, s)| s)
        .collect();
    let named = |n: &str| spans.iter().find(|s| s.name == n).unwrap_or_else(|| panic!("{n} in {spans:?}"));
    let delivery = named("delivery");
    assert_eq!(hex::encode(&delivery.parent_span_id), SENDER_SPAN, "a child of the sender's span");
    assert_eq!(attr(delivery, "portcullis.route").as_deref(), Some("/p"));
    assert_eq!(attr(delivery, "portcullis.provider").as_deref(), Some("paylent"));
    assert_eq!(attr(delivery, "portcullis.outcome").as_deref(), Some("forwarded"));
    assert_eq!(attr(delivery, "http.response.status_code").as_deref(), Some("200"));
    let claim = named("store.claim");
    assert_eq!(claim.parent_span_id, delivery.span_id, "the store call is a child");
    assert_eq!(attr(claim, "portcullis.claim").as_deref(), Some("acquired"));
    assert_eq!(named("store.complete").parent_span_id, delivery.span_id);
    let upstream = named("upstream");
    assert_eq!(upstream.parent_span_id, delivery.span_id, "the upstream call is a child");
    assert_eq!(hex::encode(&upstream.span_id), parts[2], "and the upstream's parent");
    // The second delivery's trace was exported too, as a root span.
    let own_trace = own.split('-').nth(1).unwrap().to_string();
    wait_until("the second trace", Duration::from_secs(5), || {
        receiver.spans().iter().any(|(_, s)| {
            hex::encode(&s.trace_id) == own_trace && s.name == "delivery" && s.parent_span_id.is_empty()
        })
    })
    .await;
}

/// Without `telemetry:`, the trace is still passed on (a new parent id, the same trace), an
/// invalid `traceparent` is not, and the delivery log line names the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_export_the_trace_is_passed_on() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &config(&[route("/p", "paylent", &["s3cret"], &up.url("/p"), "")]),
        Default::default(),
    )
    .await;
    let c = client();
    let body = br#"{"event":"x","event_id":"np1"}"#.to_vec();
    let mut headers = sign("paylent", "s3cret", &body, "", 0);
    headers.push(("traceparent".into(), format!("00-{TRACE_ID}-{SENDER_SPAN}-00")));
    assert_eq!(post(&c, &gw.url("/p"), &headers, body).await.status, 200);
    let body = br#"{"event":"x","event_id":"np2"}"#.to_vec();
    let mut headers = sign("paylent", "s3cret", &body, "", 0);
    headers.push(("traceparent".into(), "00-not-a-trace".into()));
    headers.push(("tracestate".into(), "vendor=abc".into()));
    assert_eq!(post(&c, &gw.url("/p"), &headers, body).await.status, 200);
    let seen = up.seen();
    let tp = seen[0].headers["traceparent"].to_str().unwrap();
    assert!(tp.starts_with(&format!("00-{TRACE_ID}-")) && tp.ends_with("-00"), "{tp}");
    assert!(!tp.contains(SENDER_SPAN), "{tp}");
    assert!(!seen[1].headers.contains_key("traceparent"), "an invalid traceparent stops here");
    assert!(!seen[1].headers.contains_key("tracestate"), "and its tracestate with it");
}
