//! Start-up proof: the key works in the selected environment, and in `live` the key's restrictions are safe
//! (security guide §1.2/§1.3); plus the symbols' exchange filters and the leverage set on the exchange.

use super::rest::{KeyPermissions, RestClient, RestError};
use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::{EngineParams, SymbolSpec};
use aegis_shared::config::{keys, Config, ConfigError};
use aegis_shared::{Market, Notional, Price, Qty, Symbol, TradingMode};
use serde_json::Value;

/// What the restriction check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restrictions {
    /// Withdrawals off, spot & margin as the market needs it, IP restricted.
    Safe,
    /// Withdrawals off, spot & margin as the market needs it, not IP restricted, allowed by
    /// `ALLOW_UNRESTRICTED_IP=true`.
    UnrestrictedIpAllowed,
}

/// The fix text for a key that can withdraw (no override exists).
pub const WITHDRAWALS_FIX: &str = "the production API key has \"Enable Withdrawals\" ON. Aegis refuses to trade with a key that can move funds out (security guide §1.2). On Binance: API Management > Edit restrictions for this key > untick \"Enable Withdrawals\" > Save, then restart. There is no override for this rule";
/// The fix text for a key without an IP restriction.
pub const IP_FIX: &str = "the production API key is not restricted to trusted IPs (security guide §1.3). On Binance: API Management > Edit restrictions for this key > \"Restrict access to trusted IPs only\" > add this server's public IP (curl ifconfig.me) > Save, wait 2-5 minutes, then restart. To run anyway, set ALLOW_UNRESTRICTED_IP=true (logged on every start)";

/// The fix text for a key that can trade spot and margin although this bot (`MARKETS=futures`) trades USD-M
/// futures only.
pub const SPOT_FIX: &str = "the production API key has \"Enable Spot & Margin Trading\" ON, but with MARKETS=futures Aegis trades USD-M futures only; a key should hold no permission its bot does not use (least privilege, security guide §1.2). On Binance: API Management > Edit restrictions for this key > untick \"Enable Spot & Margin Trading\" > Save, then restart";
/// The fix text for a `MARKETS=spot` key that cannot trade spot.
pub const SPOT_NEEDED_FIX: &str = "the production API key has \"Enable Spot & Margin Trading\" OFF, but with MARKETS=spot Aegis places spot orders, which Binance refuses without it. On Binance: API Management > Edit restrictions for this key > tick \"Enable Spot & Margin Trading\" > Save, then restart; keep \"Enable Withdrawals\" OFF and the IP restriction ON (security guide §1.2, §1.3)";

/// Decides on a key's permissions: never withdrawals; spot and margin exactly when `market` is spot (futures
/// needs none of it: least privilege; spot cannot trade without it); an IP restriction unless explicitly allowed
/// without. The start-up check and the periodic re-check both judge with this, so they follow `MARKETS` alike.
pub fn judge(k: KeyPermissions, allow_ip: bool, market: Market) -> Result<Restrictions, String> {
    if k.withdrawals {
        return Err(WITHDRAWALS_FIX.to_string());
    }
    if !crate::preflight::spot_permission_fits(k.spot, market) {
        return Err(match market {
            Market::Futures => SPOT_FIX,
            Market::Spot => SPOT_NEEDED_FIX,
        }
        .to_string());
    }
    match (k.ip_restrict, allow_ip) {
        (true, _) => Ok(Restrictions::Safe),
        (false, true) => Ok(Restrictions::UnrestrictedIpAllowed),
        (false, false) => Err(IP_FIX.to_string()),
    }
}

/// A string field of an answer for a log line, `?` when missing (a log line is no reason to refuse).
fn shown<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
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
    let spot = client.market() == Market::Spot;
    match client.account().await {
        Ok(v) if spot => {
            // Spot's account answer says whether this key may trade spot at all (the key's "Enable Spot &
            // Margin Trading", or an account restriction); without it every order would come back -2010.
            if v.get("canTrade").and_then(Value::as_bool) == Some(false) {
                return Err(refuse(var, format!(
                    "Binance {env} says this key cannot trade spot (GET /api/v3/account: canTrade=false): enable \"Spot & Margin Trading\" for it in API Management (keep withdrawals off and the IP restriction on), or use MARKETS=futures"
                )));
            }
            let held = v
                .get("balances")
                .and_then(Value::as_array)
                .map_or(0, |b| b.len());
            tracing::info!(
                "key check:   {var} works on Binance spot {env} (GET /api/v3/account: canTrade, {held} asset balance(s), {} key)",
                if creds.is_ed25519() { "Ed25519" } else { "HMAC" }
            );
        }
        Ok(v) => {
            let wallet = shown(&v, "totalWalletBalance");
            tracing::info!(
                "key check:   {var} works on Binance {env} (GET /fapi/v2/account: wallet {wallet} USDT, {} key)",
                if creds.is_ed25519() { "Ed25519" } else { "HMAC" }
            );
        }
        Err(RestError::KeyRejected { code, .. }) => {
            return Err(refuse(var, format!(
                "Binance {env} refused this key ({code}): check that it is a {env} key (testnet keys only work on testnet, production keys only on production; spot testnet keys come from testnet.binance.vision), that it is not deleted, that {} trading is enabled for it and that this server's IP is whitelisted",
                if spot { "spot" } else { "futures" }
            )))
        }
        Err(e) => {
            return Err(refuse(var, format!("cannot prove the key works on Binance {env}: {e}")))
        }
    }
    if cfg.trading_mode != TradingMode::Live {
        return Ok(None);
    }
    let perms = client.api_restrictions().await.map_err(|e| {
        refuse(var, format!("cannot read the key's restrictions (GET /sapi/v1/account/apiRestrictions): {e}; live trading needs this check to pass"))
    })?;
    let r = judge(perms, cfg.exchange.allow_unrestricted_ip, cfg.market)
        .map_err(|fix| refuse(var, fix))?;
    match r {
        Restrictions::Safe => tracing::info!(
            "key check:   withdrawals disabled, spot & margin {} (MARKETS={}), IP restriction on (GET /sapi/v1/account/apiRestrictions)",
            if perms.spot { "enabled" } else { "disabled" },
            cfg.market.as_str()
        ),
        Restrictions::UnrestrictedIpAllowed => tracing::warn!(
            "key check:   SECURITY WARNING: the key is NOT restricted to trusted IPs; running only because ALLOW_UNRESTRICTED_IP=true. Restrict it on Binance (guide §1.3)"
        ),
    }
    Ok(Some(r))
}

/// The fix for an account in hedge mode.
pub const HEDGE_FIX: &str = "the Binance futures account is in Hedge Mode (dualSidePosition=true), but Aegis nets its modes into one position per symbol and sends orders without positionSide, which Binance refuses in Hedge Mode (-4061). Switch the account to One-way Mode: Binance Futures > Preferences (gear) > Position Mode > One-way Mode, or POST /fapi/v1/positionSide/dual dualSidePosition=false; Binance allows the switch only with no open position and no open order on the account. Then restart";
/// The fix for an account in multi-assets margin mode.
pub const MULTI_ASSETS_FIX: &str = "the Binance futures account is in Multi-Assets Mode (multiAssetsMargin=true): margin and losses may be taken from other assets than USDT, which Aegis' USDT-based limits and PnL do not account for. Switch to Single-Asset Mode: Binance Futures > Preferences (gear) > Asset Mode > Single-Asset Mode, or POST /fapi/v1/multiAssetsMargin multiAssetsMargin=false. Then restart";

/// Refuses an account whose position mode or asset mode differs from what the bot trades: one-way and
/// single-asset (issue 13.4). Without a key (read-only) there is nothing to trade and nothing is checked.
pub async fn check_account_modes(client: &RestClient) -> Result<(), ConfigError> {
    let Some(creds) = client.credentials() else {
        return Ok(());
    };
    let var = creds.source;
    let (hedge, multi) = client.account_modes().await.map_err(|e| {
        refuse(var, format!("cannot read the account's position and asset modes (GET /fapi/v1/positionSide/dual, /fapi/v1/multiAssetsMargin): {e}"))
    })?;
    if hedge {
        return Err(refuse(var, HEDGE_FIX));
    }
    if multi {
        return Err(refuse(var, MULTI_ASSETS_FIX));
    }
    tracing::info!("account:     one-way position mode, single-asset margin (GET /fapi/v1/positionSide/dual, /fapi/v1/multiAssetsMargin)");
    Ok(())
}

/// The leverage the bot trades with: the largest any enabled mode uses, never above `cap`
/// (`FUTURES_AUTOPILOT_MAX_LEVERAGE`).
pub fn leverage_in_use(params: &EngineParams, cap: u32) -> u32 {
    let modes = [
        params.scalp_enabled.then_some(params.leverage),
        params.ultra_fast.as_ref().map(|p| p.leverage),
        params.swing.as_ref().map(|p| p.leverage),
        params.position.as_ref().map(|p| p.leverage),
    ];
    modes
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(1)
        .clamp(1, cap.max(1))
}

/// Sets `leverage` on every symbol (`POST /fapi/v1/leverage`). Without this the exchange keeps whatever the
/// account last used (Binance's default is 20x), so a position would carry more leverage than the limit allows.
/// A refusal stops the start: trading on at an unknown leverage is what this call exists to prevent.
/// Read-only mode (no key) sends nothing.
pub async fn set_leverage(
    client: &RestClient,
    symbols: &[Symbol],
    leverage: u32,
    cap: u32,
) -> Result<(), ConfigError> {
    if client.credentials().is_none() {
        return Ok(());
    }
    let env = client.endpoints.name;
    let var = keys::FUTURES_AUTOPILOT_MAX_LEVERAGE;
    let cap_s = cap.to_string();
    for s in symbols {
        match client.set_leverage(s.as_str(), leverage).await {
            Ok(v) => {
                let max = shown(&v, "maxNotionalValue");
                tracing::info!(
                    "leverage:    {s} set to {leverage}x on Binance {env} (POST /fapi/v1/leverage; max notional at this leverage {max} USDT)"
                );
            }
            Err(RestError::Api { code, msg, .. }) => {
                return Err(ConfigError::new(var, Some(&cap_s), format!(
                    "Binance {env} refused leverage {leverage}x for {s} ({code} {msg}). The bot sets the largest leverage its enabled modes use, capped by {var}. Lower {var} to a leverage Binance allows for {s} (its leverage brackets), or remove {s} from SYMBOLS; if {s} holds an open position too large for that leverage, reduce it first. Then restart"
                )))
            }
            Err(e) => {
                return Err(refuse(var, format!(
                    "cannot set the leverage of {s} to {leverage}x on Binance {env}: {e}; the bot does not trade at a leverage it has not set. Check the connection and the key's futures permission, then restart"
                )))
            }
        }
    }
    Ok(())
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

/// Live only: the key's restrictions re-read every `every`, judged for `market`; a change halts entries and
/// raises `key_restrictions_changed` (once).
pub async fn recheck_key(
    client: RestClient,
    every: std::time::Duration,
    allow_ip: bool,
    market: Market,
    inbound: crossbeam_channel::Sender<aegis_engine::venue::binance::Inbound>,
) {
    use aegis_engine::venue::binance::Inbound;
    use aegis_shared::event::{AlertKind, HaltReason};
    let mut tripped = false;
    loop {
        tokio::time::sleep(every).await;
        match client.api_restrictions().await {
            Ok(k) => match judge(k, allow_ip, market) {
                Ok(_) => {}
                Err(fix) if !tripped => {
                    tripped = true;
                    tracing::error!("key restrictions changed: new entries halted: {fix}");
                    let _ = inbound.send(Inbound::Halt(HaltReason::KeyRejected));
                    let _ = inbound.send(Inbound::Alert(AlertKind::KeyRestrictionsChanged));
                }
                Err(_) => {}
            },
            Err(e) => {
                tracing::warn!(error = %e, "key restriction re-check failed; trying again next period")
            }
        }
    }
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
    fn leverage_is_the_largest_enabled_mode_capped_by_the_limit() {
        use aegis_engine::strategy::ultra_fast::UltraFastParams;
        use aegis_engine::strategy::{position::PositionParams, swing::SwingParams};
        let lev = |scalp: bool, uf: Option<u32>, sw: Option<u32>, po: Option<u32>, cap: u32| {
            let p = EngineParams {
                scalp_enabled: scalp,
                leverage: 1,
                ultra_fast: uf.map(|leverage| UltraFastParams {
                    leverage,
                    ..UltraFastParams::default()
                }),
                swing: sw.map(|leverage| SwingParams {
                    leverage,
                    ..SwingParams::default()
                }),
                position: po.map(|leverage| PositionParams {
                    leverage,
                    ..PositionParams::default()
                }),
                ..EngineParams::default()
            };
            leverage_in_use(&p, cap)
        };
        assert_eq!(lev(true, Some(3), Some(2), Some(1), 5), 3);
        assert_eq!(lev(true, None, Some(2), Some(1), 5), 2);
        assert_eq!(lev(false, None, None, Some(4), 5), 4);
        assert_eq!(lev(true, Some(7), None, None, 5), 5, "capped");
        assert_eq!(lev(false, None, None, None, 5), 1, "no mode: 1x");
        assert_eq!(lev(true, None, None, None, 0), 1, "never 0x");
    }

    fn key(withdrawals: bool, ip_restrict: bool, spot: bool) -> KeyPermissions {
        KeyPermissions {
            withdrawals,
            ip_restrict,
            spot,
        }
    }

    #[test]
    fn withdrawals_and_spot_are_never_overridable_ip_is() {
        assert!(judge(key(true, true, false), true, Market::Futures)
            .unwrap_err()
            .contains("Enable Withdrawals"));
        assert!(judge(key(true, false, false), true, Market::Futures).is_err());
        assert_eq!(
            judge(key(false, true, false), false, Market::Futures),
            Ok(Restrictions::Safe)
        );
        assert!(judge(key(false, false, false), false, Market::Futures)
            .unwrap_err()
            .contains("ALLOW_UNRESTRICTED_IP"));
        assert_eq!(
            judge(key(false, false, false), true, Market::Futures),
            Ok(Restrictions::UnrestrictedIpAllowed)
        );
        // MARKETS=futures: a key that can also trade spot holds a permission the bot never uses.
        for allow_ip in [false, true] {
            let e = judge(key(false, true, true), allow_ip, Market::Futures).unwrap_err();
            assert!(
                e.contains("Enable Spot & Margin Trading") && e.contains("MARKETS=futures"),
                "{e}"
            );
        }
    }

    #[test]
    fn spot_permission_follows_the_market() {
        // MARKETS=spot: the permission must be on; off is refused with the fix to turn it on, no override.
        for allow_ip in [false, true] {
            let e = judge(key(false, true, false), allow_ip, Market::Spot).unwrap_err();
            assert!(
                e.contains("tick \"Enable Spot & Margin Trading\"") && e.contains("MARKETS=spot"),
                "{e}"
            );
            assert!(e.contains("Enable Withdrawals\" OFF"), "{e}");
        }
        assert_eq!(
            judge(key(false, true, true), false, Market::Spot),
            Ok(Restrictions::Safe)
        );
        assert_eq!(
            judge(key(false, true, false), false, Market::Futures),
            Ok(Restrictions::Safe)
        );
        // Spot needs the permission, never withdrawals, and the IP rule is the same as for futures.
        assert!(judge(key(true, true, true), true, Market::Spot)
            .unwrap_err()
            .contains("Enable Withdrawals"));
        assert!(judge(key(false, false, true), false, Market::Spot)
            .unwrap_err()
            .contains("ALLOW_UNRESTRICTED_IP"));
        assert_eq!(
            judge(key(false, false, true), true, Market::Spot),
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
