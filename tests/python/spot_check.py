"""Checks binance-sim's spot half with python-binance's spot Client (REST /api/v3), a client nobody here wrote.

Every call is checked against what Binance answers, and the balances against the simulator's own book
(/admin/spot/accounts/<account>). The script exits non-zero on the first failure.

Usage: spot_check.py --base-url http://127.0.0.1:PORT --api-key K --secret S --account NAME
"""

import argparse
import sys
from decimal import Decimal

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

PASSED = []


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        print(f"{len(PASSED)} passed, 1 failed", flush=True)
        sys.exit(1)
    PASSED.append(name)
    print(f"ok   {name}", flush=True)


def refused(fn, code):
    """Calls fn; returns the BinanceAPIException when its code is `code`, else None."""
    try:
        fn()
    except BinanceAPIException as e:
        return e if e.code == code else None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--account", required=True)
    a = ap.parse_args()
    admin = a.base_url + "/admin/spot"

    def book_balance(asset):
        r = requests.get(f"{admin}/accounts/{a.account}", timeout=10).json()
        for b in r["balances"]:
            if b["asset"] == asset:
                return Decimal(b["free"]), Decimal(b["locked"])
        return Decimal(0), Decimal(0)

    def set_price(symbol, price):
        r = requests.post(f"{admin}/market/price", json={"symbol": symbol, "price": price}, timeout=10)
        check(f"admin price {symbol} {price}", r.status_code == 200, r.text)

    class SimClient(Client):
        API_URL = a.base_url + "/api"

    set_price("BTCUSDT", "60000")
    # The constructor pings /api/v3/ping.
    c = SimClient(a.api_key, a.secret)
    check("server time", abs(c.get_server_time()["serverTime"]) > 0)
    info = c.get_symbol_info("BTCUSDT")
    filters = {f["filterType"]: f for f in info["filters"]}
    check("symbol filters", {"LOT_SIZE", "PRICE_FILTER", "NOTIONAL"} <= set(filters), filters)
    check("ticker", c.get_symbol_ticker(symbol="BTCUSDT")["price"] == "60000.00000000")

    acc = c.get_account()
    usdt = next(b for b in acc["balances"] if b["asset"] == "USDT")
    check("get_account", acc["canTrade"] and Decimal(usdt["free"]) == Decimal(10000), acc)

    # A market buy through create_order: the fee comes out of the BTC bought.
    o = c.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", newClientOrderId="py-m1")
    check("market buy FILLED", o["status"] == "FILLED", o)
    check("fee in BTC", o["fills"][0]["commissionAsset"] == "BTC" and o["fills"][0]["commission"] == "0.00001000", o)
    check("book BTC after fee", book_balance("BTC") == (Decimal("0.00999"), Decimal(0)), book_balance("BTC"))

    # No shorting: selling more BTC than held.
    e = refused(lambda: c.order_market_sell(symbol="BTCUSDT", quantity="1"), -2010)
    check("no short (-2010)", e is not None and "insufficient balance" in e.message)
    # A filter failure.
    e = refused(lambda: c.order_limit_buy(symbol="BTCUSDT", quantity="0.000015", price="59000"), -1013)
    check("LOT_SIZE (-1013)", e is not None and e.message == "Filter failure: LOT_SIZE")
    # create_test_order places nothing.
    c.create_test_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
                        price="59000")

    # A resting limit buy, listed, locked, then cancelled.
    o = c.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="59000", newClientOrderId="py-l1")
    check("limit buy NEW", o["status"] == "NEW", o)
    opens = c.get_open_orders(symbol="BTCUSDT")
    check("get_open_orders", [x["clientOrderId"] for x in opens] == ["py-l1"], opens)
    check("book USDT locked", book_balance("USDT")[1] == Decimal(590), book_balance("USDT"))
    e = refused(lambda: c.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="59000",
                                          newClientOrderId="py-l1"), -2010)
    check("duplicate client id (-2010)", e is not None and e.message == "Duplicate order sent.")
    got = c.get_order(symbol="BTCUSDT", origClientOrderId="py-l1")
    check("get_order", got["status"] == "NEW" and got["isWorking"] is True, got)
    x = c.cancel_order(symbol="BTCUSDT", origClientOrderId="py-l1")
    check("cancel_order", x["status"] == "CANCELED", x)
    check("get_open_orders empty", c.get_open_orders(symbol="BTCUSDT") == [])
    check("book USDT unlocked", book_balance("USDT") == (Decimal("9400"), Decimal(0)), book_balance("USDT"))

    trades = c.get_my_trades(symbol="BTCUSDT")
    check("get_my_trades", len(trades) == 1 and trades[0]["isBuyer"] and trades[0]["qty"] == "0.01000000", trades)

    # An OCO through the new endpoint: the stop leg triggers on the last price, the take-profit expires.
    requests.post(f"{admin}/accounts/{a.account}/balances", json={"BTC": "0.5"}, timeout=10)
    oco = c.create_oco_order(symbol="BTCUSDT", side="SELL", quantity="0.5", aboveType="LIMIT_MAKER",
                             abovePrice="63000", aboveClientOrderId="py-tp", belowType="STOP_LOSS_LIMIT",
                             belowStopPrice="58000", belowPrice="57900", belowTimeInForce="GTC",
                             belowClientOrderId="py-sl")
    check("create_oco_order", oco["contingencyType"] == "OCO" and len(oco["orders"]) == 2, oco)
    check("OCO locks once", book_balance("BTC") == (Decimal(0), Decimal("0.5")), book_balance("BTC"))
    set_price("BTCUSDT", "57950")
    sl = c.get_order(symbol="BTCUSDT", origClientOrderId="py-sl")
    tp = c.get_order(symbol="BTCUSDT", origClientOrderId="py-tp")
    check("OCO stop filled", sl["status"] == "FILLED" and sl["executedQty"] == "0.50000000", sl)
    check("OCO take-profit expired", tp["status"] == "EXPIRED", tp)
    # 0.5 × 57950 = 28975 USDT less the 0.1 % fee in USDT.
    check("book USDT after OCO", book_balance("USDT")[0] == Decimal("9400") + Decimal("28975") * Decimal("0.999"),
          book_balance("USDT"))

    print(f"{len(PASSED)} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
