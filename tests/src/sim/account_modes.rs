//! An account's position mode and margin-asset mode: `GET/POST /fapi/v1/positionSide/dual` and
//! `GET/POST /fapi/v1/multiAssetsMargin`. The bot trades one-way, single-asset accounts and refuses to start
//! on any other; orders that do not fit the position mode are refused in `matching` (-4061).

use super::auth::Params;
use super::error::ApiError;
use super::matching::Exchange;
use serde_json::{json, Value};

fn flag(p: &Params, name: &str) -> Result<bool, ApiError> {
    match p.required(name)? {
        "true" | "TRUE" | "True" => Ok(true),
        "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ApiError::mandatory(name)),
    }
}

fn success() -> Value {
    json!({"code": 200, "msg": "success"})
}

/// `GET /fapi/v1/positionSide/dual`.
pub fn position_mode(ex: &mut Exchange, account: &str) -> Value {
    json!({"dualSidePosition": ex.account(account).dual_side_position})
}

/// `POST /fapi/v1/positionSide/dual`: refused while the account holds a position or an open order, like Binance.
pub fn set_position_mode(ex: &mut Exchange, account: &str, p: &Params) -> Result<Value, ApiError> {
    let want = flag(p, "dualSidePosition")?;
    let acc = ex.account(account);
    if acc.dual_side_position == want {
        return Err(ApiError::new(
            400,
            -4059,
            "No need to change position side.",
        ));
    }
    if acc.positions.values().any(|x| !x.amt.is_zero()) {
        return Err(ApiError::new(
            400,
            -4068,
            "Position side cannot be changed if there exists position.",
        ));
    }
    if acc.orders.values().any(|o| o.is_open()) {
        return Err(ApiError::new(
            400,
            -4067,
            "Position side cannot be changed if there exists open orders.",
        ));
    }
    acc.dual_side_position = want;
    Ok(success())
}

/// `GET /fapi/v1/multiAssetsMargin`.
pub fn multi_assets(ex: &mut Exchange, account: &str) -> Value {
    json!({"multiAssetsMargin": ex.account(account).multi_assets_margin})
}

/// `POST /fapi/v1/multiAssetsMargin`.
pub fn set_multi_assets(ex: &mut Exchange, account: &str, p: &Params) -> Result<Value, ApiError> {
    let want = flag(p, "multiAssetsMargin")?;
    let acc = ex.account(account);
    if acc.multi_assets_margin == want {
        return Err(ApiError::new(
            400,
            -4171,
            "Multi-Assets mode is already set to this value.",
        ));
    }
    acc.multi_assets_margin = want;
    Ok(success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::matching::parse_new_order;
    use crate::sim::symbols::SymbolSpec;

    fn p(q: &str) -> Params {
        Params::from_raw(q, b"")
    }

    #[test]
    fn hedge_mode_refuses_orders_without_a_position_side_and_cannot_change_under_a_position() {
        let mut ex = Exchange::new(
            vec![SymbolSpec::btcusdt()],
            aegis_shared::num::Notional::from_int(10_000),
        );
        assert_eq!(
            position_mode(&mut ex, "a"),
            json!({"dualSidePosition": false})
        );
        assert_eq!(
            set_position_mode(&mut ex, "a", &p("dualSidePosition=false"))
                .unwrap_err()
                .code,
            -4059
        );
        set_position_mode(&mut ex, "a", &p("dualSidePosition=true")).unwrap();
        assert_eq!(
            position_mode(&mut ex, "a"),
            json!({"dualSidePosition": true})
        );
        let order = parse_new_order(
            &p("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01"),
            &ex.specs,
        )
        .unwrap();
        assert_eq!(ex.place("a", order, 1).err().map(|e| e.code), Some(-4061));
        // Back to one-way: BOTH (or nothing) trades, LONG does not.
        set_position_mode(&mut ex, "a", &p("dualSidePosition=false")).unwrap();
        let long = parse_new_order(
            &p("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&positionSide=LONG"),
            &ex.specs,
        )
        .unwrap();
        assert_eq!(ex.place("a", long, 2).err().map(|e| e.code), Some(-4061));
        let both = parse_new_order(
            &p("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01"),
            &ex.specs,
        )
        .unwrap();
        ex.place("a", both, 3).unwrap();
        assert_eq!(
            set_position_mode(&mut ex, "a", &p("dualSidePosition=true"))
                .unwrap_err()
                .code,
            -4068
        );
        assert_eq!(
            multi_assets(&mut ex, "a"),
            json!({"multiAssetsMargin": false})
        );
        set_multi_assets(&mut ex, "a", &p("multiAssetsMargin=true")).unwrap();
        assert_eq!(
            multi_assets(&mut ex, "a"),
            json!({"multiAssetsMargin": true})
        );
        assert_eq!(
            set_multi_assets(&mut ex, "a", &p("multiAssetsMargin=true"))
                .unwrap_err()
                .code,
            -4171
        );
    }
}
