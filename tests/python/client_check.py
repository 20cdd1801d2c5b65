"""Checks binance-sim with clients nobody in this project wrote.

binance-futures-connector (UMFutures + UMFuturesWebsocketClient) does REST with HMAC signatures and streams;
websocket-client talks to the routed and private stream paths; pycryptodome's Ed25519 signs REST requests and
the WebSocket API logon. Every check asserts a result; the script exits non-zero on the first failure.

Usage: client_check.py --base-url http://127.0.0.1:PORT --ws-url ws://127.0.0.1:PORT --api-key K --secret S
"""

import argparse
import base64
import json
import sys
import threading
import time
import urllib.parse

import requests
import websocket
from binance.error import ClientError
from binance.um_futures import UMFutures
from binance.websocket.um_futures.websocket_client import UMFuturesWebsocketClient
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

PASSED = []


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        print(f"{len(PASSED)} passed, 1 failed", flush=True)
        sys.exit(1)
    PASSED.append(name)
    print(f"ok   {name}", flush=True)


class Inbox:
    """Thread-safe message collection for the websocket callbacks."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def put(self, _client, raw):
        msg = json.loads(raw)
        with self.cond:
            self.items.append(msg)
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10.0):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for m in self.items:
                    if pred(m):
                        return m
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)


def expect_error(name, fn, status, code):
    try:
        fn()
    except ClientError as e:
        check(name, e.status_code == status and e.error_code == code,
              f"got HTTP {e.status_code} code {e.error_code}: {e.error_message}")
        return
    check(name, False, "no error raised")


def rest_checks(client):
    check("ping", client.ping() == {})
    server = client.time()["serverTime"]
    check("time", abs(server - time.time() * 1000) < 5000, server)
    info = client.exchange_info()
    symbols = {s["symbol"]: s for s in info["symbols"]}
    check("exchangeInfo symbols", {"BTCUSDT", "ETHUSDT"} <= set(symbols))
    filters = {f["filterType"]: f for f in symbols["BTCUSDT"]["filters"]}
    check("exchangeInfo filters", filters["PRICE_FILTER"]["tickSize"] == "0.1"
          and filters["LOT_SIZE"]["stepSize"] == "0.001" and "notional" in filters["MIN_NOTIONAL"], filters)
    depth = client.depth("BTCUSDT", limit=5)
    check("depth", len(depth["bids"]) == 5 and float(depth["bids"][0][0]) < float(depth["asks"][0][0]), depth)
    # Market history the simulator builds from its own trades (the source trades every tick).
    bars = client.klines("BTCUSDT", "1m", limit=3)
    check("klines shape", 1 <= len(bars) <= 3 and all(len(b) == 12 and b[6] == b[0] + 59_999 for b in bars), bars)
    check("klines OHLC", all(float(b[3]) <= min(float(b[1]), float(b[4])) <= max(float(b[1]), float(b[4])) <= float(b[2])
                             for b in bars), bars)
    t24 = client.ticker_24hr_price_change("BTCUSDT")
    check("ticker/24hr", t24["symbol"] == "BTCUSDT" and float(t24["lowPrice"]) <= float(t24["lastPrice"])
          <= float(t24["highPrice"]) and t24["count"] >= 1, t24)
    expect_error("klines interval -1120", lambda: client.klines("BTCUSDT", "7m"), 400, -1120)
    brackets = client.leverage_brackets(symbol="BTCUSDT")
    check("leverageBracket", brackets["symbol"] == "BTCUSDT" and brackets["brackets"][0]["notionalFloor"] == 0, brackets)

    expect_error("precision -1111", lambda: client.new_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.0001", price="58000"), 400, -1111)
    expect_error("tick -4014", lambda: client.new_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="58000.05"), 400, -4014)
    expect_error("unknown order -2013", lambda: client.query_order(
        symbol="BTCUSDT", origClientOrderId="py-nothing"), 400, -2013)

    o = client.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=0.01,
                         price=58000, newClientOrderId="py-limit-1")
    check("limit placed", o["status"] == "NEW" and o["clientOrderId"] == "py-limit-1", o)
    q = client.query_order(symbol="BTCUSDT", origClientOrderId="py-limit-1")
    check("limit queried", q["orderId"] == o["orderId"] and q["status"] == "NEW" and q["price"] == "58000.00", q)
    opens = client.get_orders(symbol="BTCUSDT")
    check("openOrders lists it", [x["orderId"] for x in opens] == [o["orderId"]], opens)
    one = client.get_open_orders(symbol="BTCUSDT", orderId=o["orderId"])
    check("openOrder", one["clientOrderId"] == "py-limit-1", one)
    expect_error("duplicate clientOrderId -4116", lambda: client.new_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=0.01, price=58000,
        newClientOrderId="py-limit-1"), 400, -4116)
    c = client.cancel_order(symbol="BTCUSDT", orderId=o["orderId"])
    check("limit cancelled", c["status"] == "CANCELED", c)
    expect_error("cancel again -2011", lambda: client.cancel_order(symbol="BTCUSDT", orderId=o["orderId"]), 400, -2011)
    lev = client.change_leverage(symbol="BTCUSDT", leverage=10)
    check("leverage", lev["leverage"] == 10, lev)
    bal = client.balance()
    check("balance", bal[0]["asset"] == "USDT" and float(bal[0]["balance"]) > 0, bal)


def stream_checks(client, ws_url):
    listen_key = client.new_listen_key()["listenKey"]
    check("listenKey", len(listen_key) == 64)
    inbox = Inbox()
    ws = UMFuturesWebsocketClient(stream_url=ws_url, on_message=inbox.put)
    try:
        ws.book_ticker(symbol="btcusdt", id=11)
        ws.agg_trade(symbol="btcusdt", id=12)
        ws.user_data(listen_key=listen_key, id=13)
        check("SUBSCRIBE answered", inbox.wait_for(lambda m: m.get("id") == 13 and "result" in m) is not None)
        bt = inbox.wait_for(lambda m: m.get("e") == "bookTicker")
        check("bookTicker streamed", bt is not None and bt["s"] == "BTCUSDT" and float(bt["b"]) < float(bt["a"]), bt)
        at = inbox.wait_for(lambda m: m.get("e") == "aggTrade")
        check("aggTrade streamed", at is not None and at["s"] == "BTCUSDT", at)

        m = client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.01, newOrderRespType="RESULT",
                             newClientOrderId="py-market-1")
        check("market filled", m["status"] == "FILLED" and m["executedQty"] == "0.010", m)
        filled = inbox.wait_for(lambda x: x.get("e") == "ORDER_TRADE_UPDATE" and x["o"]["i"] == m["orderId"]
                                and x["o"]["X"] == "FILLED")
        check("ORDER_TRADE_UPDATE fill", filled is not None and filled["o"]["c"] == "py-market-1"
              and filled["o"]["x"] == "TRADE" and filled["o"]["N"] == "USDT", filled)
        au = inbox.wait_for(lambda x: x.get("e") == "ACCOUNT_UPDATE")
        check("ACCOUNT_UPDATE", au is not None and au["a"]["P"][0]["pa"] == "0.01", au)
        risk = client.get_position_risk(symbol="BTCUSDT")
        check("positionRisk agrees", risk[0]["positionAmt"] == "0.01" and risk[0]["entryPrice"] == au["a"]["P"][0]["ep"], risk)
        acct = client.account()
        pos = [p for p in acct["positions"] if p["symbol"] == "BTCUSDT"][0]
        check("account agrees", pos["positionAmt"] == "0.01" and float(acct["totalWalletBalance"]) < 10000, pos)
        close = client.new_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=0.01, reduceOnly="true",
                                 newOrderRespType="RESULT")
        check("reduceOnly close", close["status"] == "FILLED", close)
        flat = client.get_position_risk(symbol="BTCUSDT")
        check("flat again", flat == [] or flat[0]["positionAmt"] == "0", flat)
        check("listenKey keepalive", client.renew_listen_key(listen_key).get("listenKey") == listen_key)
    finally:
        ws.stop()

    combined = Inbox()
    ws2 = UMFuturesWebsocketClient(stream_url=ws_url, is_combined=True, on_message=combined.put)
    try:
        ws2.diff_book_depth(symbol="btcusdt", speed=100, id=21)
        d = combined.wait_for(lambda m: m.get("stream") == "btcusdt@depth@100ms")
        check("combined depth", d is not None and d["data"]["e"] == "depthUpdate"
              and d["data"]["pu"] < d["data"]["u"], d)
    finally:
        ws2.stop()

    routed = websocket.create_connection(ws_url + "/public/ws/btcusdt@bookTicker", timeout=10)
    try:
        msg = json.loads(routed.recv())
        check("routed /public bookTicker", msg["e"] == "bookTicker", msg)
    finally:
        routed.close()
    private = websocket.create_connection(ws_url + "/private/ws?listenKey=" + listen_key, timeout=10)
    try:
        o = client.new_order(symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=0.01,
                             price=2900, newClientOrderId="py-private-1")
        ev = json.loads(private.recv())
        check("private stream event", ev["e"] == "ORDER_TRADE_UPDATE" and ev["o"]["c"] == "py-private-1"
              and ev["o"]["X"] == "NEW", ev)
        client.cancel_order(symbol="ETHUSDT", orderId=o["orderId"])
    finally:
        private.close()
    client.close_listen_key(listen_key)
    expect_error("closed listenKey -1125", lambda: client.renew_listen_key(listen_key), 400, -1125)


def ed25519_checks(base_url, ws_url):
    """Ed25519 signed by pycryptodome: a REST request and a WebSocket API session."""
    key = ECC.generate(curve="ed25519")
    api_key = "PyEd" * 16
    entry = {"api_key": api_key, "account": "python-ed", "ed25519_public_key": key.public_key().export_key(format="PEM")}
    r = requests.post(base_url + "/admin/keys", json=entry, timeout=10)
    check("admin adds Ed25519 key", r.status_code == 200, r.text)
    signer = eddsa.new(key, "rfc8032")

    def sign(payload):
        return base64.b64encode(signer.sign(payload.encode())).decode()

    query = f"timestamp={int(time.time() * 1000)}"
    url = f"{base_url}/fapi/v2/account?{query}&signature={urllib.parse.quote(sign(query), safe='')}"
    r = requests.get(url, headers={"X-MBX-APIKEY": api_key}, timeout=10)
    check("Ed25519 REST", r.status_code == 200 and "totalWalletBalance" in r.json(), r.text)

    ws = websocket.create_connection(ws_url + "/ws-fapi/v1", timeout=10)
    try:
        params = {"apiKey": api_key, "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = sign(payload)
        ws.send(json.dumps({"id": "logon-1", "method": "session.logon", "params": params}))
        r = json.loads(ws.recv())
        check("WS API logon", r["id"] == "logon-1" and r["status"] == 200 and r["result"]["apiKey"] == api_key, r)
        ws.send(json.dumps({"id": 2, "method": "order.place", "params": {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
            "price": "58000", "newClientOrderId": "py-wsapi-1", "timestamp": int(time.time() * 1000)}}))
        r = json.loads(ws.recv())
        check("WS API order.place", r["status"] == 200 and r["result"]["status"] == "NEW"
              and any(x["rateLimitType"] == "ORDERS" for x in r["rateLimits"]), r)
        oid = r["result"]["orderId"]
        ws.send(json.dumps({"id": 3, "method": "order.status", "params": {
            "symbol": "BTCUSDT", "orderId": oid, "timestamp": int(time.time() * 1000)}}))
        r = json.loads(ws.recv())
        check("WS API order.status", r["status"] == 200 and r["result"]["clientOrderId"] == "py-wsapi-1", r)
        ws.send(json.dumps({"id": 4, "method": "order.cancel", "params": {
            "symbol": "BTCUSDT", "origClientOrderId": "py-wsapi-1", "timestamp": int(time.time() * 1000)}}))
        r = json.loads(ws.recv())
        check("WS API order.cancel", r["status"] == 200 and r["result"]["status"] == "CANCELED", r)
        ws.send(json.dumps({"id": 5, "method": "order.cancel", "params": {
            "symbol": "BTCUSDT", "origClientOrderId": "py-wsapi-1", "timestamp": int(time.time() * 1000)}}))
        r = json.loads(ws.recv())
        check("WS API error shape", r["status"] == 400 and r["error"]["code"] == -2011, r)
    finally:
        ws.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--ws-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--secret", required=True)
    a = ap.parse_args()
    client = UMFutures(key=a.api_key, secret=a.secret, base_url=a.base_url, timeout=10)
    rest_checks(client)
    stream_checks(client, a.ws_url)
    ed25519_checks(a.base_url, a.ws_url)
    print(f"{len(PASSED)} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
