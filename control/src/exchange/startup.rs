//! Start-up proof: the key works in the selected environment, and in `live` the key's restrictions are safe
//! (security guide §1.2/§1.3); plus the symbols' exchange filters.

use super::rest::{RestClient, RestError};
use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::SymbolSpec;
use aegis_shared::config::{Config, ConfigError};
use aegis_shared::{Notional, Price, Qty, Symbol, TradingMode};
use serde_json::Value;

/// What the restriction check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restrictions {
    /// Withdrawals off, IP restricted.
    Safe,
    /// Withdrawals off, not IP restricted, allowed by `ALLOW_UNRESTRICTED_IP=true`.
    UnrestrictedIpAllowed,
}

/// The fix text for a key that can withdraw (no override exists).
pub const WITHDRAWALS_FIX: &str = "the production API key has \"Enable Withdrawals\" ON. Aegis refuses to trade with a key that can move funds out (security guide §1.2). On Binance: API Management > Edit restrictions for this key > untick \"Enable Withdrawals\" > Save, then restart. There is no override for this rule";
/// The fix text for a key without an IP restriction.
pub const IP_FIX: &str = "the production API key is not restricted to trusted IPs (security guide §1.3). On Binance: API Management > Edit restrictions for this key > \"Restrict access to trusted IPs only\" > add this server's public IP (curl ifconfig.me) > Save, wait 2-5 minutes, then restart. To run anyway, set ALLOW_UNRESTRICTED_IP=true (logged on every start)";

/// Decides on `(enableWithdrawals, ipRestrict)`.
pub fn judge(withdrawals: bool, ip_restrict: bool, allow_ip: bool) -> Result<Restrictions, String> {
    if withdrawals {
        return Err(WITHDRAWALS_FIX.to_string());
    }
    match (ip_restrict, allow_ip) {
        (true, _) => Ok(Restrictions::Safe),
        (false, true) => Ok(Restrictions::UnrestrictedIpAllowed),
        (false, false) => Err(IP_FIX.to_string()),
    }
}

fn refuse(key: &str, fix: impl Into<String>) -> ConfigError {
    ConfigError::new(key, None, fix)
}

/// Proves the key works here (`GET /fapi/v2/account`) and, in live mode, that its restrictions are safe.
/// Every refusal names the key variable and says what to change.
pub async fn prove(client: &RestClient, cfg: &Config) -> Result<Option<Restrictions>, ConfigError> {
    let env = client.endpoints.name;
    let Some(creds) = client.credentials() else {
        return Ok(None);
    };
    let var = creds.source;
    match client.account().await {
        Ok(v) => {
            let wallet = v
                .get("totalWalletBalance")
                .and_then(Value::as_str)
                .unwrap_or("?");
            tracing::info!(
                "key check:   {var} works on Binance {env} (GET /fapi/v2/account: wallet {wallet} USDT, {} key)",
                if creds.is_ed25519() { "Ed25519" } else { "HMAC" }
            );
        }
        Err(RestError::KeyRejected { code, .. }) => {
            return Err(refuse(var, format!(
                "Binance {env} refused this key ({code}): check that it is a {env} key (testnet keys only work on testnet, production keys only on production), that it is not deleted, that futures trading is enabled for it and that this server's IP is whitelisted"
            )))
        }
        Err(e) => {
            return Err(refuse(var, format!("cannot prove the key works on Binance {env}: {e}")))
        }
    }
    if cfg.trading_mode != TradingMode::Live {
        return Ok(None);
    }
    let (w, ip) = client.api_restrictions().await.map_err(|e| {
        refuse(var, format!("cannot read the key's restrictions (GET /sapi/v1/account/apiRestrictions): {e}; live trading needs this check to pass"))
    })?;
    let r = judge(w, ip, cfg.exchange.allow_unrestricted_ip).map_err(|fix| refuse(var, fix))?;
    match r {
        Restrictions::Safe => tracing::info!(
            "key check:   withdrawals disabled, IP restriction on (GET /sapi/v1/account/apiRestrictions)"
        ),
        Restrictions::UnrestrictedIpAllowed => tracing::warn!(
            "key check:   SECURITY WARNING: the key is NOT restricted to trusted IPs; running only because ALLOW_UNRESTRICTED_IP=true. Restrict it on Binance (guide §1.3)"
        ),
    }
    Ok(Some(r))
}

/// Filters of `symbols` from `exchangeInfo`. Symbols Binance does not list are an error naming them.
pub fn specs_from_exchange_info(
    info: &Value,
    symbols: &[Symbol],
) -> Result<Vec<SymbolSpec>, String> {
    let list = info
        .get("symbols")
        .and_then(Value::as_array)
        .ok_or("exchangeInfo has no symbols")?;
    let mut out = Vec::new();
    for s in symbols {
        let e = list
            .iter()
            .find(|e| e.get("symbol").and_then(Value::as_str) == Some(s.as_str()))
            .ok_or_else(|| {
                format!("{s} is not a USD-M futures symbol of this exchange; fix SYMBOLS")
            })?;
        let filters = e
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let f = |ty: &str, k: &str| -> Option<String> {
            filters
                .iter()
                .find(|x| x.get("filterType").and_then(Value::as_str) == Some(ty))?
                .get(k)?
                .as_str()
                .map(String::from)
        };
        let tick = f("PRICE_FILTER", "tickSize").and_then(|v| Price::parse(&v).ok());
        let step = f("LOT_SIZE", "stepSize").and_then(|v| Qty::parse(&v).ok());
        let min_qty = f("LOT_SIZE", "minQty").and_then(|v| Qty::parse(&v).ok());
        let min_notional = f("MIN_NOTIONAL", "notional").and_then(|v| Notional::parse(&v).ok());
        match (tick, step) {
            // Prices and quantities are rounded to these: a zero or negative one would divide by zero or
            // flip the rounding on the hot path, so such an answer is refused here.
            (Some(t), Some(st)) if t.units() <= 0 || st.units() <= 0 => {
                return Err(format!(
                    "{s}: exchangeInfo gives a tickSize or stepSize that is not positive; refusing to trade it"
                ))
            }
            (Some(tick_size), Some(step_size)) => out.push(SymbolSpec {
                symbol: *s,
                filters: SymbolFilters {
                    tick_size,
                    step_size,
                    min_qty: min_qty.unwrap_or(step_size),
                    min_notional: min_notional.unwrap_or(Notional::ZERO),
                },
            }),
            _ => {
                return Err(format!(
                    "{s}: exchangeInfo lacks PRICE_FILTER.tickSize or LOT_SIZE.stepSize"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_or_step_that_is_not_positive_is_refused() {
        let info = |tick: &str, step: &str| {
            serde_json::json!({"symbols": [{"symbol": "BTCUSDT", "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": tick},
                {"filterType": "LOT_SIZE", "stepSize": step, "minQty": "0.001"}]}]})
        };
        let btc = [Symbol::new("BTCUSDT").unwrap()];
        let ok = specs_from_exchange_info(&info("0.10", "0.001"), &btc).unwrap();
        assert_eq!(ok[0].filters.tick_size, Price::parse("0.1").unwrap());
        for (tick, step) in [
            ("0", "0.001"),
            ("0.10", "0.00000000"),
            ("-0.10", "0.001"),
            ("0.10", "-1"),
        ] {
            let e = specs_from_exchange_info(&info(tick, step), &btc).unwrap_err();
            assert!(e.contains("not positive"), "{tick}/{step}: {e}");
        }
    }

    #[test]
    fn withdrawals_are_never_overridable_ip_is() {
        assert!(judge(true, true, true)
            .unwrap_err()
            .contains("Enable Withdrawals"));
        assert!(judge(true, false, true).is_err());
        assert_eq!(judge(false, true, false), Ok(Restrictions::Safe));
        assert!(judge(false, false, false)
            .unwrap_err()
            .contains("ALLOW_UNRESTRICTED_IP"));
        assert_eq!(
            judge(false, false, true),
            Ok(Restrictions::UnrestrictedIpAllowed)
        );
    }

    #[test]
    fn filters_from_exchange_info() {
        let info: Value = serde_json::json!({"symbols":[{"symbol":"BTCUSDT","filters":[
            {"filterType":"PRICE_FILTER","tickSize":"0.10","minPrice":"1","maxPrice":"1000000"},
            {"filterType":"LOT_SIZE","stepSize":"0.001","minQty":"0.001","maxQty":"1000"},
            {"filterType":"MIN_NOTIONAL","notional":"100"}]}]});
        let s = specs_from_exchange_info(&info, &[Symbol::new("BTCUSDT").unwrap()]).unwrap();
        assert_eq!(s[0], SymbolSpec::btcusdt());
        assert!(specs_from_exchange_info(&info, &[Symbol::new("XRPUSDT").unwrap()]).is_err());
    }
}
