//! Injected faults that affect request handling (WebSocket faults go through [`super::conns`]).

use serde::Serialize;
use std::collections::HashSet;

/// Active faults.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Delay added before a REST response is sent (the request is processed first, like a slow backend).
    pub delay_ms: u64,
    /// How many more responses to delay (None = all until cleared).
    pub delay_count: Option<u32>,
    /// Only delay paths starting with this.
    pub delay_path_prefix: Option<String>,
    /// Answer 503 (-1007, execution status unknown) to this many next order placements.
    pub order_503: u32,
    /// Whether those orders are actually placed despite the 503.
    pub order_503_placed: bool,
    /// Symbols whose next depth update is skipped (a sequence gap: the following event's `pu` breaks).
    pub depth_gap: HashSet<String>,
    /// Highest leverage `POST /fapi/v1/leverage` accepts (above it: -4028), like a symbol whose leverage
    /// brackets stop lower than 125x; `None`: the usual 1–125.
    pub max_leverage: Option<u32>,
    /// Answer 503 (-1001, unprocessed) to this many next REST requests on paths starting with
    /// [`Faults::fail_path_prefix`], before touching them: a backend outage for one endpoint.
    pub fail_count: u32,
    /// The path prefix [`Faults::fail_count`] applies to.
    pub fail_path_prefix: Option<String>,
}

impl Faults {
    /// Takes one delay for `path`, if any applies.
    pub fn take_delay(&mut self, path: &str) -> Option<u64> {
        if self.delay_ms == 0 {
            return None;
        }
        if let Some(p) = &self.delay_path_prefix {
            if !path.starts_with(p.as_str()) {
                return None;
            }
        }
        match &mut self.delay_count {
            None => Some(self.delay_ms),
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(self.delay_ms)
            }
        }
    }

    /// Takes one unprocessed 503 for `path`, if the fault applies.
    pub fn take_fail(&mut self, path: &str) -> bool {
        let applies = self.fail_count > 0
            && self
                .fail_path_prefix
                .as_deref()
                .is_some_and(|p| path.starts_with(p));
        if applies {
            self.fail_count -= 1;
        }
        applies
    }

    /// Takes one 503 for an order placement: `Some(placed)` when it applies.
    pub fn take_order_503(&mut self) -> Option<bool> {
        if self.order_503 == 0 {
            return None;
        }
        self.order_503 -= 1;
        Some(self.order_503_placed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_and_503_counters() {
        let mut f = Faults {
            delay_ms: 50,
            delay_count: Some(1),
            delay_path_prefix: Some("/fapi/v1/order".into()),
            order_503: 2,
            order_503_placed: true,
            ..Default::default()
        };
        assert_eq!(f.take_delay("/fapi/v1/time"), None);
        assert_eq!(f.take_delay("/fapi/v1/order"), Some(50));
        assert_eq!(f.take_delay("/fapi/v1/order"), None);
        assert_eq!(f.take_order_503(), Some(true));
        assert_eq!(f.take_order_503(), Some(true));
        assert_eq!(f.take_order_503(), None);
    }
}
