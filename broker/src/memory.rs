//! Handing memory the server freed back to the operating system.
//!
//! glibc's allocator keeps what other threads freed in their arenas and returns by itself only the free top
//! of each heap, so after a load (a thousand connections closed, their buffers freed) the process keeps
//! about its peak size, though the memory is free. `malloc_trim(0)` gives every whole free page back. The
//! broker calls it once connections have closed and none has closed for a while: it walks the heaps and
//! holds each arena's lock meanwhile (milliseconds), so it is not called while clients come and go. It
//! returns only what is free: what rumqttd's logs still hold stays (see [`crate::budget`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::guard::GuardStats;

/// How long no connection may have closed before freed memory is handed back.
const QUIET: Duration = Duration::from_secs(10);

/// Hands freed memory back after every wave of closed connections, once it has passed.
pub(crate) async fn give_back_after_closes(stats: Arc<GuardStats>) {
    let mut tick = tokio::time::interval(QUIET);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stats.connections_ended.load(Ordering::Relaxed);
    let mut pending = false;
    loop {
        tick.tick().await;
        let ended = stats.connections_ended.load(Ordering::Relaxed);
        if ended != seen {
            seen = ended;
            pending = true;
            continue;
        }
        if pending {
            pending = false;
            tokio::task::spawn_blocking(trim);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    let started = std::time::Instant::now();
    // SAFETY: malloc_trim only reads and updates the allocator's own state, under its own locks; 0 asks to
    // keep no padding at the top of the heap.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!("freed memory handed back to the system ({released}) in {:?}", started.elapsed());
}

/// Other allocators hand memory back by themselves, or offer no way to ask.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
