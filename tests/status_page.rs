//! The live status page (`GET /` on the admin listener, issue #13) in a real
//! browser: headless Chromium (`scripts/test.sh` installs Debian's
//! `chromium`) loads it with the admin token in the URL fragment, lets it
//! poll `/stats` for a few seconds of virtual time and dumps the DOM. The
//! page must load, show the numbers herald counts (and show them move when
//! listeners connect and events flow), and print nothing to the console: no
//! script error, no blocked resource, no failed request.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_exchange, jwt, Herald, TempDir, EVENT_TIMEOUT};

const ADMIN: &str = "status-page-admin-token";

/// The Chromium binary, or a panic saying how to get one.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("no chromium on PATH (scripts/test.sh installs Debian's chromium)")
}

/// What one page load showed: the DOM after `budget_ms` of virtual time, and
/// the console lines Chromium logged.
struct Load {
    dom: String,
    console: Vec<String>,
}

impl Load {
    /// The text of the element with `id` (no nested elements).
    fn text(&self, id: &str) -> String {
        let open = format!("id=\"{id}\">");
        let at = self
            .dom
            .find(&open)
            .unwrap_or_else(|| panic!("no #{id} in the page:\n{}", self.dom))
            + open.len();
        self.dom[at..].split('<').next().unwrap().to_string()
    }

    /// The number shown in `id` (`1,234.5` → 1234.5); panics on `–`.
    fn number(&self, id: &str) -> f64 {
        let t = self.text(id);
        t.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("#{id} shows {t:?}, not a number:\n{}", self.dom))
    }

    /// `data-NAME` of `<body>`.
    fn body_data(&self, name: &str) -> String {
        let key = format!("data-{name}=\"");
        let body = &self.dom[self.dom.find("<body").expect("a <body>")..];
        let at = body.find(&key).expect("body data attribute") + key.len();
        body[at..].split('"').next().unwrap().to_string()
    }

    /// The `<tr data-type=…>` row of the refusals table: (total, new in the
    /// page's rate window).
    fn refusal(&self, kind: &str) -> (String, String) {
        let key = format!("<tr data-type=\"{kind}\"");
        let at = self
            .dom
            .find(&key)
            .unwrap_or_else(|| panic!("no refusal row {kind}:\n{}", self.dom));
        let row = &self.dom[at..at + self.dom[at..].find("</tr>").unwrap()];
        let cells: Vec<String> = row
            .split("<td")
            .skip(1)
            .map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string())
            .collect();
        (cells[1].clone(), cells[2].clone())
    }

    fn assert_clean(&self) {
        assert!(
            self.console.is_empty(),
            "the page wrote to the console:\n{}",
            self.console.join("\n")
        );
        assert_eq!(self.body_data("state"), "ok", "{}", self.dom);
        let polls: u32 = self.body_data("polls").parse().unwrap();
        assert!(polls >= 2, "only {polls} polls of /stats:\n{}", self.dom);
    }
}

/// Loads `url` in headless Chromium for `budget_ms` of virtual time.
fn load(url: &str, budget_ms: u32) -> Load {
    let profile = TempDir::new("chromium");
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .stdout(std::fs::File::create(profile.join("dom")).unwrap())
        .stderr(std::fs::File::create(profile.join("stderr")).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group this test created for
            // Chromium (and its helpers), nothing else.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |name| std::fs::read_to_string(profile.join(name)).unwrap_or_default();
    let (dom, stderr) = (read("dom"), read("stderr"));
    assert!(status.success(), "chromium exited with {status}:\n{stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    Load { dom, console }
}

#[test]
fn the_status_page_loads_polls_and_shows_the_numbers_move() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ADMIN_TOKEN", ADMIN)]);
    let page = format!("http://{}/#token={ADMIN}", h.admin_addr());

    // The page itself needs no token and carries its CSP.
    let r = http_exchange(
        h.admin_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        EVENT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("content-security-policy").is_some());

    let before = load(&page, 3000);
    before.assert_clean();
    assert_eq!(before.number("listeners"), 0.0);
    assert_eq!(before.number("events-total"), 0.0);
    assert_eq!(before.refusal("missing_token").0, "0");
    assert!(before.text("ingest").contains("disabled"), "{}", before.dom);
    let connects_before = before.number("connects-total");

    // Three listeners join, one request is refused, two events go out.
    let mut listeners: Vec<_> = (0..3)
        .map(|i| h.sse_with_token(&jwt::user(&format!("u{i}"))))
        .collect();
    assert_eq!(h.connect("/sse", &[]).status(), 401);
    for m in ["one", "two"] {
        h.publish_with_token(&format!(r#"{{"message":"{m}"}}"#), Some(ADMIN));
    }
    for l in &mut listeners {
        assert_eq!(l.expect_event().data, "one");
        assert_eq!(l.expect_event().data, "two");
    }

    // While the page polls, requests keep arriving (refused 404s) and
    // events keep flowing: the per-second figures must move.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, public, admin) = (stop.clone(), h.addr(), h.admin_addr());
        std::thread::spawn(move || {
            let publish = format!(
                "POST /publish HTTP/1.1\r\nAuthorization: Bearer {ADMIN}\r\n\
                 Content-Length: 15\r\n\r\n{{\"message\":\"c\"}}"
            );
            while !stop.load(Ordering::Relaxed) {
                let _ = http_exchange(public, b"GET /nope HTTP/1.1\r\n\r\n", EVENT_TIMEOUT);
                let _ = http_exchange(admin, publish.as_bytes(), EVENT_TIMEOUT);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let after = load(&page, 3000);
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();

    after.assert_clean();
    assert_eq!(after.number("listeners"), 3.0, "{}", after.dom);
    assert!(after.number("connections") >= 3.0);
    assert!(after.number("connects-total") >= connects_before + 4.0);
    assert!(after.number("events-total") >= 2.0);
    assert!(after.number("deliveries-total") >= 6.0);
    assert_eq!(after.refusal("missing_token").0, "1");
    for rate in [
        "connects-rate",
        "disconnects-rate",
        "events-rate",
        "deliveries-rate",
    ] {
        assert!(
            after.number(rate) > 0.0,
            "#{rate} did not move:\n{}",
            after.dom
        );
    }
    assert!(
        after.refusal("not_found").1.starts_with('+'),
        "no new 404s while the page polled:\n{}",
        after.dom
    );
    // The sparkline has a point per poll.
    let points = after
        .dom
        .split("id=\"spark-line\"")
        .nth(1)
        .unwrap_or_default();
    assert!(points.contains("points=\"0.0,"), "{}", after.dom);
    assert!(!after.dom.contains(ADMIN), "the token stayed in the page");
}

#[test]
fn without_the_token_the_page_asks_for_it() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ADMIN_TOKEN", ADMIN)]);
    let page = load(&format!("http://{}/", h.admin_addr()), 1500);
    assert_eq!(page.body_data("state"), "auth", "{}", page.dom);
    assert!(
        !page.dom.contains("<form id=\"auth\" class=\"card\" hidden"),
        "{}",
        page.dom
    );
}
