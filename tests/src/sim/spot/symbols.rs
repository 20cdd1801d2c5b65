//! Spot symbols and their exchangeInfo filters (PRICE_FILTER, PERCENT_PRICE_BY_SIDE, LOT_SIZE, MARKET_LOT_SIZE,
//! NOTIONAL, MAX_NUM_ORDERS, MAX_NUM_ALGO_ORDERS), checked the way Binance does and refused with its `-1013
//! Filter failure: <FILTER>`.

use super::super::error::ApiError;
use super::super::symbols::fixed;
use aegis_shared::num::{Notional, Price, Qty, Rate};
use serde_json::{json, Value};

/// One spot symbol.
#[derive(Debug, Clone)]
pub struct SpotSpec {
    /// `BTCUSDT`.
    pub symbol: String,
    /// `BTC`.
    pub base: String,
    /// `USDT`.
    pub quote: String,
    /// PRICE_FILTER.
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
    /// MARKET_LOT_SIZE maxQty (its minQty and stepSize are LOT_SIZE's).
    pub market_max_qty: Qty,
    /// NOTIONAL minNotional.
    pub min_notional: Notional,
    /// NOTIONAL maxNotional.
    pub max_notional: Notional,
    /// NOTIONAL applyMinToMarket.
    pub apply_min_to_market: bool,
    /// PERCENT_PRICE_BY_SIDE bidMultiplierUp (and askMultiplierUp).
    pub multiplier_up: Rate,
    /// PERCENT_PRICE_BY_SIDE bidMultiplierDown (and askMultiplierDown).
    pub multiplier_down: Rate,
    /// MAX_NUM_ORDERS.
    pub max_num_orders: usize,
    /// MAX_NUM_ALGO_ORDERS (stop orders and OCO stop legs).
    pub max_num_algo_orders: usize,
    /// The price the book starts at.
    pub start_price: Price,
}

fn p(s: &str) -> Price {
    // Literals of this file only; a typo fails every test at once.
    Price::parse(s).expect("valid literal")
}
fn q(s: &str) -> Qty {
    Qty::parse(s).expect("valid literal")
}
fn n(s: &str) -> Notional {
    Notional::parse(s).expect("valid literal")
}

/// An 8-decimal string, Binance spot's format for every amount.
pub fn s8(units: i64) -> String {
    fixed(units, 8)
}

#[allow(clippy::too_many_arguments)]
fn spec(
    symbol: &str,
    base: &str,
    quote: &str,
    tick: &str,
    step: &str,
    max_qty: &str,
    market_max: &str,
    min_notional: &str,
    start: &str,
) -> SpotSpec {
    SpotSpec {
        symbol: symbol.into(),
        base: base.into(),
        quote: quote.into(),
        tick: p(tick),
        min_price: p(tick),
        max_price: p("1000000"),
        step: q(step),
        min_qty: q(step),
        max_qty: q(max_qty),
        market_max_qty: q(market_max),
        min_notional: n(min_notional),
        max_notional: n("9000000"),
        apply_min_to_market: true,
        multiplier_up: Rate::from_int(5),
        multiplier_down: Rate::parse("0.2").expect("valid literal"),
        max_num_orders: 200,
        max_num_algo_orders: 5,
        start_price: p(start),
    }
}

impl SpotSpec {
    /// BTCUSDT, ETHUSDT, BNBUSDT (also the BNB fee mode's price) and ETHBTC (a pair quoted in BTC), with
    /// filters like the live ones.
    pub fn defaults() -> Vec<SpotSpec> {
        vec![
            spec(
                "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "9000", "100", "5", "60000",
            ),
            spec(
                "ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "9000", "1000", "5", "3000",
            ),
            spec(
                "BNBUSDT", "BNB", "USDT", "0.01", "0.001", "90000", "5000", "5", "600",
            ),
            spec(
                "ETHBTC", "ETH", "BTC", "0.00001", "0.0001", "100000", "1000", "0.0001", "0.05",
            ),
        ]
    }

    /// The exchangeInfo entry.
    pub fn info(&self) -> Value {
        let pd = aegis_shared::num::decimals_of(self.tick.units());
        let qd = aegis_shared::num::decimals_of(self.step.units());
        let r = |x: Rate| fixed(x.units(), 4);
        json!({
            "symbol": self.symbol, "status": "TRADING", "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": false, "ocoAllowed": true, "otoAllowed": false,
            "quoteOrderQtyMarketAllowed": true, "allowTrailingStop": false, "cancelReplaceAllowed": true,
            "amendAllowed": false, "isSpotTradingAllowed": true, "isMarginTradingAllowed": false,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s8(self.min_price.units()),
                 "maxPrice": s8(self.max_price.units()), "tickSize": s8(self.tick.units())},
                {"filterType": "LOT_SIZE", "minQty": s8(self.min_qty.units()), "maxQty": s8(self.max_qty.units()),
                 "stepSize": s8(self.step.units())},
                {"filterType": "MARKET_LOT_SIZE", "minQty": s8(0), "maxQty": s8(self.market_max_qty.units()),
                 "stepSize": s8(0)},
                {"filterType": "NOTIONAL", "minNotional": s8(self.min_notional.units()),
                 "applyMinToMarket": self.apply_min_to_market, "maxNotional": s8(self.max_notional.units()),
                 "applyMaxToMarket": false, "avgPriceMins": 5},
                {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": r(self.multiplier_up),
                 "bidMultiplierDown": r(self.multiplier_down), "askMultiplierUp": r(self.multiplier_up),
                 "askMultiplierDown": r(self.multiplier_down), "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": self.max_num_algo_orders}
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            "pricePrecisionHint": pd, "quantityPrecisionHint": qd
        })
    }

    /// PRICE_FILTER on a limit or stop price.
    pub fn check_price(&self, price: Price) -> Result<(), ApiError> {
        if price < self.min_price || price > self.max_price || !price.is_multiple_of(self.tick) {
            return Err(filter("PRICE_FILTER"));
        }
        Ok(())
    }

    /// PERCENT_PRICE_BY_SIDE of a limit price against the reference price (Binance: the 5-minute average;
    /// here the last price, which a test sets).
    pub fn check_percent(&self, price: Price, reference: Price) -> Result<(), ApiError> {
        let r = Notional::from_units(reference.units());
        let up = r.mul_rate(self.multiplier_up).units();
        let down = r.mul_rate(self.multiplier_down).units();
        if price.units() > up || price.units() < down {
            return Err(filter("PERCENT_PRICE_BY_SIDE"));
        }
        Ok(())
    }

    /// LOT_SIZE (limit-type orders) or MARKET_LOT_SIZE (market orders).
    pub fn check_qty(&self, qty: Qty, market: bool) -> Result<(), ApiError> {
        let (name, max) = if market {
            ("MARKET_LOT_SIZE", self.market_max_qty)
        } else {
            ("LOT_SIZE", self.max_qty)
        };
        if qty < self.min_qty || qty > max {
            return Err(filter(name));
        }
        if !qty.is_multiple_of(self.step) {
            return Err(filter("LOT_SIZE"));
        }
        Ok(())
    }

    /// NOTIONAL: `price × qty` within [minNotional, maxNotional] (market orders: at the reference price, the
    /// minimum only when applyMinToMarket).
    pub fn check_notional(&self, notional: Notional, market: bool) -> Result<(), ApiError> {
        if (!market || self.apply_min_to_market) && notional < self.min_notional {
            return Err(filter("NOTIONAL"));
        }
        if !market && notional > self.max_notional {
            return Err(filter("NOTIONAL"));
        }
        Ok(())
    }
}

/// `-1013 Filter failure: <name>`.
pub fn filter(name: &str) -> ApiError {
    ApiError::new(400, -1013, format!("Filter failure: {name}"))
}
