//! Network clients for the live path.
//!
//! - [`mio_ws`]: the non-blocking WebSocket client the engine thread polls (mio, rustls for `wss://`,
//!   allocation-free frame reading through [`crate::feed::frame::FrameReader`]).
//! - [`ws_feed`]: the live market data [`crate::feed::Feed`] on top of it: combined streams, ping/pong,
//!   reconnect with jittered backoff, 24-hour rollover by opening the new connection before closing the old,
//!   local depth books.
//! - [`ws`]: a blocking WebSocket client over TCP, or TLS (rustls with the `ring` provider and the webpki root
//!   certificates) for `wss://`, built on tungstenite. Used off the hot path by the control plane's order gateway
//!   and user data stream.

pub mod mio_ws;
pub mod ws;
pub mod ws_feed;
