//! Signature verification by scheme and body size, beside raw HMAC-SHA256 over the same
//! bytes: what the profile language, header parsing and decoding cost on top of the MAC.
//!
//! cargo bench --bench verify

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use portcullis::verify::profile::ProfileSet;
use portcullis::verify::{Input, Secret, Verifier};
use std::hint::black_box;

const NOW: u64 = 1_796_025_600;

fn setup(provider: &str, secret: &str, body: &[u8]) -> (Verifier, HeaderMap) {
    let p = ProfileSet::builtin().get(provider).unwrap().clone();
    let v = Verifier::new(p, &[Secret::from(secret.to_string())], None).unwrap();
    let mut h = HeaderMap::new();
    for (k, val) in v.sign(&Method::POST, "", body, "msg_bench", NOW).unwrap() {
        h.insert(k, val.parse().unwrap());
    }
    (v, h)
}

fn bench(c: &mut Criterion) {
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let mut body = br#"{"event_id":"evt_bench","pad":""#.to_vec();
        body.resize(size - 2, b'x');
        body.extend_from_slice(b"\"}");
        let mut g = c.benchmark_group(format!(
            "verify/{}",
            if size >= 1 << 20 { "1MB".to_string() } else { format!("{}KB", size / 1024) }
        ));
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(30);
        }
        let key = Hmac::<sha2::Sha256>::new_from_slice(b"bench-secret").unwrap();
        g.bench_function("raw-hmac-sha256", |b| {
            b.iter(|| {
                let mut m = key.clone();
                m.update(black_box(&body));
                black_box(m.finalize())
            })
        });
        for (provider, secret) in [
            ("paylent", "bench-secret"),
            ("github", "bench-secret"),
            ("stripe", "whsec_bench"),
            ("standard-webhooks", "whsec_YmVuY2gtc2VjcmV0LWJ5dGVz"),
            ("shopify", "bench-secret"),
        ] {
            let (v, h) = setup(provider, secret, &body);
            let input = Input { method: &Method::POST, url: "", headers: &h, body: &body, now: NOW };
            assert!(v.verify(&input).is_ok(), "{provider}");
            g.bench_with_input(BenchmarkId::new("portcullis", provider), &input, |b, input| {
                b.iter(|| black_box(v.verify(black_box(input)).unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
