//! Network clients for the live path.
//!
//! - [`ws`]: a WebSocket client over TCP, or TLS (rustls with the `ring` provider and the webpki root
//!   certificates) for `wss://`, built on tungstenite. Used by the market data feed, and by the control plane's
//!   order gateway and user data stream.
//! - [`ws_feed`]: the live market data [`crate::feed::Feed`]: combined streams, ping/pong, reconnect with
//!   jittered backoff, 24-hour rollover by opening the new connection before closing the old.
//!
//! **Interim (issue 4):** the sockets run on a dedicated reader thread per connection and hand complete frames
//! to the engine through a bounded queue (one `Vec<u8>` per frame). The target is a non-blocking client polled
//! inside the engine's busy loop (mio), without the per-frame allocation; the [`crate::feed::Feed`] interface
//! stays the same.

pub mod ws;
pub mod ws_feed;
