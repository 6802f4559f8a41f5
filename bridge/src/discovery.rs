//! Tablet discovery: the Android app broadcasts `DISCOVER_OEE_SERVER_REQUEST` to UDP port 8090 and builds
//! the server's address from the sender of the answer `DISCOVER_OEE_SERVER_RESPONSE:<port>`. Every request
//! is answered at once (the reference slept 5 s after each), except beyond a per-address rate, so a flood
//! cannot turn the server into an amplifier. Anything else is ignored.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What a tablet sends.
pub const REQUEST: &[u8] = b"DISCOVER_OEE_SERVER_REQUEST";
/// What it is answered, followed by the HTTP port.
pub const RESPONSE_PREFIX: &str = "DISCOVER_OEE_SERVER_RESPONSE:";

/// A running discovery responder (stopped on drop).
pub struct Discovery {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and answers discovery requests with `http_port`, at most `per_second` answers a second to
/// one address.
pub async fn start(addr: SocketAddr, http_port: u16, per_second: u32) -> std::io::Result<Discovery> {
    let socket = UdpSocket::bind(addr).await?;
    let local_addr = socket.local_addr()?;
    let answer = format!("{RESPONSE_PREFIX}{http_port}").into_bytes();
    let task = tokio::spawn(async move {
        let mut limiter = RateLimiter::new(per_second);
        let mut buf = [0u8; 512];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // An ICMP error from an earlier answer can surface here; it concerns that peer only.
                    tracing::debug!("discovery: {e}");
                    continue;
                }
            };
            if buf[..n].trim_ascii() != REQUEST || !limiter.allow(from.ip(), Instant::now()) {
                continue;
            }
            if let Err(e) = socket.send_to(&answer, from).await {
                tracing::debug!("discovery: cannot answer {from}: {e}");
            }
        }
    });
    tracing::info!("tablet discovery answering on UDP {local_addr} with HTTP port {http_port}");
    Ok(Discovery { local_addr, task })
}

/// A token bucket per address: `per_second` answers a second, bursts up to as many.
struct RateLimiter {
    per_second: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second: f64::from(per_second.max(1)), buckets: HashMap::new() }
    }

    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() > 10_000 {
            // Addresses quiet for a while have full buckets again: forgetting them changes nothing.
            self.buckets.retain(|_, (_, seen)| now.duration_since(*seen) < Duration::from_secs(10));
        }
        let rate = self.per_second;
        let (tokens, seen) = self.buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*seen).as_secs_f64() * rate).min(rate);
        *seen = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_rate_and_refills() {
        let mut l = RateLimiter::new(3);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..10).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 3, "a burst is cut at the rate");
        assert!(l.allow(b, t0), "another address has its own bucket");
        assert!(!l.allow(a, t0 + Duration::from_millis(100)), "a third of a token is not enough");
        assert!(l.allow(a, t0 + Duration::from_millis(400)), "refilled after a third of a second");
    }
}
