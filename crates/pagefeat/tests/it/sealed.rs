//! The sealed Chromium (issue 15 item 6): a page cannot read local files or navigate its tab
//! away, dialogs do not hang it, WebRTC gathers no candidates, a dead browser is started again.

use pagefeat::config::Config;
use pagefeat::engine::{ChromiumBrowser, ChromiumCapture};
use pagefeat::error::Error;

use crate::support::{page, runtime};

fn browser(rt: &tokio::runtime::Runtime, config: &Config) -> ChromiumBrowser {
    rt.block_on(ChromiumBrowser::launch(
        &config.chromium,
        config.viewport_size(),
    ))
    .unwrap()
}

fn capture(
    rt: &tokio::runtime::Runtime,
    browser: &ChromiumBrowser,
    config: &Config,
    html: &str,
) -> Result<ChromiumCapture, Error> {
    rt.block_on(browser.capture(&page("sealed", html), config.viewport_size(), None, None))
}

fn all_text(capture: &ChromiumCapture) -> String {
    let mut text = String::new();
    for object in &capture.settled.objects {
        text.push_str(&object.text);
        text.push(' ');
        for (_, value) in &object.attributes {
            text.push_str(value);
            text.push(' ');
        }
    }
    text
}

#[test]
fn a_page_script_cannot_bring_a_local_file_into_the_tree() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = browser(&rt, &config);
    // Navigation, a frame and a fetch of /etc/passwd: none may put its text in the result.
    let pages = [
        "<p>before</p><script>location.href = 'file:///etc/passwd';</script>",
        "<p>framed</p><iframe src='file:///etc/passwd'></iframe>",
        "<p id=t>fetched</p><script>fetch('file:///etc/passwd').then(r => r.text())\
         .then(t => document.getElementById('t').textContent = t).catch(() => {});</script>",
    ];
    for html in pages {
        let capture = capture(&rt, &browser, &config, html).unwrap();
        let text = all_text(&capture);
        assert!(!text.contains("root:"), "{html}: {text}");
        assert!(text.contains("before") || text.contains("framed") || text.contains("fetched"));
    }
}

#[test]
fn navigating_the_tab_away_is_refused_and_reported() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = browser(&rt, &config);
    let html = "<p>stay here</p><script>setTimeout(() => \
                { location.href = 'http://elsewhere.example/next'; }, 50);</script>";
    let stayed = capture(&rt, &browser, &config, html).unwrap();
    assert_eq!(
        stayed.refused_navigation.as_deref(),
        Some("http://elsewhere.example/next")
    );
    assert!(
        all_text(&stayed).contains("stay here"),
        "{}",
        all_text(&stayed)
    );
    let plain = capture(&rt, &browser, &config, "<p>plain page</p>").unwrap();
    assert_eq!(plain.refused_navigation, None);
    assert!(all_text(&plain).contains("plain page"));
}

#[test]
fn dialogs_are_dismissed_instead_of_hanging_the_page() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = browser(&rt, &config);
    let html = "<p id=t>waiting</p><script>alert('a'); const c = confirm('b'); \
                prompt('c'); document.getElementById('t').textContent = 'after dialogs ' + c;\
                </script>";
    let capture = capture(&rt, &browser, &config, html).unwrap();
    assert!(
        all_text(&capture).contains("after dialogs false"),
        "{}",
        all_text(&capture)
    );
}

#[test]
fn webrtc_gathers_no_candidates() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = browser(&rt, &config);
    // A STUN server in TEST-NET-2 (RFC 5737): nothing may be sent to it, and no host or mDNS
    // candidate may be offered to the page.
    let html = "<p id=t data-candidates='none'>rtc</p><script>\
        const seen = [];\
        const pc = new RTCPeerConnection({iceServers: [{urls: 'stun:198.51.100.7:3478'}]});\
        pc.onicecandidate = e => { if (e.candidate && e.candidate.candidate) {\
            seen.push(e.candidate.candidate);\
            document.getElementById('t').dataset.candidates = seen.join('|'); } };\
        pc.createDataChannel('x');\
        pc.createOffer().then(o => pc.setLocalDescription(o));\
        </script>";
    let capture = capture(&rt, &browser, &config, html).unwrap();
    let candidates = capture
        .settled
        .objects
        .iter()
        .find_map(|o| o.attr("data-candidates"))
        .unwrap()
        .to_owned();
    assert_eq!(candidates, "none");
}

#[test]
fn a_dead_browser_is_started_again_for_the_next_page() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = browser(&rt, &config);
    capture(&rt, &browser, &config, "<p>first</p>").unwrap();
    let pid = browser.pid();
    assert!(pid > 0);
    // SIGKILL the whole process group (browser, renderers, helpers).
    let group = -i32::try_from(pid).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &group.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let again = capture(&rt, &browser, &config, "<p>second page</p>").unwrap();
    assert!(all_text(&again).contains("second page"));
    assert_eq!(browser.launches(), 2);
    assert_ne!(browser.pid(), pid);
}
