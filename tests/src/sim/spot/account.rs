//! A spot account: a free and a locked balance per asset, its orders, trades and OCO lists, and the channel
//! its user data events (`executionReport`, `outboundAccountPosition`, `balanceUpdate`, `listStatus`) go out on.

use super::orders::SpotOrder;
use super::symbols::s8;
use aegis_shared::num::{Price, Qty, Rate};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One asset's balance. Amounts of any asset are held as [`Qty`] (a quantity of that asset, exact to 10⁻⁸).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    /// Available.
    pub free: Qty,
    /// Held by open orders.
    pub locked: Qty,
}

/// One execution of the account.
#[derive(Debug, Clone)]
pub struct SpotTrade {
    /// Symbol.
    pub symbol: String,
    /// Trade id.
    pub id: u64,
    /// Order id.
    pub order_id: u64,
    /// OCO list id (-1 outside).
    pub list_id: i64,
    /// Price.
    pub price: Price,
    /// Base quantity.
    pub qty: Qty,
    /// Commission.
    pub commission: Qty,
    /// Commission asset.
    pub commission_asset: String,
    /// Time.
    pub time: u64,
    /// Bought.
    pub is_buyer: bool,
    /// Was the resting side.
    pub is_maker: bool,
}

impl SpotTrade {
    /// `GET /api/v3/myTrades` entry.
    pub fn to_json(&self) -> Value {
        json!({"symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": self.list_id,
               "price": s8(self.price.units()), "qty": s8(self.qty.units()),
               "quoteQty": s8(self.price.notional(self.qty).units()), "commission": s8(self.commission.units()),
               "commissionAsset": self.commission_asset, "time": self.time, "isBuyer": self.is_buyer,
               "isMaker": self.is_maker, "isBestMatch": true})
    }
}

/// An OCO order list.
#[derive(Debug, Clone)]
pub struct OrderList {
    /// Id.
    pub id: i64,
    /// listClientOrderId.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// Leg order ids.
    pub orders: Vec<u64>,
    /// Done (a leg finished or the list was cancelled).
    pub done: bool,
    /// Creation time.
    pub time: u64,
}

/// One spot account.
#[derive(Debug)]
pub struct SpotAccount {
    /// Balances by asset.
    pub balances: BTreeMap<String, Balance>,
    /// Every order ever placed (open and done).
    pub orders: Vec<SpotOrder>,
    /// Every execution.
    pub trades: Vec<SpotTrade>,
    /// OCO lists.
    pub lists: Vec<OrderList>,
    /// Maker commission rate.
    pub maker: Rate,
    /// Taker commission rate.
    pub taker: Rate,
    /// Commissions charged, per asset (admin totals).
    pub fees: BTreeMap<String, Qty>,
    /// Last balance change.
    pub update_time: u64,
    /// User data events (JSON of the event itself; the WebSocket API wraps it in its subscription).
    pub events: broadcast::Sender<Arc<str>>,
    /// Assets changed since the last `outboundAccountPosition`.
    pub dirty: BTreeSet<String>,
}

impl SpotAccount {
    /// A new account holding `balances` (free), with Binance's default 0.1 % commissions.
    pub fn new(balances: &[(String, Qty)]) -> Self {
        let (events, _) = broadcast::channel(4096);
        let rate = Rate::parse("0.001").expect("valid literal");
        Self {
            balances: balances
                .iter()
                .map(|(a, q)| {
                    (
                        a.clone(),
                        Balance {
                            free: *q,
                            locked: Qty::ZERO,
                        },
                    )
                })
                .collect(),
            orders: Vec::new(),
            trades: Vec::new(),
            lists: Vec::new(),
            maker: rate,
            taker: rate,
            fees: BTreeMap::new(),
            update_time: 0,
            events,
            dirty: BTreeSet::new(),
        }
    }

    /// An asset's balance (zero when never held).
    pub fn balance(&self, asset: &str) -> Balance {
        self.balances.get(asset).copied().unwrap_or_default()
    }

    /// Changes an asset's balance, remembering it for the next `outboundAccountPosition`.
    pub fn adjust(&mut self, asset: &str, free: Qty, locked: Qty, now: u64) {
        let b = self.balances.entry(asset.to_string()).or_default();
        b.free += free;
        b.locked += locked;
        self.update_time = now;
        self.dirty.insert(asset.to_string());
    }

    /// Sends an event to the account's subscribers (none listening is fine).
    pub fn emit(&self, v: Value) {
        let _ = self.events.send(Arc::from(v.to_string()));
    }

    /// Sends `outboundAccountPosition` for the assets changed since the last one.
    pub fn flush_position(&mut self, now: u64) {
        if self.dirty.is_empty() {
            return;
        }
        let b: Vec<Value> = std::mem::take(&mut self.dirty)
            .iter()
            .map(|a| {
                let x = self.balance(a);
                json!({"a": a, "f": s8(x.free.units()), "l": s8(x.locked.units())})
            })
            .collect();
        self.emit(json!({"e": "outboundAccountPosition", "E": now, "u": self.update_time, "B": b}));
    }

    /// `GET /api/v3/account` (`omitZeroBalances` drops empty assets).
    pub fn to_json(&self, can_trade: bool, omit_zero: bool, now: u64) -> Value {
        let bps = |r: Rate| r.units() / 10_000;
        json!({
            "makerCommission": bps(self.maker), "takerCommission": bps(self.taker),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": s8(self.maker.units()), "taker": s8(self.taker.units()),
                                "buyer": s8(0), "seller": s8(0)},
            "canTrade": can_trade, "canWithdraw": false, "canDeposit": true, "brokered": false,
            "requireSelfTradePrevention": false, "preventSor": false,
            "updateTime": if self.update_time == 0 { now } else { self.update_time },
            "accountType": "SPOT",
            "balances": self.balances.iter()
                .filter(|(_, b)| !(omit_zero && b.free.is_zero() && b.locked.is_zero()))
                .map(|(a, b)| json!({"asset": a, "free": s8(b.free.units()), "locked": s8(b.locked.units())}))
                .collect::<Vec<_>>(),
            "permissions": ["SPOT"],
            "uid": 354_937_868u64
        })
    }
}
