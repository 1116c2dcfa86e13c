//! `warren serve` with `[server.tls]` reloads its certificate on `SIGHUP`, keeping its
//! connections, and keeps the current certificate when the files do not load.

use serde_json::json;
use warren_testkit::process::{hangup, logged, Warren};
use warren_testkit::tls::{https_api_post, peer_certificate, TestCa};

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let ca = TestCa::new();
    let first = ca.issue("first");
    let files = ca.install(&first);
    let (cert, key) = (files.cert_file.display(), files.key_file.display());
    let (cert, key) = (cert.to_string(), key.to_string());
    let (mut served, log) = Warren::at(env!("CARGO_BIN_EXE_warren")).serve_logged(
        &[],
        &[
            ("WARREN_SERVER__TLS__CERT_FILE", &cert),
            ("WARREN_SERVER__TLS__KEY_FILE", &key),
        ],
    );
    let mut old = ca.connect(&served).await;
    assert!(
        peer_certificate(&old.ws) == first.der,
        "the first certificate"
    );
    old.subscribed("reloaded", None).await;

    let second = ca.issue("second");
    ca.install(&second);
    hangup(&served);
    logged(&log, "TLS certificate reloaded");
    let socket = ca.connect(&served).await;
    assert!(
        peer_certificate(&socket.ws) == second.der,
        "new connections get the new certificate after SIGHUP"
    );

    // A file that does not load: the process lives on and keeps the certificate it has.
    std::fs::write(&files.cert_file, "not PEM").expect("write");
    hangup(&served);
    let failed = logged(&log, "TLS reload failed");
    assert!(failed.contains("server.tls.cert_file"), "{failed}");
    let https = ca.https_client();
    let event = json!({"name": "after", "channel": "reloaded", "data": "still here"});
    let (status, body) = https_api_post(&https, &served, "/apps/app-id/events", &event)
        .await
        .expect("HTTPS publish");
    assert_eq!(status, 200, "{body}");
    let got = old.recv().await;
    assert_eq!(got["data"], "still here", "the old connection lives: {got}");
    let socket = ca.connect(&served).await;
    assert!(
        peer_certificate(&socket.ws) == second.der,
        "a failed reload keeps the current certificate"
    );
    assert!(
        served.child.try_wait().expect("status").is_none(),
        "SIGHUP does not end the process"
    );
    served.kill9();
}
