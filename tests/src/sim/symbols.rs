//! Tradable symbols, their filters (exchangeInfo) and the order-parameter checks those filters imply.

use super::error::ApiError;
use aegis_shared::num::{decimals_of, Notional, Price, Qty, Rate};
use serde_json::{json, Value};

/// One symbol's trading rules.
#[derive(Debug, Clone)]
pub struct SymbolSpec {
    /// e.g. `BTCUSDT`.
    pub symbol: String,
    /// e.g. `BTC`.
    pub base: String,
    /// Price decimals allowed on the wire (more → -1111).
    pub price_precision: u32,
    /// Quantity decimals allowed on the wire (more → -1111).
    pub qty_precision: u32,
    /// PRICE_FILTER tickSize.
    pub tick: Price,
    /// PRICE_FILTER minPrice.
    pub min_price: Price,
    /// PRICE_FILTER maxPrice.
    pub max_price: Price,
    /// LOT_SIZE stepSize.
    pub step: Qty,
    /// LOT_SIZE minQty.
    pub min_qty: Qty,
    /// LOT_SIZE maxQty.
    pub max_qty: Qty,
    /// MARKET_LOT_SIZE maxQty.
    pub market_max_qty: Qty,
    /// MIN_NOTIONAL notional.
    pub min_notional: Notional,
    /// MAX_NUM_ORDERS limit.
    pub max_orders: usize,
    /// PERCENT_PRICE multiplierUp.
    pub mult_up: Rate,
    /// PERCENT_PRICE multiplierDown.
    pub mult_down: Rate,
    /// Starting mid price of the simulated market.
    pub start_price: Price,
}

fn p(s: &str) -> i64 {
    // Invariant: only called on the literals below.
    aegis_shared::num::parse_units(s.as_bytes()).expect("literal decimal")
}

impl SymbolSpec {
    /// BTCUSDT with Binance's real rules.
    pub fn btcusdt() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            base: "BTC".into(),
            price_precision: 2,
            qty_precision: 3,
            tick: Price::from_units(p("0.10")),
            min_price: Price::from_units(p("261.10")),
            max_price: Price::from_units(p("809484")),
            step: Qty::from_units(p("0.001")),
            min_qty: Qty::from_units(p("0.001")),
            max_qty: Qty::from_units(p("1000")),
            market_max_qty: Qty::from_units(p("120")),
            min_notional: Notional::from_units(p("100")),
            max_orders: 200,
            mult_up: Rate::from_units(p("1.0500")),
            mult_down: Rate::from_units(p("0.9500")),
            start_price: Price::from_units(p("60000")),
        }
    }
    /// ETHUSDT with Binance's real rules.
    pub fn ethusdt() -> Self {
        Self {
            symbol: "ETHUSDT".into(),
            base: "ETH".into(),
            price_precision: 2,
            qty_precision: 3,
            tick: Price::from_units(p("0.01")),
            min_price: Price::from_units(p("39.86")),
            max_price: Price::from_units(p("306177")),
            step: Qty::from_units(p("0.001")),
            min_qty: Qty::from_units(p("0.001")),
            max_qty: Qty::from_units(p("10000")),
            market_max_qty: Qty::from_units(p("2000")),
            min_notional: Notional::from_units(p("20")),
            max_orders: 200,
            mult_up: Rate::from_units(p("1.0500")),
            mult_down: Rate::from_units(p("0.9500")),
            start_price: Price::from_units(p("3000")),
        }
    }
    /// The default symbol list.
    pub fn defaults() -> Vec<Self> {
        vec![Self::btcusdt(), Self::ethusdt()]
    }

    /// The exchangeInfo entry.
    pub fn info(&self) -> Value {
        json!({
            "symbol": self.symbol,
            "pair": self.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000u64,
            "onboardDate": 1569398400000u64,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base,
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": self.price_precision,
            "quantityPrecision": self.qty_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": self.min_price.to_string(),
                 "maxPrice": self.max_price.to_string(), "tickSize": self.tick.to_string()},
                {"filterType": "LOT_SIZE", "minQty": self.min_qty.to_string(),
                 "maxQty": self.max_qty.to_string(), "stepSize": self.step.to_string()},
                {"filterType": "MARKET_LOT_SIZE", "minQty": self.min_qty.to_string(),
                 "maxQty": self.market_max_qty.to_string(), "stepSize": self.step.to_string()},
                {"filterType": "MAX_NUM_ORDERS", "limit": self.max_orders},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": self.min_notional.to_string()},
                {"filterType": "PERCENT_PRICE", "multiplierUp": fixed(self.mult_up.units(), 4),
                 "multiplierDown": fixed(self.mult_down.units(), 4), "multiplierDecimal": "4"}
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]
        })
    }

    /// Parses and checks a price: -1111 over the symbol's precision, -4013 below minPrice, -4014 off tick.
    pub fn check_price(&self, raw: &str) -> Result<Price, ApiError> {
        let v = parse_with_precision(raw, self.price_precision, "price")?;
        let price = Price::from_units(v);
        if price.units() <= 0 || price < self.min_price {
            return Err(ApiError::price_below_min());
        }
        if price > self.max_price {
            return Err(ApiError::price_above_limit(&self.max_price.to_string()));
        }
        if !price.is_multiple_of(self.tick) {
            return Err(ApiError::tick());
        }
        Ok(price)
    }

    /// Parses and checks a quantity (LOT_SIZE or MARKET_LOT_SIZE): -1111, -4003, -4004, -4005, -4023.
    pub fn check_qty(&self, raw: &str, market: bool) -> Result<Qty, ApiError> {
        let v = parse_with_precision(raw, self.qty_precision, "quantity")?;
        let qty = Qty::from_units(v);
        if qty.units() <= 0 {
            return Err(ApiError::qty_not_positive());
        }
        if qty < self.min_qty {
            return Err(ApiError::qty_below_min());
        }
        let max = if market {
            self.market_max_qty
        } else {
            self.max_qty
        };
        if qty > max {
            return Err(ApiError::qty_above_max());
        }
        if !qty.is_multiple_of(self.step) {
            return Err(ApiError::step());
        }
        Ok(qty)
    }

    /// PERCENT_PRICE around the mark: -4016 above, -4024 below.
    pub fn check_percent_price(
        &self,
        price: Price,
        mark: Price,
        buy: bool,
    ) -> Result<(), ApiError> {
        let up = mul_rate(mark, self.mult_up);
        let down = mul_rate(mark, self.mult_down);
        if buy && price > up {
            return Err(ApiError::price_above_limit(
                &up.floor_to(self.tick).to_string(),
            ));
        }
        if !buy && price < down {
            return Err(ApiError::price_below_limit(
                &down.ceil_to(self.tick).to_string(),
            ));
        }
        Ok(())
    }

    /// Decimals used to print prices of this symbol.
    pub fn price_decimals(&self) -> u32 {
        decimals_of(self.tick.units()).max(self.price_precision)
    }
}

fn mul_rate(p: Price, r: Rate) -> Price {
    Price::from_units(
        ((p.units() as i128 * r.units() as i128) / aegis_shared::num::SCALE as i128) as i64,
    )
}

/// Prints `units` with exactly `decimals` digits, truncating finer digits (display only).
pub fn fixed(units: i64, decimals: u32) -> String {
    let drop = 10i64.pow(aegis_shared::num::DECIMALS - decimals.min(8));
    let mut buf = [0u8; 40];
    let v = units - units % drop;
    match aegis_shared::num::write_units(v, decimals.min(8), &mut buf) {
        Some(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        None => "0".into(),
    }
}

/// Binance's precision rule: a decimal string with more fractional digits than allowed is -1111 (even when the
/// extra digits are zeros, Binance counts significant ones only, so trailing zeros are accepted).
fn parse_with_precision(raw: &str, max_decimals: u32, name: &str) -> Result<i64, ApiError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ApiError::mandatory(name));
    }
    if let Some((_, frac)) = s.split_once('.') {
        let significant = frac.trim_end_matches('0').len() as u32;
        if significant > max_decimals {
            return Err(ApiError::precision());
        }
    }
    match aegis_shared::num::parse_units(s.as_bytes()) {
        Ok(v) => Ok(v),
        Err(aegis_shared::num::NumError::TooPrecise) => Err(ApiError::precision()),
        Err(_) => Err(ApiError::mandatory(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_give_binance_codes() {
        let b = SymbolSpec::btcusdt();
        assert_eq!(
            b.check_price("60000.1").unwrap(),
            Price::parse("60000.1").unwrap()
        );
        assert_eq!(
            b.check_price("60000.10").unwrap(),
            Price::parse("60000.1").unwrap()
        );
        assert_eq!(b.check_price("60000.05").unwrap_err().code, -4014);
        assert_eq!(b.check_price("60000.123").unwrap_err().code, -1111);
        assert_eq!(b.check_price("1").unwrap_err().code, -4013);
        assert_eq!(b.check_price("abc").unwrap_err().code, -1102);
        assert_eq!(b.check_qty("0.0015", false).unwrap_err().code, -1111);
        assert_eq!(b.check_qty("0", false).unwrap_err().code, -4003);
        assert_eq!(b.check_qty("2000", false).unwrap_err().code, -4005);
        assert_eq!(b.check_qty("200", true).unwrap_err().code, -4005);
        assert!(b.check_qty("0.010", false).is_ok());
        let mut odd = SymbolSpec::ethusdt();
        odd.step = Qty::parse("0.005").unwrap();
        odd.min_qty = Qty::parse("0.005").unwrap();
        assert_eq!(odd.check_qty("0.007", false).unwrap_err().code, -4023);
        assert_eq!(odd.check_qty("0.004", false).unwrap_err().code, -4004);
        let mark = Price::parse("60000").unwrap();
        assert!(b
            .check_percent_price(Price::parse("62000").unwrap(), mark, true)
            .is_ok());
        assert_eq!(
            b.check_percent_price(Price::parse("64000").unwrap(), mark, true)
                .unwrap_err()
                .code,
            -4016
        );
        assert_eq!(
            b.check_percent_price(Price::parse("50000").unwrap(), mark, false)
                .unwrap_err()
                .code,
            -4024
        );
    }

    #[test]
    fn exchange_info_uses_live_keys() {
        let v = SymbolSpec::btcusdt().info();
        assert_eq!(v["filters"][0]["tickSize"], "0.1");
        assert_eq!(v["filters"][5]["filterType"], "MIN_NOTIONAL");
        assert_eq!(v["filters"][5]["notional"], "100");
        assert_eq!(v["filters"][6]["multiplierUp"], "1.0500");
        assert!(v["orderTypes"].is_array());
        assert_eq!(fixed(123_456_789, 2), "1.23");
    }
}
