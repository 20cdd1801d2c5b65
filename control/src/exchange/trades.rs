//! Fill recovery from `GET /fapi/v1/userTrades` (issue 13.3): after any gap in the user data stream (a
//! restart, a `kill -9`, a stream reconnect) the trades the bot did not hear of are read back by trade id and
//! booked exactly as if the stream had delivered them.
//!
//! - **Where to read from.** Per symbol, from the newest trade id the journal holds when the gap began
//!   (`fromId` = that + 1), paged by [`PAGE_LIMIT`] (Binance's maximum) until a short page. A symbol with no
//!   journaled trade yet is read per order (`orderId`) for the journal's open orders in it, and at start-up
//!   also by time after the journal's newest position record of it ([`since_times`], at most
//!   [`LOOKBACK_MS`]): an order whose submission the journal never got (killed just after it went out) is
//!   found that way. A fresh journal does not import the account's history. The REST client paces every
//!   request by the exchange's used weight (weight 5 each).
//! - **Exactly once.** A trade whose (symbol, id) the journal holds is skipped here; one that is on its way to
//!   the journal (delivered by the stream meanwhile) is skipped by the live venue, which books each trade id
//!   once (`aegis_engine::venue::binance`); the Postgres writer keys fills by (symbol, trade id, split part).
//! - **Attribution.** `userTrades` rows carry the exchange's order id, not the client id: a journal order is
//!   known by its exchange id; any other order id is looked up once (`GET /fapi/v1/order?orderId=`) for its
//!   client id, so the engine books it like the stream would (its own order by mode, a liquidation
//!   `autoclose-…` or a manual order by the foreign-fill rule).
//! - **Quantities.** Each recovered trade carries, as cumulative quantity, the order's journaled fill plus every
//!   recovered trade of it: an upper bound that lets trades arrive in any order around the stream's.
//! - **Fees** are the row's commission; one in another asset than the quote (BNB) is valued like the stream's
//!   (`funding::FeePricer`), at the price of the fill's time (the pair's last trade then, `aggTrades`).
//!
//! `aegis reconcile --pnl` reads the same rows by time ([`fetch_user_trades_between`]) and the cash flows of
//! `GET /fapi/v1/income` ([`fetch_income`]): both endpoints answer at most 7 days per request.

use super::rest::{Base, RestClient, RestError};
use aegis_engine::venue::binance::{Inbound, OrderUpdate};
use aegis_shared::event::{FeeConversion, OrderEvent, OrderStatus, OrderType, PositionUpdate};
use aegis_shared::{ClientOrderId, Notional, Price, Qty, Side, StrategyMode, Symbol};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Most rows one `userTrades` request returns (Binance's maximum).
pub const PAGE_LIMIT: usize = 1000;
/// Most pages read per symbol in one recovery (a million trades): a bound, not an expected size.
pub const MAX_PAGES: usize = 1000;

/// One row of `GET /fapi/v1/userTrades`, in exact types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTrade {
    /// Symbol.
    pub symbol: Symbol,
    /// Trade id (unique per symbol; the stream's `t`).
    pub id: u64,
    /// Exchange order id.
    pub order_id: u64,
    /// Side of the account's order.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity (positive).
    pub qty: Qty,
    /// Commission (positive = paid), in `commission_asset`.
    pub commission: Notional,
    /// Commission asset.
    pub commission_asset: Symbol,
    /// Realized PnL the exchange booked (before fees).
    pub realized_pnl: Notional,
    /// Maker execution.
    pub maker: bool,
    /// Time (ms).
    pub time: u64,
}

/// Why trades could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TradesError {
    /// The request failed.
    #[error("userTrades: {0}")]
    Rest(#[from] RestError),
    /// A row is not what Binance sends (a fill is never guessed).
    #[error("userTrades of {symbol}: unreadable row: {row}")]
    Unreadable {
        /// Symbol asked for.
        symbol: String,
        /// The row (no secrets in it: a trade of the account).
        row: String,
    },
    /// More than [`MAX_PAGES`] pages.
    #[error("userTrades of {symbol}: more than {MAX_PAGES} pages from trade id {from_id}")]
    TooMany {
        /// Symbol.
        symbol: String,
        /// Where the read started.
        from_id: u64,
    },
}

fn num_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses one `userTrades` row; `None` for a row missing a field or holding an unreadable decimal.
pub fn parse_user_trade(v: &Value) -> Option<UserTrade> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    // Spot's `myTrades` rows have no `side`, only `isBuyer` (and `isMaker` for `maker`).
    let side = match (s("side"), v.get("isBuyer").and_then(Value::as_bool)) {
        (Some("BUY"), _) | (None, Some(true)) => Side::Buy,
        (Some("SELL"), _) | (None, Some(false)) => Side::Sell,
        _ => return None,
    };
    let qty = Qty::parse(s("qty")?).ok().filter(|q| q.units() > 0)?;
    Some(UserTrade {
        symbol: Symbol::new(s("symbol")?).ok()?,
        id: num_u64(v.get("id")?)?,
        order_id: num_u64(v.get("orderId")?)?,
        side,
        price: Price::parse(s("price")?).ok()?,
        qty,
        commission: Notional::parse(s("commission")?).ok()?,
        commission_asset: Symbol::new(s("commissionAsset")?).ok()?,
        realized_pnl: Notional::parse(s("realizedPnl").unwrap_or("0")).ok()?,
        maker: v
            .get("maker")
            .or_else(|| v.get("isMaker"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        time: v.get("time").and_then(Value::as_u64).unwrap_or(0),
    })
}

fn parse_page(symbol: Symbol, v: &Value) -> Result<Vec<UserTrade>, TradesError> {
    let bad = |row: &Value| TradesError::Unreadable {
        symbol: symbol.to_string(),
        row: row.to_string(),
    };
    let rows = v.as_array().ok_or_else(|| bad(v))?;
    rows.iter()
        .map(|r| parse_user_trade(r).ok_or_else(|| bad(r)))
        .collect()
}

/// Where the next page starts, or `None` when `page` was the last (shorter than `limit`).
pub fn next_from(page: &[UserTrade], limit: usize) -> Option<u64> {
    if page.len() < limit {
        return None;
    }
    page.iter().map(|t| t.id).max().map(|m| m + 1)
}

/// Every trade of `symbol` with id ≥ `from_id`, ascending, paged by [`PAGE_LIMIT`].
pub async fn fetch_user_trades(
    client: &RestClient,
    symbol: Symbol,
    from_id: u64,
) -> Result<Vec<UserTrade>, TradesError> {
    let mut out = Vec::new();
    let mut from = from_id;
    for _ in 0..MAX_PAGES {
        let (base, path) = trades_path(client);
        let v = client
            .get_signed(
                base,
                path,
                &[
                    ("symbol", symbol.to_string()),
                    ("fromId", from.to_string()),
                    ("limit", PAGE_LIMIT.to_string()),
                ],
            )
            .await?;
        let page = parse_page(symbol, &v)?;
        let next = next_from(&page, PAGE_LIMIT);
        out.extend(page);
        match next {
            Some(n) => from = n,
            None => {
                out.sort_by_key(|t| t.id);
                out.dedup_by_key(|t| t.id);
                return Ok(out);
            }
        }
    }
    Err(TradesError::TooMany {
        symbol: symbol.to_string(),
        from_id,
    })
}

/// Where the account's trades are read on the client's market: futures `userTrades` (weight 5), spot
/// `myTrades` (weight 20; same paging by `fromId`, same `orderId` filter).
fn trades_path(client: &RestClient) -> (Base, &'static str) {
    client.at("/fapi/v1/userTrades", "/api/v3/myTrades")
}

/// The trades of one order (`orderId`; an order has far fewer than [`PAGE_LIMIT`] trades).
pub async fn fetch_order_trades(
    client: &RestClient,
    symbol: Symbol,
    order_id: u64,
) -> Result<Vec<UserTrade>, TradesError> {
    let (base, path) = trades_path(client);
    let v = client
        .get_signed(
            base,
            path,
            &[
                ("symbol", symbol.to_string()),
                ("orderId", order_id.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
            ],
        )
        .await?;
    parse_page(symbol, &v)
}

/// The client id of exchange order `order_id` (`GET /fapi/v1/order?orderId=`).
pub async fn client_id_of(
    client: &RestClient,
    symbol: Symbol,
    order_id: u64,
) -> Result<Option<ClientOrderId>, RestError> {
    let (base, path) = client.at("/fapi/v1/order", "/api/v3/order");
    let v = client
        .get_signed(
            base,
            path,
            &[
                ("symbol", symbol.to_string()),
                ("orderId", order_id.to_string()),
            ],
        )
        .await?;
    Ok(v.get("clientOrderId")
        .and_then(Value::as_str)
        .and_then(|c| ClientOrderId::new(c).ok()))
}

/// A client id for an order the exchange would not name: never ours, so the trade is booked as foreign.
pub fn unnamed_client_id(order_id: u64) -> ClientOrderId {
    // Invariant: "recovered-" + at most 20 digits is 30 allowed characters, within the id's 36.
    ClientOrderId::new(&format!("recovered-{order_id}"))
        .unwrap_or_else(|_| unreachable!("a short ASCII id is valid"))
}

/// A recovered trade as the `ORDER_TRADE_UPDATE` that would have reported it: never final (the order's final
/// state comes from the order itself), `cum_qty` as the caller computed it (see the module docs).
pub fn to_update(t: &UserTrade, client_id: ClientOrderId, cum_qty: Qty) -> OrderUpdate {
    OrderUpdate {
        ts_ms: t.time,
        symbol: t.symbol,
        client_id,
        exchange_id: t.order_id,
        side: t.side,
        order_type: OrderType::Market,
        status: OrderStatus::PartiallyFilled,
        price: Price::ZERO,
        orig_qty: cum_qty,
        last_qty: t.qty,
        last_price: t.price,
        cum_qty,
        fee: t.commission,
        fee_asset: t.commission_asset,
        fee_conv: FeeConversion::Quote,
        trade_id: t.id,
        maker: t.maker,
        reduce_only: false,
    }
}

/// What the journal knows that recovery needs (a snapshot of the ledger, taken when the gap began).
#[derive(Debug, Clone, Default)]
pub struct JournalView {
    /// Booked trades.
    pub seen: HashSet<(Symbol, u64)>,
    /// Newest booked trade id per symbol.
    pub last_trade_id: BTreeMap<Symbol, u64>,
    /// Open orders' last events.
    pub open: HashMap<ClientOrderId, OrderEvent>,
}

impl JournalView {
    /// From the ledger.
    pub fn of(l: &crate::journal::Ledger) -> Self {
        Self {
            seen: l.trades_seen.clone(),
            last_trade_id: l.last_trade_id.clone(),
            open: l.open_order_events.clone(),
        }
    }
}

/// The recovered trades, ready for the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    /// One update per trade the journal does not hold, ascending by (symbol, trade id).
    pub updates: Vec<OrderUpdate>,
    /// Net signed quantity units per symbol the updates move (buys +, sells −).
    pub delta: BTreeMap<Symbol, i64>,
    /// Journal orders that recovered trades belong to, with their booked fill (the live venue adopts them with
    /// it, so the recovered trades add up to the exchange's filled quantity).
    pub orders: BTreeMap<ClientOrderId, Qty>,
}

/// Pure part of recovery: the trades the journal does not hold, as updates. `names` maps (symbol, order id) to
/// the client id of orders that are not journal-open (looked up by the caller); journal-open orders are
/// known by the exchange id in their events or in `ids`.
pub fn plan_recovery(
    trades: &[UserTrade],
    journal: &JournalView,
    ids: &HashMap<(Symbol, u64), ClientOrderId>,
    names: &HashMap<(Symbol, u64), ClientOrderId>,
) -> Recovered {
    let mut by_order: HashMap<(Symbol, u64), ClientOrderId> = ids.clone();
    for (cid, e) in &journal.open {
        if let Some(x) = e.exchange_id.filter(|x| *x != 0) {
            by_order.insert((e.symbol, x), *cid);
        }
    }
    let mut fresh: Vec<&UserTrade> = trades
        .iter()
        .filter(|t| !journal.seen.contains(&(t.symbol, t.id)))
        .collect();
    fresh.sort_by_key(|t| (t.symbol, t.id));
    fresh.dedup_by_key(|t| (t.symbol, t.id));
    let mut out = Recovered::default();
    // Per order: the journal's booked fill plus every recovered trade of it.
    let mut cum: HashMap<ClientOrderId, Qty> = HashMap::new();
    let mut named = Vec::with_capacity(fresh.len());
    for t in fresh {
        let key = (t.symbol, t.order_id);
        let cid = match (by_order.get(&key), names.get(&key)) {
            (Some(c), _) => {
                let booked = journal.open.get(c).map(|e| e.filled).unwrap_or(Qty::ZERO);
                out.orders.insert(*c, booked);
                *c
            }
            (None, Some(c)) => *c,
            (None, None) => unnamed_client_id(t.order_id),
        };
        let c = cum
            .entry(cid)
            .or_insert_with(|| out.orders.get(&cid).copied().unwrap_or(Qty::ZERO));
        *c += t.qty;
        named.push((t, cid));
        *out.delta.entry(t.symbol).or_default() += held_delta(t);
    }
    for (t, cid) in named {
        let c = cum.get(&cid).copied().unwrap_or(t.qty);
        out.updates.push(to_update(t, cid, c));
    }
    out
}

/// How much a trade moves the held quantity, in units: buys +, sells −, and a commission charged in the
/// pair's base asset (spot: a buy's fee is taken from what was bought) comes off what is held. Futures never
/// charge the base asset, so this is the plain signed quantity there.
pub fn held_delta(t: &UserTrade) -> i64 {
    let fee = if t.symbol.base_asset() == Some(t.commission_asset) {
        t.commission.units()
    } else {
        0
    };
    t.side.sign() * t.qty.units() - fee
}

/// Journal positions moved by the recovered trades (the symbol's largest journal mode takes each symbol's net),
/// so the comparison with the exchange's positions sees what the engine will hold once they are booked.
pub fn positions_after(
    positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    delta: &BTreeMap<Symbol, i64>,
) -> BTreeMap<(Symbol, StrategyMode), PositionUpdate> {
    let mut out = positions.clone();
    for (sym, d) in delta {
        let mode = super::reconcile::mode_for(positions, *sym);
        let e = out.entry((*sym, mode)).or_insert(PositionUpdate::flat(
            0,
            *sym,
            aegis_shared::Market::Futures,
            mode,
        ));
        e.qty = Qty::from_units(e.qty.units() + d);
    }
    out
}

/// Reads the trades since the gap and plans their booking (see the module docs). `from` gives each symbol's
/// first trade id to read; `since`, for symbols not in `from`, the first trade time ([`since_times`]);
/// `by_order` lists (symbol, order id) of journal orders on symbols without a journaled trade, read per order;
/// `ids` names journal orders whose exchange id the journal does not hold (learned from the exchange's open
/// orders or a query).
pub async fn recover(
    client: &RestClient,
    from: &BTreeMap<Symbol, u64>,
    since: &BTreeMap<Symbol, u64>,
    by_order: &[(Symbol, u64)],
    journal: &JournalView,
    ids: &HashMap<(Symbol, u64), ClientOrderId>,
) -> Result<Recovered, TradesError> {
    let mut trades = Vec::new();
    for (sym, f) in from {
        trades.extend(fetch_user_trades(client, *sym, *f).await?);
    }
    let now = client.now_ms();
    for (sym, t) in since {
        if !from.contains_key(sym) {
            trades.extend(fetch_user_trades_between(client, *sym, *t, now).await?);
        }
    }
    for (sym, o) in by_order {
        if !from.contains_key(sym) {
            trades.extend(fetch_order_trades(client, *sym, *o).await?);
        }
    }
    let mut known: HashSet<(Symbol, u64)> = ids.keys().copied().collect();
    for e in journal.open.values() {
        if let Some(x) = e.exchange_id {
            known.insert((e.symbol, x));
        }
    }
    let mut names = HashMap::new();
    for t in &trades {
        let key = (t.symbol, t.order_id);
        if known.contains(&key)
            || names.contains_key(&key)
            || journal.seen.contains(&(t.symbol, t.id))
        {
            continue;
        }
        let cid = match client_id_of(client, t.symbol, t.order_id).await {
            Ok(Some(c)) => c,
            Ok(None) | Err(RestError::Api { .. }) => unnamed_client_id(t.order_id),
            Err(e) => return Err(e.into()),
        };
        names.insert(key, cid);
    }
    Ok(plan_recovery(&trades, journal, ids, &names))
}

/// The first trade id to read per symbol: the journal's newest + 1, for `symbols` that have one.
pub fn from_ids(journal: &JournalView, symbols: &[Symbol]) -> BTreeMap<Symbol, u64> {
    symbols
        .iter()
        .filter_map(|s| journal.last_trade_id.get(s).map(|l| (*s, l + 1)))
        .collect()
}

/// Values each recovered fee charged in another asset than the quote at the fill's time (see
/// `funding::FeePricer::convert_at`).
pub fn price_fees(
    updates: &mut [OrderUpdate],
    funding: &super::funding::SharedFunding,
    client: &RestClient,
    rt: &tokio::runtime::Handle,
) {
    for u in updates.iter_mut().filter(|u| !u.fee.is_zero()) {
        let mut b = funding.lock().unwrap_or_else(|e| e.into_inner());
        u.fee_conv = b
            .pricer()
            .convert_at(client, rt, u.symbol, u.fee_asset, u.fee, u.ts_ms);
    }
}

/// The journal orders of `msgs` adopted into the engine, by (symbol, exchange id): the names recovery gives
/// trades of orders the journal holds open without an exchange id (an acknowledgement lost to a crash).
pub fn adopted_ids(msgs: &[Inbound]) -> HashMap<(Symbol, u64), ClientOrderId> {
    msgs.iter()
        .filter_map(|m| match m {
            Inbound::AdoptOrder {
                symbol,
                client_id,
                exchange_id,
                ..
            } if *exchange_id != 0 => Some(((*symbol, *exchange_id), *client_id)),
            _ => None,
        })
        .collect()
}

/// Rewrites the start-up reconciliation's engine messages around the recovered trades, in the order the
/// engine must see them: journal orders adopted with their journaled mode and booked fill; the recovered
/// trades; orders' final states (and closes of never-placed ones); position settings only where the exchange
/// still differs from the journal moved by the recovered trades (`recomputed`: the plan made from
/// [`positions_after`], whose position notes replace the first plan's).
pub fn merge_into_plan(
    plan: &mut super::reconcile::Plan,
    rec: &Recovered,
    journal: &JournalView,
    recomputed: super::reconcile::Plan,
) {
    let mut adopts = Vec::new();
    let mut rest = Vec::new();
    for m in plan.engine.drain(..) {
        match m {
            Inbound::AdoptOrder {
                symbol,
                mut mode,
                side,
                order_type,
                price,
                qty,
                mut filled,
                reduce_only,
                client_id,
                exchange_id,
            } => {
                if let Some(e) = journal.open.get(&client_id) {
                    mode = e.mode;
                    filled = e.filled;
                }
                adopts.push(Inbound::AdoptOrder {
                    symbol,
                    mode,
                    side,
                    order_type,
                    price,
                    qty,
                    filled,
                    reduce_only,
                    client_id,
                    exchange_id,
                });
            }
            Inbound::SetPosition(_) => {}
            other => rest.push(other),
        }
    }
    plan.engine = adopts;
    plan.engine
        .extend(rec.updates.iter().map(|u| Inbound::Update(*u)));
    plan.engine.extend(rest);
    plan.engine.extend(
        recomputed
            .engine
            .into_iter()
            .filter(|m| matches!(m, Inbound::SetPosition(_))),
    );
    plan.notes.retain(|n| !n.starts_with("position "));
    plan.notes.extend(
        recomputed
            .notes
            .into_iter()
            .filter(|n| n.starts_with("position ")),
    );
}

/// The longest window `userTrades` and `income` answer per request (7 days, ms).
pub const WINDOW_MS: u64 = 7 * 86_400_000;
/// The longest window spot `myTrades` answers per request (24 hours, ms).
pub const SPOT_WINDOW_MS: u64 = 86_400_000;
/// How far back a start-up recovery reads a symbol's trades by time ([`since_times`]): a bot down longer has
/// the older fills corrected from the exchange's position instead (one futures request, seven spot ones).
pub const LOOKBACK_MS: u64 = 7 * 86_400_000;

/// The trades window of the client's market.
fn window_ms(client: &RestClient) -> u64 {
    match client.market() {
        aegis_shared::Market::Futures => WINDOW_MS,
        aegis_shared::Market::Spot => SPOT_WINDOW_MS,
    }
}

/// Where start-up recovery reads by time the symbols that have no journaled trade (so no `fromId`): an order
/// can reach the exchange and fill while its submission never reached the journal (the process was killed in
/// between), and only a read by time finds such a fill. Per symbol of `symbols` not in `from`:
/// - after the newest journal position record of the symbol: its quantity holds nothing traded after it (a
///   booked fill is stamped with its event time; an adoption read the exchange before it stamped the record,
///   so a trade at or before the stamp is never booked twice, only possibly left to the position correction);
/// - without any record (never held), after the newest session's start (`last_session`);
/// - never more than [`LOOKBACK_MS`] before `now_ms`.
///
/// Trades the journal holds are skipped anyway ([`plan_recovery`]).
pub fn since_times(
    positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    last_session: Option<u64>,
    symbols: &[Symbol],
    from: &BTreeMap<Symbol, u64>,
    now_ms: u64,
) -> BTreeMap<Symbol, u64> {
    let floor = now_ms.saturating_sub(LOOKBACK_MS);
    symbols
        .iter()
        .filter(|s| !from.contains_key(s))
        .filter_map(|s| {
            let newest = positions
                .iter()
                .filter(|((p, _), _)| p == s)
                .map(|(_, u)| u.ts_ms)
                .max()
                .filter(|t| *t > 0);
            // Strictly after the record: a trade stamped with it is already in it.
            let since = newest.map(|t| t + 1).or(last_session)?;
            Some((*s, since.max(floor)))
        })
        .collect()
}

/// Every trade of `symbol` with `from_ms <= time <= to_ms`, ascending by id (for `aegis reconcile --pnl` and
/// the start-up recovery of symbols without a journaled trade, [`since_times`]).
///
/// The first trade of the range is found with `startTime`/`endTime` windows of 7 days (spot: 24 hours); from
/// its id on the trades are read by id ([`fetch_user_trades`]) and cut at `to_ms`. A window holding more than [`PAGE_LIMIT`] trades
/// answers only its newest ones, so then the first id is found by paging ids from 0.
pub async fn fetch_user_trades_between(
    client: &RestClient,
    symbol: Symbol,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<UserTrade>, TradesError> {
    let mut start = from_ms;
    let mut first = None;
    let (base, path) = trades_path(client);
    while start <= to_ms && first.is_none() {
        let end = to_ms.min(start.saturating_add(window_ms(client) - 1));
        let v = client
            .get_signed(
                base,
                path,
                &[
                    ("symbol", symbol.to_string()),
                    ("startTime", start.to_string()),
                    ("endTime", end.to_string()),
                    ("limit", PAGE_LIMIT.to_string()),
                ],
            )
            .await?;
        let page = parse_page(symbol, &v)?;
        first = match page.iter().map(|t| t.id).min() {
            None => None,
            Some(m) if page.len() < PAGE_LIMIT => Some(m),
            Some(_) => Some(first_id_from(client, symbol, start).await?),
        };
        start = match end.checked_add(1) {
            Some(s) => s,
            None => break,
        };
    }
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let mut out = fetch_user_trades(client, symbol, first).await?;
    out.retain(|t| t.time >= from_ms && t.time <= to_ms);
    Ok(out)
}

/// The id of the first trade at or after `start_ms`, paging ids from 0 (ids ascend with time).
async fn first_id_from(
    client: &RestClient,
    symbol: Symbol,
    start_ms: u64,
) -> Result<u64, TradesError> {
    let mut from = 0u64;
    for _ in 0..MAX_PAGES {
        let (base, path) = trades_path(client);
        let v = client
            .get_signed(
                base,
                path,
                &[
                    ("symbol", symbol.to_string()),
                    ("fromId", from.to_string()),
                    ("limit", PAGE_LIMIT.to_string()),
                ],
            )
            .await?;
        let page = parse_page(symbol, &v)?;
        if let Some(t) = page.iter().find(|t| t.time >= start_ms) {
            return Ok(t.id);
        }
        match next_from(&page, PAGE_LIMIT) {
            Some(n) => from = n,
            None => return Ok(from),
        }
    }
    Err(TradesError::TooMany {
        symbol: symbol.to_string(),
        from_id: 0,
    })
}

/// One cash flow of `GET /fapi/v1/income` (weight 30), in exact types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomeRow {
    /// Symbol (`None` for account-wide flows such as transfers).
    pub symbol: Option<Symbol>,
    /// `REALIZED_PNL`, `COMMISSION`, `FUNDING_FEE`, `INSURANCE_CLEAR`, `TRANSFER`, ...
    pub income_type: String,
    /// Amount (received > 0).
    pub income: Notional,
    /// Asset.
    pub asset: Symbol,
    /// Transaction id.
    pub tran_id: u64,
    /// The trade it belongs to, if any.
    pub trade_id: Option<u64>,
    /// Time (ms).
    pub time: u64,
}

/// Why the income history could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomeError {
    /// The request failed.
    #[error("income: {0}")]
    Rest(#[from] RestError),
    /// A row is not what Binance sends (an amount is never guessed).
    #[error("income: unreadable row ({what}): {row}")]
    Unreadable {
        /// The first unreadable field.
        what: &'static str,
        /// The row (a cash flow of the account, no secret in it).
        row: String,
    },
}

/// Parses one `income` row; the error names the first unreadable field.
pub fn parse_income_row(v: &Value) -> Result<IncomeRow, &'static str> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    Ok(IncomeRow {
        symbol: s("symbol")
            .filter(|x| !x.is_empty())
            .map(|x| Symbol::new(x).map_err(|_| "symbol"))
            .transpose()?,
        income_type: s("incomeType").ok_or("incomeType")?.to_string(),
        income: s("income")
            .and_then(|x| Notional::parse(x).ok())
            .ok_or("income")?,
        asset: s("asset")
            .and_then(|x| Symbol::new(x).ok())
            .ok_or("asset")?,
        tran_id: v.get("tranId").and_then(num_u64).ok_or("tranId")?,
        trade_id: v.get("tradeId").and_then(num_u64),
        time: v.get("time").and_then(num_u64).ok_or("time")?,
    })
}

/// Every cash flow with `from_ms <= time <= to_ms` (all symbols, all types), oldest first: 7-day windows, each
/// paged by `page` with [`PAGE_LIMIT`] rows.
pub async fn fetch_income(
    client: &RestClient,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<IncomeRow>, IncomeError> {
    let mut out = Vec::new();
    let mut start = from_ms;
    while start <= to_ms {
        let end = to_ms.min(start.saturating_add(WINDOW_MS - 1));
        for page_no in 1..=MAX_PAGES {
            let v = client
                .get_signed(
                    Base::Fapi,
                    "/fapi/v1/income",
                    &[
                        ("startTime", start.to_string()),
                        ("endTime", end.to_string()),
                        ("limit", PAGE_LIMIT.to_string()),
                        ("page", page_no.to_string()),
                    ],
                )
                .await?;
            let rows = v.as_array().ok_or_else(|| IncomeError::Unreadable {
                what: "not a list",
                row: v.to_string(),
            })?;
            for r in rows {
                out.push(parse_income_row(r).map_err(|what| IncomeError::Unreadable {
                    what,
                    row: r.to_string(),
                })?);
            }
            if rows.len() < PAGE_LIMIT {
                break;
            }
        }
        start = match end.checked_add(1) {
            Some(s) => s,
            None => break,
        };
    }
    // Pages of a window that grew while being read may overlap: a transaction counts once.
    out.sort_by_key(|r| (r.time, r.tran_id));
    out.dedup_by(|a, b| a.tran_id == b.tran_id && a.income_type == b.income_type);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::{OrderIntent, TimeInForce};
    use serde_json::json;

    #[test]
    fn spot_my_trades_rows_read_side_and_maker_and_a_base_fee_comes_off_what_is_held() {
        // Binance's documented `GET /api/v3/myTrades` row: no `side`, `isBuyer`/`isMaker` instead.
        let row = json!({"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1,
            "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
            "commission": "10.10000000", "commissionAsset": "BNB", "time": 1499865549590u64,
            "isBuyer": true, "isMaker": false, "isBestMatch": true});
        let t = parse_user_trade(&row).unwrap();
        assert_eq!(
            (t.side, t.maker, t.id, t.order_id),
            (Side::Buy, false, 28457, 100234)
        );
        // BNB is BNBBTC's base: 12 bought, 10.1 taken as the fee, 1.9 held.
        assert_eq!(held_delta(&t), Qty::parse("1.9").unwrap().units());
        let sell = json!({"symbol": "BTCUSDT", "id": 2, "orderId": 3, "price": "100", "qty": "0.5",
            "commission": "0.05", "commissionAsset": "USDT", "isBuyer": false, "isMaker": true});
        let t = parse_user_trade(&sell).unwrap();
        assert_eq!((t.side, t.maker), (Side::Sell, true));
        assert_eq!(held_delta(&t), -Qty::parse("0.5").unwrap().units());
    }

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn row(id: u64, order: u64, side: &str, qty: &str) -> Value {
        json!({"buyer": side == "BUY", "commission": "0.01200000", "commissionAsset": "USDT", "id": id,
               "maker": true, "orderId": order, "price": "60000.0", "qty": qty, "quoteQty": "60.0",
               "realizedPnl": "-0.50000000", "side": side, "positionSide": "BOTH", "symbol": "BTCUSDT",
               "time": 1_700_000_000_000u64 + id})
    }

    fn trade(id: u64, order: u64, side: &str, qty: &str) -> UserTrade {
        parse_user_trade(&row(id, order, side, qty)).unwrap()
    }

    fn open_event(cid: &str, exchange_id: Option<u64>, filled: &str) -> OrderEvent {
        OrderEvent {
            ts_ms: 1,
            symbol: btc(),
            market: aegis_shared::Market::Futures,
            client_id: ClientOrderId::new(cid).unwrap(),
            exchange_id,
            mode: StrategyMode::Swing,
            intent: OrderIntent::Entry,
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Gtc),
            price: Price::from_int(60_000),
            qty: Qty::parse("0.003").unwrap(),
            filled: Qty::parse(filled).unwrap(),
            reduce_only: false,
            status: OrderStatus::PartiallyFilled,
            reject_code: 0,
        }
    }

    #[test]
    fn a_row_becomes_the_update_the_stream_would_have_sent() {
        let t = trade(41, 7, "SELL", "0.002");
        assert_eq!(t.commission, Notional::parse("0.012").unwrap());
        assert_eq!(t.realized_pnl, Notional::parse("-0.5").unwrap());
        let cid = ClientOrderId::new("ag1-1").unwrap();
        let u = to_update(&t, cid, Qty::parse("0.003").unwrap());
        assert_eq!(
            (u.trade_id, u.exchange_id, u.side, u.maker, u.ts_ms),
            (41, 7, Side::Sell, true, 1_700_000_000_041)
        );
        assert_eq!(u.last_qty, Qty::parse("0.002").unwrap());
        assert_eq!(u.last_price, Price::from_int(60_000));
        assert_eq!(u.fee, Notional::parse("0.012").unwrap());
        assert_eq!(u.fee_asset.as_str(), "USDT");
        assert!(!u.status.is_final(), "the order's end comes from the order");
        // A fill is never guessed: a row with an unreadable quantity or side is refused.
        let mut bad = row(1, 1, "SELL", "0.001");
        bad["qty"] = json!("x");
        assert_eq!(parse_user_trade(&bad), None);
        assert_eq!(parse_user_trade(&row(1, 1, "HOLD", "0.001")), None);
        assert!(parse_page(btc(), &json!([row(1, 1, "BUY", "0.001"), bad])).is_err());
    }

    #[test]
    fn pages_follow_on_from_the_largest_id_until_a_short_page() {
        let page: Vec<UserTrade> = (10..13).map(|i| trade(i, 1, "BUY", "0.001")).collect();
        assert_eq!(next_from(&page, 3), Some(13));
        assert_eq!(next_from(&page, 4), None);
        assert_eq!(next_from(&[], 1000), None);
    }

    #[test]
    fn only_trades_the_journal_lacks_are_planned_and_attributed_by_order() {
        let ours = ClientOrderId::new("agS-1").unwrap();
        let mut j = JournalView::default();
        j.open.insert(ours, open_event("agS-1", Some(7), "0.001"));
        j.seen.insert((btc(), 40));
        let manual = ClientOrderId::new("manual-9").unwrap();
        let names: HashMap<_, _> = [((btc(), 9), manual)].into_iter().collect();
        let trades = [
            trade(40, 7, "SELL", "0.001"), // journaled already
            trade(42, 7, "SELL", "0.001"),
            trade(41, 7, "SELL", "0.001"),
            trade(43, 9, "BUY", "0.004"),
            trade(44, 11, "BUY", "0.001"), // nobody named it
            trade(42, 7, "SELL", "0.001"), // the same row twice (overlapping pages)
        ];
        let r = plan_recovery(&trades, &j, &HashMap::new(), &names);
        let got: Vec<(u64, &str, i64, i64)> = r
            .updates
            .iter()
            .map(|u| {
                (
                    u.trade_id,
                    u.client_id.as_str(),
                    u.last_qty.units(),
                    u.cum_qty.units(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (41, "agS-1", 100_000, 300_000),
                (42, "agS-1", 100_000, 300_000),
                (43, "manual-9", 400_000, 400_000),
                (44, "recovered-11", 100_000, 100_000),
            ]
        );
        assert_eq!(r.delta.get(&btc()), Some(&300_000));
        assert_eq!(
            r.orders.get(&ours),
            Some(&Qty::parse("0.001").unwrap()),
            "adopted with its booked fill"
        );
        // Nothing new: nothing planned.
        let mut all = j.clone();
        for t in &trades {
            all.seen.insert((t.symbol, t.id));
        }
        assert_eq!(
            plan_recovery(&trades, &all, &HashMap::new(), &names),
            Recovered::default()
        );
    }

    #[test]
    fn positions_after_adds_the_net_to_the_largest_mode() {
        let mut p = BTreeMap::new();
        let mut u = PositionUpdate {
            ts_ms: 1,
            symbol: btc(),
            market: aegis_shared::Market::Futures,
            mode: StrategyMode::Swing,
            qty: Qty::parse("0.003").unwrap(),
            entry_price: Price::from_int(60_000),
            realized_pnl: Notional::ZERO,
            fees: Notional::ZERO,
            funding: Notional::ZERO,
        };
        p.insert((btc(), StrategyMode::Swing), u);
        u.mode = StrategyMode::Scalp;
        u.qty = Qty::parse("0.001").unwrap();
        p.insert((btc(), StrategyMode::Scalp), u);
        let d: BTreeMap<_, _> = [(btc(), -300_000i64)].into_iter().collect();
        let after = positions_after(&p, &d);
        assert_eq!(after[&(btc(), StrategyMode::Swing)].qty, Qty::ZERO);
        assert_eq!(
            after[&(btc(), StrategyMode::Scalp)].qty,
            Qty::parse("0.001").unwrap()
        );
        let eth = Symbol::new("ETHUSDT").unwrap();
        let after = positions_after(&p, &[(eth, 5i64)].into_iter().collect());
        assert_eq!(
            after[&(eth, aegis_engine::venue::binance::ADOPT_DEFAULT_MODE)].qty,
            Qty::from_units(5)
        );
    }

    #[test]
    fn symbols_without_a_trade_id_are_read_after_their_newest_record_or_the_last_session() {
        let day = 86_400_000u64;
        let now = 100 * day;
        let eth = Symbol::new("ETHUSDT").unwrap();
        let sol = Symbol::new("SOLUSDT").unwrap();
        let xrp = Symbol::new("XRPUSDT").unwrap();
        let rec = |sym: Symbol, mode: StrategyMode, ts_ms: u64| {
            PositionUpdate::flat(ts_ms, sym, aegis_shared::Market::Futures, mode)
        };
        let mut p = BTreeMap::new();
        // Two modes: the newer record counts.
        p.insert(
            (btc(), StrategyMode::Swing),
            rec(btc(), StrategyMode::Swing, now - 50),
        );
        p.insert(
            (btc(), StrategyMode::Scalp),
            rec(btc(), StrategyMode::Scalp, now - 90),
        );
        // A record older than the lookback is read from the lookback on.
        p.insert(
            (sol, StrategyMode::Swing),
            rec(sol, StrategyMode::Swing, now - 30 * day),
        );
        let from: BTreeMap<_, _> = [(xrp, 7u64)].into_iter().collect();
        let got = since_times(&p, Some(now - 2 * day), &[btc(), eth, sol, xrp], &from, now);
        let want: BTreeMap<_, _> = [
            (btc(), now - 49),
            (eth, now - 2 * day),
            (sol, now - LOOKBACK_MS),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            got, want,
            "xrp reads by id; eth was never held: the last session's start"
        );
        // A fresh journal (no session, no record) imports nothing.
        assert!(since_times(&BTreeMap::new(), None, &[btc()], &BTreeMap::new(), now).is_empty());
    }

    #[test]
    fn income_rows_parse_exactly_or_not_at_all() {
        let i: Value = serde_json::from_str(
            r#"{"symbol":"","incomeType":"TRANSFER","income":"-0.37500000","asset":"USDT","info":"TRANSFER",
                "time":1570608000000,"tranId":9689322392,"tradeId":""}"#,
        )
        .unwrap();
        let r = parse_income_row(&i).unwrap();
        assert_eq!(r.symbol, None);
        assert_eq!(r.trade_id, None);
        assert_eq!(r.income, Notional::parse("-0.375").unwrap());
        let mut bad = i.clone();
        bad["income"] = "-3.75e-1".into();
        assert_eq!(parse_income_row(&bad), Err("income"));
        let mut f = i;
        f["symbol"] = "BTCUSDT".into();
        f["incomeType"] = "FUNDING_FEE".into();
        f["tradeId"] = "42".into();
        let r = parse_income_row(&f).unwrap();
        assert_eq!(r.symbol, Some(Symbol::new("BTCUSDT").unwrap()));
        assert_eq!(r.trade_id, Some(42));
    }
}
