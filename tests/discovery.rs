//! Tablet discovery over real UDP (contract C58): the request is answered with the HTTP port at once, other
//! datagrams are ignored, a burst is answered in full up to the per-address rate and cut beyond it.

mod common;

use std::time::Duration;

use common::*;
use tokio::net::UdpSocket;

const REQUEST: &[u8] = b"DISCOVER_OEE_SERVER_REQUEST";

async fn app_with(external_port: u16, per_second: u32) -> TestApp {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.tablets.external_http_port = external_port;
    config.tablets.discovery_answers_per_s = per_second;
    spawn_app_with(config, db, oee_server::Services::ALL).await
}

/// Answers arriving at `socket` until none has come for `quiet`.
async fn answers(socket: &UdpSocket, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
        out.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_is_told_the_http_port_and_junk_is_ignored() {
    let t = app_with(0, 5).await;
    let server = t.app.discovery_addr.expect("discovery runs with the bridge");
    let tablet = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    tablet.send_to(b"HELLO", server).await.unwrap();
    tablet.send_to(b"DISCOVER_OEE_SERVER_REQUEST_PLEASE", server).await.unwrap();
    tablet.send_to(REQUEST, server).await.unwrap();
    let got = answers(&tablet, Duration::from_millis(500)).await;
    let port = t.app.http_addr.unwrap().port();
    assert_eq!(got, vec![format!("DISCOVER_OEE_SERVER_RESPONSE:{port}")], "only the request is answered");

    // the port the app builds its address from really serves the device API
    let r = t.client.get(format!("http://127.0.0.1:{port}/api/activity-codes")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_external_port_is_announced() {
    let t = app_with(80, 5).await;
    let tablet = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tablet.send_to(REQUEST, t.app.discovery_addr.unwrap()).await.unwrap();
    assert_eq!(answers(&tablet, Duration::from_millis(500)).await, vec!["DISCOVER_OEE_SERVER_RESPONSE:80"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_answered_in_full_within_the_rate_and_cut_beyond_it() {
    let t = app_with(0, 40).await;
    let server = t.app.discovery_addr.unwrap();
    // several tablets asking at once: each has its own allowance
    let tablets = [
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        UdpSocket::bind("127.0.0.2:0").await.unwrap(),
        UdpSocket::bind("127.0.0.3:0").await.unwrap(),
    ];
    for tablet in &tablets {
        for _ in 0..20 {
            tablet.send_to(REQUEST, server).await.unwrap();
        }
    }
    for tablet in &tablets {
        assert_eq!(answers(tablet, Duration::from_millis(500)).await.len(), 20, "every request within the rate");
    }

    // one address flooding far past its rate gets only about its rate
    let flood = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    for _ in 0..400 {
        flood.send_to(REQUEST, server).await.unwrap();
    }
    let n = answers(&flood, Duration::from_millis(500)).await.len();
    assert!((40..400).contains(&n), "{n} answers to 400 requests at 40/s");
}
