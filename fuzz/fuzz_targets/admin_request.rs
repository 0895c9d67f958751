//! Fuzzes the admin listener's request path: a head (`conn::http::parse_head`)
//! classified by `admin::classify` (what is answered on the head alone, with
//! tokens set), then, for a publish that passed, the body decoded under the
//! batch cap. Checks that answers are well-formed HTTP, that nothing passes
//! without its token, and that no declared body over the cap is accepted.
#![no_main]

use herald::admin::{classify, Route};
use herald::config::Config;
use herald::conn::http::{parse_head, Head, Method};
use herald::hub::envelope::decode;
use herald::hub::status::IngestStatus;
use libfuzzer_sys::fuzz_target;

const ADMIN: &str = "admin-token";
const PUBLISH: &str = "publish-token";

fuzz_target!(|data: &[u8]| {
    let cfg = Config::from_lookup(&|k| match k {
        "ADMIN_TOKEN" => Some(ADMIN.into()),
        "PUBLISH_TOKEN" => Some(PUBLISH.into()),
        "PUBLISH_MAX_BYTES" => Some("4096".into()),
        "PUBLISH_MAX_BATCH" => Some("4".into()),
        _ => None,
    })
    .expect("config");
    let Head::Complete(req) = parse_head(data) else {
        return;
    };
    let status = IngestStatus::new(false);
    let bearer = req.bearer().map(str::to_string);
    match classify(&cfg, &status, &req) {
        Route::Answer(bytes) => {
            assert!(bytes.starts_with(b"HTTP/1.1 "));
            assert!(bytes.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        Route::Publish => {
            assert_eq!(req.method(), Method::Post);
            assert!(matches!(bearer.as_deref(), Some(ADMIN | PUBLISH)), "published without a token");
            let len = req.content_length.expect("a publish without Content-Length passed");
            assert!(len <= 4096, "a body of {len} bytes passed the cap");
            let body = &data[req.head_len..];
            let _ = decode(&body[..len.min(body.len())]);
        }
        // The status page holds no data (it asks for the token to poll /stats).
        Route::Status => assert_eq!(req.path, "/"),
        Route::Stats | Route::Metrics | Route::Connections(_) => {
            assert_eq!(bearer.as_deref(), Some(ADMIN), "admin route without the admin token");
        }
    }
});
