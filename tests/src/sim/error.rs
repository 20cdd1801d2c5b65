//! Binance error bodies: `{"code":-1022,"msg":"..."}` with the HTTP status Binance uses for each code.

use serde_json::json;

/// An error answer exactly as Binance sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400, 401, 418, 429, 503, ...).
    pub http: u16,
    /// Binance error code (negative).
    pub code: i64,
    /// Binance error message.
    pub msg: String,
    /// `Retry-After` seconds for 429/418.
    pub retry_after: Option<u64>,
    /// The `data` object some errors carry beside code and message (spot's cancel-replace says there which
    /// half failed).
    pub data: Option<serde_json::Value>,
}

impl ApiError {
    /// A new error.
    pub fn new(http: u16, code: i64, msg: impl Into<String>) -> Self {
        Self {
            http,
            code,
            msg: msg.into(),
            retry_after: None,
            data: None,
        }
    }
    /// The JSON body (with `data` when the error has one).
    pub fn body(&self) -> serde_json::Value {
        match &self.data {
            Some(d) => json!({"code": self.code, "msg": self.msg, "data": d}),
            None => json!({"code": self.code, "msg": self.msg}),
        }
    }

    /// -1000
    pub fn unknown() -> Self {
        Self::new(
            500,
            -1000,
            "An unknown error occured while processing the request.",
        )
    }
    /// -1007 with HTTP 503: the execution status is unknown (the order may or may not exist).
    pub fn unknown_status() -> Self {
        Self::new(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )
    }
    /// -1021 (timestamp too old).
    pub fn outside_recv_window() -> Self {
        Self::new(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        )
    }
    /// -1021 (timestamp ahead).
    pub fn ahead_of_server() -> Self {
        Self::new(
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        )
    }
    /// -1022
    pub fn bad_signature() -> Self {
        Self::new(400, -1022, "Signature for this request is not valid.")
    }
    /// -1100 (illegal characters).
    pub fn illegal_chars(param: &str, range: &str) -> Self {
        Self::new(
            400,
            -1100,
            format!("Illegal characters found in parameter '{param}'; legal range is '{range}'."),
        )
    }
    /// -1102
    pub fn mandatory(param: &str) -> Self {
        Self::new(
            400,
            -1102,
            format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        )
    }
    /// -1111
    pub fn precision() -> Self {
        Self::new(
            400,
            -1111,
            "Precision is over the maximum defined for this asset.",
        )
    }
    /// -1116
    pub fn invalid_order_type() -> Self {
        Self::new(400, -1116, "Invalid orderType.")
    }
    /// -1117
    pub fn invalid_side() -> Self {
        Self::new(400, -1117, "Invalid side.")
    }
    /// -1115
    pub fn invalid_tif() -> Self {
        Self::new(400, -1115, "Invalid timeInForce.")
    }
    /// -1121
    pub fn invalid_symbol() -> Self {
        Self::new(400, -1121, "Invalid symbol.")
    }
    /// -1125
    pub fn listen_key_missing() -> Self {
        Self::new(
            400,
            -1125,
            "This listenKey does not exist. Please use `POST /fapi/v1/listenKey` to recreate `listenKey`",
        )
    }
    /// -1131
    pub fn recv_window_too_big() -> Self {
        Self::new(400, -1131, "recvWindow must be less than 60000")
    }
    /// -2011
    pub fn unknown_order_cancel() -> Self {
        Self::new(400, -2011, "Unknown order sent.")
    }
    /// -2013
    pub fn no_such_order() -> Self {
        Self::new(400, -2013, "Order does not exist.")
    }
    /// -2014
    pub fn key_format() -> Self {
        Self::new(401, -2014, "API-key format invalid.")
    }
    /// -2015
    pub fn key_rejected() -> Self {
        Self::new(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        )
    }
    /// -2019
    pub fn margin_insufficient() -> Self {
        Self::new(400, -2019, "Margin is insufficient.")
    }
    /// -2022
    pub fn reduce_only_rejected() -> Self {
        Self::new(400, -2022, "ReduceOnly Order is rejected.")
    }
    /// -2025
    pub fn too_many_open_orders() -> Self {
        Self::new(400, -2025, "Reach max open order limit.")
    }
    /// -4003
    pub fn qty_not_positive() -> Self {
        Self::new(400, -4003, "Quantity less than or equal to zero.")
    }
    /// -4004
    pub fn qty_below_min() -> Self {
        Self::new(400, -4004, "Quantity less than min quantity.")
    }
    /// -4005
    pub fn qty_above_max() -> Self {
        Self::new(400, -4005, "Quantity greater than max quantity.")
    }
    /// -4013
    pub fn price_below_min() -> Self {
        Self::new(400, -4013, "Price less than min price.")
    }
    /// -4014
    pub fn tick() -> Self {
        Self::new(400, -4014, "Price not increased by tick size.")
    }
    /// -4016
    pub fn price_above_limit(limit: &str) -> Self {
        Self::new(
            400,
            -4016,
            format!("Limit price can't be higher than {limit}."),
        )
    }
    /// -4023
    pub fn step() -> Self {
        Self::new(400, -4023, "Qty not increased by step size.")
    }
    /// -4024
    pub fn price_below_limit(limit: &str) -> Self {
        Self::new(
            400,
            -4024,
            format!("Limit price can't be lower than {limit}."),
        )
    }
    /// -4028
    pub fn bad_leverage() -> Self {
        Self::new(400, -4028, "Leverage is not valid")
    }
    /// -4056 (session.logon with a non-Ed25519 key).
    pub fn logon_needs_ed25519() -> Self {
        Self::new(400, -4056, "HMAC_SHA256 API key is not supported.")
    }
    /// -4116
    pub fn duplicate_client_id() -> Self {
        Self::new(400, -4116, "ClientOrderId is duplicated.")
    }
    /// -4120
    pub fn algo_only() -> Self {
        Self::new(
            400,
            -4120,
            "STOP_ORDER_SWITCH_ALGO: Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
        )
    }
    /// -4164
    pub fn min_notional(notional: &str) -> Self {
        Self::new(
            400,
            -4164,
            format!(
                "Order's notional must be no smaller than {notional} (unless you choose reduce only)"
            ),
        )
    }
    /// -5021
    pub fn fok_rejected() -> Self {
        Self::new(
            400,
            -5021,
            "Due to the order could not be filled immediately, the FOK order has been rejected. The order will not be recorded in the order history",
        )
    }
    /// -5022
    pub fn gtx_rejected() -> Self {
        Self::new(
            400,
            -5022,
            "Due to the order could not be executed as maker, the Post Only order will be rejected. The order will not be recorded in the order history",
        )
    }
    /// -1003 with 429.
    pub fn too_many_requests(limit: u32, retry_after: u64) -> Self {
        let mut e = Self::new(
            429,
            -1003,
            format!(
                "Too many requests; current limit is {limit} requests per minute. Please use the websocket for live updates to avoid polling the API."
            ),
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// -1015 with 429.
    pub fn too_many_orders(limit: u32, per: &str, retry_after: u64) -> Self {
        let mut e = Self::new(
            429,
            -1015,
            format!("Too many new orders; current limit is {limit} orders per {per}."),
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// -1003 with 418.
    pub fn banned(until_ms: u64, retry_after: u64) -> Self {
        let mut e = Self::new(
            418,
            -1003,
            format!(
                "Way too many requests; IP banned until {until_ms}. Please use the websocket for live updates to avoid bans."
            ),
        );
        e.retry_after = Some(retry_after);
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} code {}: {}", self.http, self.code, self.msg)
    }
}

impl std::error::Error for ApiError {}
