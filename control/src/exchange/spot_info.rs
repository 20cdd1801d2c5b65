//! Binance spot's symbol filters (`GET /api/v3/exchangeInfo`) as the engine's [`SymbolSpec`], for paper trading
//! on spot (`MARKETS=spot FEED=binance`): a paper order is held to the tick, step and minimum notional a live
//! spot order would be.
//!
//! Spot's filters differ from USD-M futures' ([`super::startup::specs_from_exchange_info`]), so they are read here:
//! - `PRICE_FILTER.tickSize` → tick;
//! - `LOT_SIZE.stepSize` / `minQty`, and `MARKET_LOT_SIZE`, which binds the MARKET orders the bot sends: where its
//!   `stepSize` / `minQty` are non-zero (Binance usually sends zeros there, meaning LOT_SIZE's apply) the coarser
//!   step and the larger minimum are used. A quantity on the coarser grid is on the finer one only when one step
//!   is a multiple of the other; otherwise no quantity satisfies both and the symbol is refused;
//! - `NOTIONAL.minNotional` (current Binance) or `MIN_NOTIONAL.minNotional` (the older filter).
//!
//! `PERCENT_PRICE` / `PERCENT_PRICE_BY_SIDE` bound a limit price against the pair's average price. The engine's
//! orders do not need them (market orders, and post-only entries at the touch, lie within any band); the
//! protective stops' limit prices do: [`sell_bands`] gives the stop manager each pair's band for a SELL
//! ([`PriceBand`]), and it fits the stop's limit into it when it places the stop.

use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::SymbolSpec;
use aegis_shared::{Notional, Price, Qty, Symbol};
use serde_json::Value;
use std::collections::HashMap;

/// The path paper trading on spot reads its filters from.
pub const PATH: &str = "/api/v3/exchangeInfo";

/// Why spot's exchangeInfo could not be read or gives filters the bot cannot trade on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpotInfoError {
    /// The request did not get an answer.
    #[error("GET {PATH} failed: {0}")]
    Transport(String),
    /// Binance answered with an error.
    #[error("GET {PATH} answered HTTP {status}: {msg}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Binance's `code` and `msg`, or the start of the body.
        msg: String,
    },
    /// Binance says one of the requested symbols does not exist on spot (`-1121 Invalid symbol`).
    #[error("one of SYMBOLS ({0}) is not a Binance spot symbol (GET {PATH}: -1121 Invalid symbol); fix SYMBOLS")]
    UnknownSymbol(String),
    /// The answer is not exchangeInfo.
    #[error("GET {PATH} did not answer exchangeInfo JSON ({0})")]
    NotExchangeInfo(&'static str),
    /// A symbol of SYMBOLS is not listed.
    #[error("{0} is not a Binance spot symbol (not in GET {PATH}); fix SYMBOLS")]
    Missing(Symbol),
    /// A symbol is listed but not open for trading (`BREAK`, `HALT`, …).
    #[error("{symbol} has status {status} on Binance spot, not TRADING: it cannot be traded now; remove it from SYMBOLS or wait")]
    NotTrading {
        /// The symbol.
        symbol: Symbol,
        /// Its `status`.
        status: String,
    },
    /// A filter value the engine needs is absent.
    #[error("{symbol}: spot exchangeInfo lacks {filter}.{field}; refusing to trade it")]
    MissingFilter {
        /// The symbol.
        symbol: Symbol,
        /// `PRICE_FILTER`, `LOT_SIZE` or `NOTIONAL`.
        filter: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A filter value is not a decimal the engine can use (negative, or zero where it divides).
    #[error("{symbol}: spot exchangeInfo gives {filter}.{field} = {value:?}, not a usable decimal; refusing to trade it")]
    BadValue {
        /// The symbol.
        symbol: Symbol,
        /// The filter.
        filter: &'static str,
        /// The field.
        field: &'static str,
        /// The value as sent.
        value: String,
    },
    /// LOT_SIZE and MARKET_LOT_SIZE steps that no quantity satisfies together.
    #[error("{symbol}: LOT_SIZE.stepSize {lot} and MARKET_LOT_SIZE.stepSize {market} are not multiples of one another, so no market order quantity satisfies both; refusing to trade it")]
    Steps {
        /// The symbol.
        symbol: Symbol,
        /// LOT_SIZE.stepSize.
        lot: Qty,
        /// MARKET_LOT_SIZE.stepSize.
        market: Qty,
    },
}

/// Reads `GET {rest}/api/v3/exchangeInfo?symbols=[…]` (only the traded symbols: the full answer is megabytes).
pub async fn fetch(
    http: &reqwest::Client,
    rest: &str,
    symbols: &[Symbol],
) -> Result<Value, SpotInfoError> {
    let list = format!(
        "[{}]",
        symbols
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let resp = http
        .get(format!("{rest}{PATH}"))
        .query(&[("symbols", list)])
        .send()
        .await
        .map_err(|e| SpotInfoError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| SpotInfoError::Transport(e.to_string()))?;
    let v: Option<Value> = serde_json::from_slice(&body).ok();
    if status >= 400 {
        let code = v.as_ref().and_then(|v| v.get("code")?.as_i64());
        if code == Some(-1121) {
            let names: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
            return Err(SpotInfoError::UnknownSymbol(names.join(", ")));
        }
        let msg = match &v {
            Some(v) => format!(
                "{} {}",
                v.get("code").map(Value::to_string).unwrap_or_default(),
                v.get("msg").and_then(Value::as_str).unwrap_or_default()
            ),
            None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        };
        return Err(SpotInfoError::Http { status, msg });
    }
    v.ok_or(SpotInfoError::NotExchangeInfo("the body is not JSON"))
}

/// The engine's filters of `symbols` from spot's exchangeInfo `info`. See the module docs for the rules.
pub fn specs(info: &Value, symbols: &[Symbol]) -> Result<Vec<SymbolSpec>, SpotInfoError> {
    let list = info
        .get("symbols")
        .and_then(Value::as_array)
        .ok_or(SpotInfoError::NotExchangeInfo("no symbols list"))?;
    symbols
        .iter()
        .map(|s| {
            let e = list
                .iter()
                .find(|e| e.get("symbol").and_then(Value::as_str) == Some(s.as_str()))
                .ok_or(SpotInfoError::Missing(*s))?;
            spec_of(*s, e)
        })
        .collect()
}

/// The band a SELL's limit price must lie in when it is placed: `down` × the average price ≤ price ≤ `up` ×
/// the average price (`GET /api/v3/avgPrice`; Binance may use a reference price instead, which the band is
/// then only an estimate of, and its -1013 still decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceBand {
    /// Lowest multiple of the average price (`askMultiplierDown` / `multiplierDown`).
    pub down: aegis_shared::num::Rate,
    /// Highest multiple (`askMultiplierUp` / `multiplierUp`).
    pub up: aegis_shared::num::Rate,
}

/// Each of `symbols`' SELL band: `PERCENT_PRICE_BY_SIDE`'s ask multipliers, else `PERCENT_PRICE`'s. A pair
/// without either (or with a multiplier that does not parse: logged) has none, and Binance alone decides.
pub fn sell_bands(info: &Value, symbols: &[Symbol]) -> HashMap<Symbol, PriceBand> {
    let list = info
        .get("symbols")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut out = HashMap::new();
    for s in symbols {
        let Some(filters) = list
            .iter()
            .find(|e| e.get("symbol").and_then(Value::as_str) == Some(s.as_str()))
            .and_then(|e| e.get("filters"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        let of = |ty: &str| {
            filters
                .iter()
                .find(|f| f.get("filterType").and_then(Value::as_str) == Some(ty))
        };
        let (f, down, up) = match (of("PERCENT_PRICE_BY_SIDE"), of("PERCENT_PRICE")) {
            (Some(f), _) => (f, "askMultiplierDown", "askMultiplierUp"),
            (None, Some(f)) => (f, "multiplierDown", "multiplierUp"),
            (None, None) => continue,
        };
        let rate = |k: &str| {
            f.get(k)
                .and_then(Value::as_str)
                .and_then(|t| aegis_shared::num::Rate::parse(t).ok())
                .filter(|r| r.units() > 0)
        };
        match (rate(down), rate(up)) {
            (Some(down), Some(up)) if down <= up => {
                out.insert(*s, PriceBand { down, up });
            }
            _ => {
                tracing::warn!(symbol = %s, filter = %f, "spot filters: a price band that does not parse; stop limits are sent unchecked against it")
            }
        }
    }
    out
}

fn spec_of(symbol: Symbol, e: &Value) -> Result<SymbolSpec, SpotInfoError> {
    let status = e.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "TRADING" {
        return Err(SpotInfoError::NotTrading {
            symbol,
            status: if status.is_empty() {
                "(none)".into()
            } else {
                status.into()
            },
        });
    }
    let filters: &[Value] = e
        .get("filters")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let filter = |ty: &str| {
        filters
            .iter()
            .find(|x| x.get("filterType").and_then(Value::as_str) == Some(ty))
    };
    // A present field that does not parse (or is negative) is refused; an absent one is `None`.
    let field = |ty: &'static str, k: &'static str| -> Result<Option<i64>, SpotInfoError> {
        let Some(raw) = filter(ty).and_then(|f| f.get(k)) else {
            return Ok(None);
        };
        let text = raw
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| raw.to_string());
        match aegis_shared::num::parse_units(text.as_bytes()) {
            Ok(u) if u >= 0 => Ok(Some(u)),
            _ => Err(SpotInfoError::BadValue {
                symbol,
                filter: ty,
                field: k,
                value: text,
            }),
        }
    };
    let positive = |ty: &'static str, k: &'static str| -> Result<i64, SpotInfoError> {
        match field(ty, k)? {
            None => Err(SpotInfoError::MissingFilter {
                symbol,
                filter: ty,
                field: k,
            }),
            Some(0) => Err(SpotInfoError::BadValue {
                symbol,
                filter: ty,
                field: k,
                value: "0".into(),
            }),
            Some(u) => Ok(u),
        }
    };
    let tick = positive("PRICE_FILTER", "tickSize")?;
    let lot_step = positive("LOT_SIZE", "stepSize")?;
    let lot_min = field("LOT_SIZE", "minQty")?.unwrap_or(0);
    // Zeros in MARKET_LOT_SIZE mean "LOT_SIZE's apply" (how Binance sends it for most symbols).
    let market_step = field("MARKET_LOT_SIZE", "stepSize")?.unwrap_or(0);
    let market_min = field("MARKET_LOT_SIZE", "minQty")?.unwrap_or(0);
    let step = if market_step == 0 {
        lot_step
    } else {
        let (fine, coarse) = (lot_step.min(market_step), lot_step.max(market_step));
        if coarse % fine != 0 {
            return Err(SpotInfoError::Steps {
                symbol,
                lot: Qty::from_units(lot_step),
                market: Qty::from_units(market_step),
            });
        }
        coarse
    };
    // At least one step: a zero minimum would let the engine size an order of nothing.
    let min_qty = Qty::from_units(lot_min.max(market_min).max(step)).ceil_to(Qty::from_units(step));
    // The stricter bound even where `applyMinToMarket` is false: a paper run must not trade sizes a limit order of
    // the same symbol could not, and Binance has turned market minimums on and off over time.
    let min_notional = match field("NOTIONAL", "minNotional")? {
        Some(n) => n,
        None => field("MIN_NOTIONAL", "minNotional")?.unwrap_or(0),
    };
    Ok(SymbolSpec {
        symbol,
        filters: SymbolFilters {
            tick_size: Price::from_units(tick),
            step_size: Qty::from_units(step),
            min_qty,
            min_notional: Notional::from_units(min_notional),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// BTCUSDT as Binance spot serves it (api.binance.com, filters in Binance's order and format).
    fn btcusdt() -> Value {
        json!({
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
            "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": true, "ocoAllowed": true, "otoAllowed": true, "quoteOrderQtyMarketAllowed": true,
            "allowTrailingStop": true, "cancelReplaceAllowed": true, "isSpotTradingAllowed": true,
            "isMarginTradingAllowed": true,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                 "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                 "stepSize": "0.00001000"},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "83.45276213",
                 "stepSize": "0.00000000"},
                {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
                 "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
                {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
                 "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5}
            ],
            "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
        })
    }

    fn info(symbols: Vec<Value>) -> Value {
        json!({"timezone": "UTC", "serverTime": 1_733_500_000_000u64, "rateLimits": [], "exchangeFilters": [],
               "symbols": symbols})
    }

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    /// `btcusdt()` with the filter `ty` replaced by `f` (or removed when `f` is null).
    fn with_filter(ty: &str, f: Value) -> Value {
        let mut e = btcusdt();
        let fs = e["filters"].as_array_mut().unwrap();
        fs.retain(|x| x["filterType"] != ty);
        if !f.is_null() {
            fs.push(f);
        }
        e
    }

    fn one(e: Value) -> Result<SymbolFilters, SpotInfoError> {
        specs(&info(vec![e]), &[sym("BTCUSDT")]).map(|v| v[0].filters)
    }

    #[test]
    fn sell_bands_are_the_ask_multipliers_or_percent_price_and_a_bad_one_is_none() {
        use aegis_shared::num::Rate;
        let r = |t: &str| Rate::parse(t).unwrap();
        let mut older = btcusdt();
        older["symbol"] = json!("ETHUSDT");
        older["filters"] = json!([{"filterType": "PERCENT_PRICE", "multiplierUp": "1.3000",
                                   "multiplierDown": "0.7000", "avgPriceMins": 5}]);
        let mut bad = btcusdt();
        bad["symbol"] = json!("SOLUSDT");
        bad["filters"] = json!([{"filterType": "PERCENT_PRICE_BY_SIDE", "askMultiplierUp": "x",
                                 "askMultiplierDown": "0.2"}]);
        let mut none = btcusdt();
        none["symbol"] = json!("XRPUSDT");
        none["filters"] = json!([]);
        let mut sides = btcusdt();
        sides["filters"][5]["bidMultiplierDown"] = json!("0.9");
        let i = info(vec![sides, older, bad, none]);
        let all = [
            sym("BTCUSDT"),
            sym("ETHUSDT"),
            sym("SOLUSDT"),
            sym("XRPUSDT"),
        ];
        let b = sell_bands(&i, &all);
        assert_eq!(
            b.get(&sym("BTCUSDT")),
            Some(&PriceBand {
                down: r("0.2"),
                up: r("5")
            }),
            "a sell is held to the ask side"
        );
        assert_eq!(
            b.get(&sym("ETHUSDT")),
            Some(&PriceBand {
                down: r("0.7"),
                up: r("1.3")
            })
        );
        assert_eq!(b.len(), 2, "{b:?}");
    }

    #[test]
    fn binance_btcusdt_gives_spot_grid_not_the_futures_one() {
        let f = one(btcusdt()).unwrap();
        assert_eq!(f.tick_size, Price::parse("0.01").unwrap());
        assert_eq!(f.step_size, Qty::parse("0.00001").unwrap());
        assert_eq!(f.min_qty, Qty::parse("0.00001").unwrap());
        assert_eq!(f.min_notional, Notional::from_int(5));
    }

    #[test]
    fn a_coarser_market_lot_size_binds_market_orders() {
        let f = one(with_filter(
            "MARKET_LOT_SIZE",
            json!({"filterType": "MARKET_LOT_SIZE", "minQty": "0.00100000", "maxQty": "100.00000000",
                   "stepSize": "0.00010000"}),
        ))
        .unwrap();
        assert_eq!(f.step_size, Qty::parse("0.0001").unwrap());
        assert_eq!(f.min_qty, Qty::parse("0.001").unwrap());
        // A finer MARKET_LOT_SIZE step does not loosen LOT_SIZE's (the coarser one still applies).
        let f = one(with_filter(
            "MARKET_LOT_SIZE",
            json!({"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": "0.00000100"}),
        ))
        .unwrap();
        assert_eq!(f.step_size, Qty::parse("0.00001").unwrap());
        // Steps that are not multiples of one another: nothing fits both.
        let e = one(with_filter(
            "MARKET_LOT_SIZE",
            json!({"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": "0.00001500"}),
        ))
        .unwrap_err();
        assert!(matches!(e, SpotInfoError::Steps { .. }), "{e}");
        assert!(e.to_string().contains("not multiples"), "{e}");
    }

    #[test]
    fn min_qty_is_on_the_step_grid_and_never_zero() {
        // A LOT_SIZE minimum off the coarser market grid is rounded up onto it.
        let mut e = with_filter(
            "MARKET_LOT_SIZE",
            json!({"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": "0.00010000"}),
        );
        e["filters"][1]["minQty"] = json!("0.00015000");
        assert_eq!(one(e).unwrap().min_qty, Qty::parse("0.0002").unwrap());
        let mut e = btcusdt();
        e["filters"][1]["minQty"] = json!("0.00000000");
        assert_eq!(one(e).unwrap().min_qty, Qty::parse("0.00001").unwrap());
    }

    #[test]
    fn the_older_min_notional_filter_is_read_when_notional_is_absent() {
        let e = with_filter(
            "NOTIONAL",
            json!({"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": true,
                   "avgPriceMins": 5}),
        );
        assert_eq!(one(e).unwrap().min_notional, Notional::from_int(10));
        // Neither: no minimum (older listings had none).
        assert_eq!(
            one(with_filter("NOTIONAL", Value::Null))
                .unwrap()
                .min_notional,
            Notional::ZERO
        );
    }

    #[test]
    fn missing_and_halted_symbols_are_refused_by_name() {
        let e = specs(&info(vec![btcusdt()]), &[sym("BTCUSDT"), sym("ETHUSDT")]).unwrap_err();
        assert_eq!(e, SpotInfoError::Missing(sym("ETHUSDT")));
        assert!(e
            .to_string()
            .contains("ETHUSDT is not a Binance spot symbol"));
        let mut b = btcusdt();
        b["status"] = json!("BREAK");
        let e = one(b).unwrap_err();
        assert!(
            e.to_string().contains("BTCUSDT has status BREAK")
                && e.to_string().contains("not TRADING"),
            "{e}"
        );
        assert!(matches!(
            specs(&json!({"code": -1121}), &[sym("BTCUSDT")]),
            Err(SpotInfoError::NotExchangeInfo(_))
        ));
    }

    #[test]
    fn absent_or_unusable_grid_values_are_refused() {
        let e = one(with_filter("PRICE_FILTER", Value::Null)).unwrap_err();
        assert!(
            matches!(
                e,
                SpotInfoError::MissingFilter {
                    filter: "PRICE_FILTER",
                    ..
                }
            ),
            "{e}"
        );
        let mut b = btcusdt();
        b["filters"][1]["stepSize"] = json!("0.00000000");
        assert!(matches!(
            one(b).unwrap_err(),
            SpotInfoError::BadValue {
                filter: "LOT_SIZE",
                ..
            }
        ));
        let mut b = btcusdt();
        b["filters"][0]["tickSize"] = json!("-0.01");
        assert!(matches!(
            one(b).unwrap_err(),
            SpotInfoError::BadValue {
                field: "tickSize",
                ..
            }
        ));
        let mut b = btcusdt();
        b["filters"][6]["minNotional"] = json!("five");
        assert!(matches!(
            one(b).unwrap_err(),
            SpotInfoError::BadValue {
                filter: "NOTIONAL",
                ..
            }
        ));
    }
}
