//! [`Venue`]: the engine's one venue, paper or live, behind the calls the engine makes.

use super::binance::{LiveLink, LiveVenue, VenueSignal};
use super::paper::PaperVenue;
use super::{ExecReport, FeeRates, OrderRequest};
use crate::book::TopOfBook;
use crate::position::Positions;
use crate::queues::EventOut;
use aegis_shared::event::OrderStatus;
use aegis_shared::{ClientOrderId, Market, Symbol};

/// The venue the engine trades on.
#[derive(Debug)]
pub enum Venue {
    /// Simulated fills ([`PaperVenue`]).
    Paper(PaperVenue),
    /// Binance testnet or production ([`LiveVenue`]).
    Live(Box<LiveVenue>),
}

impl Venue {
    /// The live venue when `live` is given, else the paper venue on `market` (trade ids above
    /// `paper_trade_id_base`).
    pub fn new(
        live: Option<LiveLink>,
        symbols: Vec<Symbol>,
        fees: FeeRates,
        paper_trade_id_base: u64,
        market: Market,
    ) -> Self {
        match live {
            Some(l) => Self::Live(Box::new(LiveVenue::new(l, symbols, market))),
            None => Self::Paper(
                PaperVenue::with_trade_id_base(symbols.len(), fees, paper_trade_id_base)
                    .on_market(market),
            ),
        }
    }

    /// Orders resting (paper) or working/awaiting an answer (live).
    #[inline]
    pub fn open_orders(&self) -> usize {
        match self {
            Self::Paper(p) => p.open_orders(),
            Self::Live(l) => l.open_orders(),
        }
    }

    /// Places an approved order (see [`PaperVenue::submit`], [`LiveVenue::submit`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn submit(
        &mut self,
        req: &OrderRequest,
        cid: ClientOrderId,
        top: &TopOfBook,
        ts: u64,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> OrderStatus {
        match self {
            Self::Paper(p) => p.submit(req, cid, top, ts, positions, out, on_exec),
            Self::Live(l) => l.submit(req, cid, ts, out, on_exec),
        }
    }

    /// A book update: paper fills resting orders it crosses; the live venue learns fills from the exchange.
    #[inline]
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        ts: u64,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        if let Self::Paper(p) = self {
            p.on_book(sym, top, ts, positions, out, on_exec);
        }
    }

    /// Cancels every open order: at once on paper; live, the cancellations are requested and applied when the
    /// exchange confirms them.
    pub fn cancel_all(
        &mut self,
        ts: u64,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> usize {
        match self {
            Self::Paper(p) => p.cancel_all(ts, out, on_exec),
            Self::Live(l) => l.cancel_all(),
        }
    }

    /// Live only: drains exchange news (see [`LiveVenue::poll`]). Paper: nothing to do.
    #[inline]
    pub fn poll(
        &mut self,
        max: usize,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> usize {
        match self {
            Self::Paper(_) => 0,
            Self::Live(l) => l.poll(max, positions, out, on_exec),
        }
    }

    /// Live only: the next halt/alert signal from [`Venue::poll`].
    #[inline]
    pub fn next_signal(&mut self) -> Option<VenueSignal> {
        match self {
            Self::Paper(_) => None,
            Self::Live(l) => l.next_signal(),
        }
    }
}
