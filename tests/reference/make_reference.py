#!/usr/bin/env python3
"""Independent reference values for the engine's incremental indicators.

Computes EMA, SMA, RSI, MACD, ADX and ATR with the widely used `ta` library (bukosabino/ta, on pandas) over the
real data in ../shared/data/, and writes small JSON files next to this script that the Rust tests in
engine/tests/modes_indicators.rs compare against.

Inputs:
  - xrpusdt-perp-kline5m-2021-11-15.jsonl: closed 5-minute klines (open/high/low/close/volume as given).
  - xrpeth-aggtrade-2019-10-11.jsonl: aggTrades, aggregated here into 1-minute bars by trade time `T`
    (bucket = floor(T / 60000)); minutes without trades produce no bar (the engine's bar builder does the same).

Output per series: every 50th value plus the last 20, as [index, value] pairs (NaN warm-up values are left out),
so the committed files stay small.

Run (needs `pip install pandas ta`):  python3 tests/reference/make_reference.py
"""
import json
import os
import sys
from decimal import Decimal

import pandas as pd
import ta

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("AEGIS_SHARED_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))


def sample(series):
    vals = list(series)
    n = len(vals)
    idx = sorted(set(list(range(0, n, 50)) + list(range(max(0, n - 20), n))))
    out = []
    for i in idx:
        v = vals[i]
        if v is None or pd.isna(v):
            continue
        out.append([i, float(v)])
    return out


def indicators(df):
    c, h, lo = df["close"], df["high"], df["low"]
    macd = ta.trend.MACD(c, window_slow=26, window_fast=12, window_sign=9)
    return {
        "ema9": sample(ta.trend.EMAIndicator(c, 9).ema_indicator()),
        "ema21": sample(ta.trend.EMAIndicator(c, 21).ema_indicator()),
        "ema50": sample(ta.trend.EMAIndicator(c, 50).ema_indicator()),
        "sma20": sample(ta.trend.SMAIndicator(c, 20).sma_indicator()),
        "rsi14": sample(ta.momentum.RSIIndicator(c, 14).rsi()),
        "rsi7": sample(ta.momentum.RSIIndicator(c, 7).rsi()),
        "macd": sample(macd.macd()),
        "macd_signal": sample(macd.macd_signal()),
        "macd_hist": sample(macd.macd_diff()),
        "adx14": sample(ta.trend.ADXIndicator(h, lo, c, 14).adx()),
        "atr14": sample(ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range()),
    }


def klines():
    rows = []
    with open(os.path.join(DATA, "xrpusdt-perp-kline5m-2021-11-15.jsonl")) as f:
        for line in f:
            k = json.loads(line)["data"]["k"]
            if not k["x"]:
                continue
            rows.append((k["t"], float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"])))
    return pd.DataFrame(rows, columns=["t", "open", "high", "low", "close", "volume"])


def trade_bars():
    bars = {}
    order = []
    with open(os.path.join(DATA, "xrpeth-aggtrade-2019-10-11.jsonl")) as f:
        for line in f:
            d = json.loads(line)["data"]
            b = d["T"] // 60000
            p, q = Decimal(d["p"]), Decimal(d["q"])
            if b not in bars:
                bars[b] = [p, p, p, p, Decimal(0), 0]
                order.append(b)
            bar = bars[b]
            bar[1] = max(bar[1], p)
            bar[2] = min(bar[2], p)
            bar[3] = p
            bar[4] += q
            bar[5] += 1
    order.sort()
    rows = [(b * 60000,) + tuple(bars[b]) for b in order]
    df = pd.DataFrame(
        [(r[0], float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in rows],
        columns=["t", "open", "high", "low", "close", "volume"],
    )
    n = len(rows)
    idx = sorted(set(list(range(0, n, 50)) + list(range(max(0, n - 20), n))))
    # Exact decimal strings, so the Rust bar builder is checked to the last unit.
    samples = [[i, rows[i][0], str(rows[i][1]), str(rows[i][2]), str(rows[i][3]), str(rows[i][4]),
                str(rows[i][5]), rows[i][6]] for i in idx]
    return df, samples


def main():
    k = klines()
    out = {"source": "xrpusdt-perp-kline5m-2021-11-15.jsonl", "library": f"ta {getattr(ta, '__version__', '0.11.0')}",
           "bars": len(k), "series": indicators(k)}
    with open(os.path.join(HERE, "kline5m_indicators.json"), "w") as f:
        json.dump(out, f, indent=0)
    t, samples = trade_bars()
    out = {"source": "xrpeth-aggtrade-2019-10-11.jsonl (1-minute bars by trade time)",
           "library": f"ta {getattr(ta, '__version__', '0.11.0')}", "bars": len(t),
           "bar_samples": samples, "series": indicators(t)}
    with open(os.path.join(HERE, "trades1m_indicators.json"), "w") as f:
        json.dump(out, f, indent=0)
    print("wrote", len(k), "kline bars and", len(t), "trade bars", file=sys.stderr)


if __name__ == "__main__":
    main()
