//! Zero-allocation parser of WebSocket-API answers (`order.place`, `order.cancel`, `order.status`,
//! `session.logon`, spot's `order.cancelReplace`): the fields order entry acts on, read from the frame's bytes
//! in one pass, without building a JSON tree. Unknown keys and the rest of `result` are skipped with a
//! bounded-depth structural scan; the error message is kept as a slice of the input.
//!
//! ```text
//! {"id":7,"status":200,"result":{"orderId":1,"status":"NEW",…},"rateLimits":[{"rateLimitType":"ORDERS",
//!  "interval":"SECOND","intervalNum":10,"limit":300,"count":1},…]}
//! {"id":7,"status":400,"error":{"code":-2013,"msg":"Order does not exist.","data":{"retryAfter":…}}}
//! ```
//!
//! A spot `order.cancelReplace` answers with both legs: in `result` when both succeeded (200), in
//! `error.data` when one failed (409, -2021) or both did (400, -2022). The new order's leg is read into
//! [`Answer::new_order`]: it decides the fate of the order it places, whatever happened to the cancel.
//!
//! ```text
//! {"id":9,"status":409,"error":{"code":-2021,"msg":"Order cancel-replace partially failed.","data":{
//!  "cancelResult":"FAILURE","newOrderResult":"SUCCESS","cancelResponse":{"code":-2011,…},
//!  "newOrderResponse":{"orderId":12569099453,…}}}}
//! ```

/// Most `rateLimits` entries kept (Binance sends up to three; more are counted in [`Answer::limits_dropped`]).
pub const MAX_LIMITS: usize = 4;

/// Deepest nesting accepted inside a skipped value.
const MAX_DEPTH: usize = 16;

/// Which `rateLimits` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `ORDERS`.
    Orders,
    /// `REQUEST_WEIGHT`.
    RequestWeight,
}

impl LimitKind {
    /// Binance's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "ORDERS",
            Self::RequestWeight => "REQUEST_WEIGHT",
        }
    }
}

/// One `rateLimits` entry order entry acts on (others, and malformed ones, are skipped, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitUse {
    /// `ORDERS` or `REQUEST_WEIGHT`.
    pub kind: LimitKind,
    /// Window length (`intervalNum` × `interval`), ms; never zero.
    pub window_ms: u64,
    /// `limit`.
    pub limit: u64,
    /// `count`.
    pub count: u64,
}

/// How one leg of a cancel-replace went (`cancelResult` / `newOrderResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegResult {
    /// `SUCCESS`.
    Success,
    /// `FAILURE`: the leg's response holds the code.
    Failure,
    /// `NOT_ATTEMPTED` (`STOP_ON_FAILURE` after a failed cancel; the bot sends `ALLOW_FAILURE`).
    NotAttempted,
}

/// The new-order leg of a cancel-replace answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrderLeg {
    /// `newOrderResult`.
    pub result: LegResult,
    /// `newOrderResponse.orderId` (a placed order).
    pub order_id: Option<u64>,
    /// `newOrderResponse.code` (a refused one, e.g. -2010 when the stop already sold the balance).
    pub code: Option<i32>,
}

/// What an answer says. Absent fields are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer<'a> {
    /// `id`; `None` also for `"id":null` (an unsolicited message, e.g. a key revoked mid-session).
    pub id: Option<u64>,
    /// `status` (HTTP-like).
    pub status: Option<u16>,
    /// `result.orderId`.
    pub order_id: Option<u64>,
    /// `error.code`.
    pub code: Option<i32>,
    /// `error.msg`, as it appears between the quotes (escapes untouched).
    pub msg: &'a [u8],
    /// `error.data.retryAfter` (epoch ms).
    pub retry_after_ms: Option<u64>,
    /// A cancel-replace's new-order leg (`newOrderResult` in `result` or `error.data`); `None` for other
    /// answers.
    pub new_order: Option<NewOrderLeg>,
    /// A cancel-replace's `cancelResult`.
    pub cancel_result: Option<LegResult>,
    limits: [Option<LimitUse>; MAX_LIMITS],
    /// `rateLimits` entries past [`MAX_LIMITS`].
    pub limits_dropped: u32,
}

impl<'a> Answer<'a> {
    /// The `ORDERS` / `REQUEST_WEIGHT` entries of `rateLimits`, in order.
    pub fn limits(&self) -> impl Iterator<Item = LimitUse> + '_ {
        self.limits.iter().flatten().copied()
    }
}

/// Why an answer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not well-formed JSON at this byte offset (or ends early).
    #[error("malformed WebSocket API answer at byte {0}")]
    Syntax(usize),
    /// Nested deeper than the parser follows.
    #[error("WebSocket API answer nested too deeply")]
    TooDeep,
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

type R<T> = Result<T, AnswerError>;

impl<'a> P<'a> {
    fn err<T>(&self) -> R<T> {
        Err(AnswerError::Syntax(self.i))
    }

    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    /// A string's raw content (between the quotes, escapes untouched).
    fn string(&mut self) -> R<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(&self.b[start..self.i - 1]);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        self.err()
    }

    /// A JSON number's bytes.
    fn number(&mut self) -> R<&'a [u8]> {
        self.ws();
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return self.err();
        }
        Ok(&self.b[start..self.i])
    }

    fn literal(&mut self, lit: &[u8]) -> R<()> {
        self.ws();
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err()
        }
    }

    fn skip(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(AnswerError::TooDeep);
        }
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.object(depth, |p, _, d| p.skip(d)),
            Some(b'[') => self.array(depth, |p, d| p.skip(d)),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => self.number().map(|_| ()),
            None => self.err(),
        }
    }

    /// Walks an object, handing each key to `f` (which must consume the value).
    fn object(
        &mut self,
        depth: usize,
        mut f: impl FnMut(&mut Self, &'a [u8], usize) -> R<()>,
    ) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(AnswerError::TooDeep);
        }
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let k = self.string()?;
            self.eat(b':')?;
            f(self, k, depth + 1)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    fn array(&mut self, depth: usize, mut f: impl FnMut(&mut Self, usize) -> R<()>) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(AnswerError::TooDeep);
        }
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            f(self, depth + 1)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    /// An unsigned integer value, or `None` when the value is something else (skipped).
    fn opt_uint(&mut self, depth: usize) -> R<Option<u64>> {
        match self.peek() {
            Some(b'0'..=b'9') => Ok(uint(self.number()?)),
            _ => self.skip(depth).map(|_| None),
        }
    }

    /// A signed integer value, or `None` when the value is something else (skipped).
    fn opt_int(&mut self, depth: usize) -> R<Option<i64>> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                Ok(match n.split_first() {
                    Some((b'-', rest)) => {
                        uint(rest).and_then(|v| i64::try_from(v).ok()).map(|v| -v)
                    }
                    _ => uint(n).and_then(|v| i64::try_from(v).ok()),
                })
            }
            _ => self.skip(depth).map(|_| None),
        }
    }

    /// A string value, or `None` when the value is something else (skipped).
    fn opt_str(&mut self, depth: usize) -> R<Option<&'a [u8]>> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            _ => self.skip(depth).map(|_| None),
        }
    }
}

fn uint(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

fn limit_entry(p: &mut P<'_>, depth: usize) -> R<Option<LimitUse>> {
    let (mut kind, mut unit, mut num, mut limit, mut count) = (None, None, None, None, None);
    let mut skip_entry = false;
    p.object(depth, |p, k, d| {
        match k {
            b"rateLimitType" => match p.opt_str(d)? {
                Some(b"ORDERS") => kind = Some(LimitKind::Orders),
                Some(b"REQUEST_WEIGHT") => kind = Some(LimitKind::RequestWeight),
                _ => skip_entry = true,
            },
            b"interval" => match p.opt_str(d)? {
                Some(b"SECOND") => unit = Some(1000u64),
                Some(b"MINUTE") => unit = Some(60_000),
                Some(b"HOUR") => unit = Some(3_600_000),
                Some(b"DAY") => unit = Some(86_400_000),
                _ => skip_entry = true,
            },
            b"intervalNum" => num = p.opt_uint(d)?,
            b"limit" => limit = p.opt_uint(d)?,
            b"count" => count = p.opt_uint(d)?,
            _ => p.skip(d)?,
        }
        Ok(())
    })?;
    if skip_entry {
        return Ok(None);
    }
    let (Some(kind), Some(unit), Some(num), Some(limit), Some(count)) =
        (kind, unit, num, limit, count)
    else {
        return Ok(None);
    };
    let window_ms = num.checked_mul(unit).filter(|w| *w > 0);
    Ok(window_ms.map(|window_ms| LimitUse {
        kind,
        window_ms,
        limit,
        count,
    }))
}

fn leg_result(v: Option<&[u8]>) -> Option<LegResult> {
    match v? {
        b"SUCCESS" => Some(LegResult::Success),
        b"FAILURE" => Some(LegResult::Failure),
        b"NOT_ATTEMPTED" => Some(LegResult::NotAttempted),
        _ => None,
    }
}

/// The cancel-replace fields of `result` or `error.data`, gathered in any key order.
#[derive(Default)]
struct Legs {
    cancel: Option<LegResult>,
    new: Option<LegResult>,
    new_order_id: Option<u64>,
    new_code: Option<i32>,
}

impl Legs {
    /// Reads `k` when it is a cancel-replace field; false when it is not (the caller reads or skips it).
    fn read(&mut self, p: &mut P<'_>, k: &[u8], d: usize) -> R<bool> {
        match k {
            b"cancelResult" => self.cancel = leg_result(p.opt_str(d)?),
            b"newOrderResult" => self.new = leg_result(p.opt_str(d)?),
            // An object when placed (`orderId`) or refused (`code`, `msg`), `null` when not attempted.
            b"newOrderResponse" if p.peek() == Some(b'{') => p.object(d, |p, k, d| {
                match k {
                    b"orderId" => self.new_order_id = p.opt_uint(d)?,
                    b"code" => self.new_code = p.opt_int(d)?.and_then(|c| i32::try_from(c).ok()),
                    _ => p.skip(d)?,
                }
                Ok(())
            })?,
            // `cancelResponse` is skipped whole: its `orderId` is the cancelled stop's, not the new order's.
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn into_answer(self, a: &mut Answer<'_>) {
        if self.cancel.is_some() {
            a.cancel_result = self.cancel;
        }
        if let Some(result) = self.new {
            a.new_order = Some(NewOrderLeg {
                result,
                order_id: self.new_order_id,
                code: self.new_code,
            });
        }
    }
}

/// Reads one answer frame. Never allocates.
pub fn parse(b: &[u8]) -> Result<Answer<'_>, AnswerError> {
    let mut a = Answer::default();
    let mut p = P { b, i: 0 };
    let mut nlimits = 0usize;
    p.object(0, |p, k, d| {
        match k {
            b"id" => a.id = p.opt_uint(d)?,
            b"status" => a.status = p.opt_uint(d)?.and_then(|s| u16::try_from(s).ok()),
            b"result" if p.peek() == Some(b'{') => {
                let mut legs = Legs::default();
                p.object(d, |p, k, d| {
                    match k {
                        b"orderId" => a.order_id = p.opt_uint(d)?,
                        _ if legs.read(p, k, d)? => {}
                        _ => p.skip(d)?,
                    }
                    Ok(())
                })?;
                legs.into_answer(&mut a);
            }
            b"error" if p.peek() == Some(b'{') => p.object(d, |p, k, d| {
                match k {
                    b"code" => a.code = p.opt_int(d)?.and_then(|c| i32::try_from(c).ok()),
                    b"msg" => a.msg = p.opt_str(d)?.unwrap_or(b""),
                    b"data" if p.peek() == Some(b'{') => {
                        let mut legs = Legs::default();
                        p.object(d, |p, k, d| {
                            match k {
                                b"retryAfter" => a.retry_after_ms = p.opt_uint(d)?,
                                _ if legs.read(p, k, d)? => {}
                                _ => p.skip(d)?,
                            }
                            Ok(())
                        })?;
                        legs.into_answer(&mut a);
                    }
                    _ => p.skip(d)?,
                }
                Ok(())
            })?,
            b"rateLimits" if p.peek() == Some(b'[') => p.array(d, |p, d| {
                if p.peek() != Some(b'{') {
                    return p.skip(d);
                }
                if let Some(l) = limit_entry(p, d)? {
                    match a.limits.get_mut(nlimits) {
                        Some(slot) => {
                            *slot = Some(l);
                            nlimits += 1;
                        }
                        None => a.limits_dropped += 1,
                    }
                }
                Ok(())
            })?,
            _ => p.skip(d)?,
        }
        Ok(())
    })?;
    Ok(a)
}

/// The epoch ms in a ban message (`… IP banned until 1700000000000 …`), for 418s without `data.retryAfter`.
pub fn banned_until(msg: &[u8]) -> Option<u64> {
    const NEEDLE: &[u8] = b"banned until ";
    let at = msg.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let rest = &msg[at..];
    let end = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    uint(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(interval: &str, num: &str, limit: &str, count: &str) -> String {
        format!(
            r#"{{"rateLimitType":"ORDERS","interval":"{interval}","intervalNum":{num},"limit":{limit},"count":{count}}}"#
        )
    }

    #[test]
    fn an_acknowledgement_with_its_rate_limits() {
        let text = format!(
            r#"{{"id":7,"status":200,"result":{{"orderId":325078477,"symbol":"BTCUSDT","status":"NEW","clientOrderId":"ag1-2","price":"0.0","nested":{{"a":[1,2,{{"b":null}}]}},"reduceOnly":false}},"rateLimits":[{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":12}},{o},{m},{{"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":1,"limit":1,"count":1}},{{"rateLimitType":"ORDERS","interval":"FORTNIGHT","intervalNum":1,"limit":1,"count":1}},{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":"300","count":1}},{z}]}}"#,
            o = orders("SECOND", "10", "300", "4"),
            m = orders("MINUTE", "1", "1200", "9"),
            z = orders("SECOND", "0", "1", "1"),
        );
        let a = parse(text.as_bytes()).unwrap();
        assert_eq!(
            (a.id, a.status, a.order_id, a.code),
            (Some(7), Some(200), Some(325078477), None)
        );
        let want = |kind, window_ms, limit, count| LimitUse {
            kind,
            window_ms,
            limit,
            count,
        };
        // Not ours, malformed or a zero window: skipped, never fatal.
        assert_eq!(
            a.limits().collect::<Vec<_>>(),
            vec![
                want(LimitKind::RequestWeight, 60_000, 2400, 12),
                want(LimitKind::Orders, 10_000, 300, 4),
                want(LimitKind::Orders, 60_000, 1200, 9),
            ]
        );
    }

    #[test]
    fn errors_unsolicited_messages_and_bans() {
        let a = parse(br#"{"id":3,"status":400,"error":{"code":-2013,"msg":"Order does not exist."},"rateLimits":[]}"#).unwrap();
        assert_eq!((a.id, a.status, a.code), (Some(3), Some(400), Some(-2013)));
        assert_eq!(a.msg, b"Order does not exist.");
        let a = parse(br#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#).unwrap();
        assert_eq!((a.id, a.status, a.code), (None, Some(401), Some(-2015)));
        let a = parse(br#"{"id":9,"status":429,"error":{"code":-1003,"msg":"Too many \"requests\".","data":{"serverTime":1,"retryAfter":1700000005000}}}"#).unwrap();
        assert_eq!(a.retry_after_ms, Some(1_700_000_005_000));
        assert_eq!(a.msg, br#"Too many \"requests\"."#);
        let a = parse(br#"{"id":9,"status":418,"error":{"code":-1003,"msg":"Way too many requests; IP banned until 1700000120000. Please use the websocket."}}"#).unwrap();
        assert_eq!(banned_until(a.msg), Some(1_700_000_120_000));
        assert_eq!(banned_until(b"no ban"), None);
    }

    const LIMITS: &str = r#""rateLimits":[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50,"count":1},{"rateLimitType":"ORDERS","interval":"DAY","intervalNum":1,"limit":160000,"count":1},{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1200,"count":1}]"#;

    /// The three shapes of a spot `order.cancelReplace` answer, as Binance's WebSocket-API documentation shows
    /// them (ids made numeric: the bot's request ids are integers). The new-order leg is read wherever it is;
    /// the cancelled order's `orderId` never passes for the new order's.
    #[test]
    fn cancel_replace_answers_in_all_three_shapes() {
        let cancel_ok = r#"{"symbol":"BTCUSDT","origClientOrderId":"4d96324ff9d44481926157","orderId":125690984230,"orderListId":-1,"clientOrderId":"91fe37ce9e69c90d6358c0","price":"23450.00000000","origQty":"0.00847000","executedQty":"0.00001000","cummulativeQuoteQty":"0.23450000","status":"CANCELED","timeInForce":"GTC","type":"LIMIT","side":"SELL","selfTradePreventionMode":"NONE"}"#;
        let new_ok = r#"{"symbol":"BTCUSDT","orderId":12569099453,"orderListId":-1,"clientOrderId":"bX5wROblo6YeDwa9iTLeyY","transactTime":1660813156959,"price":"23416.10000000","origQty":"0.00847000","executedQty":"0.00000000","cummulativeQuoteQty":"0.00000000","status":"NEW","timeInForce":"GTC","type":"LIMIT","side":"SELL","workingTime":1669693344508,"fills":[],"selfTradePreventionMode":"NONE"}"#;
        // Both succeeded: 200 with the legs in `result`.
        let ok = format!(
            r#"{{"id":1,"status":200,"result":{{"cancelResult":"SUCCESS","newOrderResult":"SUCCESS","cancelResponse":{cancel_ok},"newOrderResponse":{new_ok}}},{LIMITS}}}"#
        );
        let a = parse(ok.as_bytes()).unwrap();
        assert_eq!(
            (a.id, a.status, a.code, a.order_id),
            (Some(1), Some(200), None, None)
        );
        assert_eq!(a.cancel_result, Some(LegResult::Success));
        assert_eq!(
            a.new_order,
            Some(NewOrderLeg {
                result: LegResult::Success,
                order_id: Some(12569099453),
                code: None
            })
        );
        assert_eq!(a.limits().count(), 3);
        // The stop had triggered (unknown to cancel), the exit was placed: 409, -2021, data.
        let part = format!(
            r#"{{"id":2,"status":409,"error":{{"code":-2021,"msg":"Order cancel-replace partially failed.","data":{{"cancelResult":"FAILURE","newOrderResult":"SUCCESS","cancelResponse":{{"code":-2011,"msg":"Unknown order sent."}},"newOrderResponse":{new_ok}}}}},{LIMITS}}}"#
        );
        let a = parse(part.as_bytes()).unwrap();
        assert_eq!((a.status, a.code), (Some(409), Some(-2021)));
        assert_eq!(a.msg, b"Order cancel-replace partially failed.");
        assert_eq!(a.cancel_result, Some(LegResult::Failure));
        assert_eq!(
            a.new_order,
            Some(NewOrderLeg {
                result: LegResult::Success,
                order_id: Some(12569099453),
                code: None
            })
        );
        // The cancel went through, the exit was refused: 409, -2021, the new order's own code.
        let refused = format!(
            r#"{{"id":3,"status":409,"error":{{"code":-2021,"msg":"Order cancel-replace partially failed.","data":{{"cancelResult":"SUCCESS","newOrderResult":"FAILURE","cancelResponse":{cancel_ok},"newOrderResponse":{{"code":-2010,"msg":"Order would immediately match and take."}}}}}},{LIMITS}}}"#
        );
        let a = parse(refused.as_bytes()).unwrap();
        assert_eq!(a.cancel_result, Some(LegResult::Success));
        assert_eq!(
            a.new_order,
            Some(NewOrderLeg {
                result: LegResult::Failure,
                order_id: None,
                code: Some(-2010)
            })
        );
        // Both failed: 400, -2022, data.
        let both = format!(
            r#"{{"id":4,"status":400,"error":{{"code":-2022,"msg":"Order cancel-replace failed.","data":{{"cancelResult":"FAILURE","newOrderResult":"FAILURE","cancelResponse":{{"code":-2011,"msg":"Unknown order sent."}},"newOrderResponse":{{"code":-2010,"msg":"Order would immediately match and take."}}}}}},{LIMITS}}}"#
        );
        let a = parse(both.as_bytes()).unwrap();
        assert_eq!((a.status, a.code), (Some(400), Some(-2022)));
        assert_eq!(
            a.new_order,
            Some(NewOrderLeg {
                result: LegResult::Failure,
                order_id: None,
                code: Some(-2010)
            })
        );
        // STOP_ON_FAILURE's shape (not what the bot sends, still read): the new order was never attempted.
        let not = r#"{"id":5,"status":400,"error":{"code":-2022,"msg":"Order cancel-replace failed.","data":{"cancelResult":"FAILURE","newOrderResult":"NOT_ATTEMPTED","cancelResponse":{"code":-2011,"msg":"Unknown order sent."},"newOrderResponse":null}}}"#;
        let a = parse(not.as_bytes()).unwrap();
        assert_eq!(
            a.new_order,
            Some(NewOrderLeg {
                result: LegResult::NotAttempted,
                order_id: None,
                code: None
            })
        );
        // Other answers have no legs.
        let a = parse(br#"{"id":6,"status":200,"result":{"orderId":7}}"#).unwrap();
        assert_eq!(
            (a.new_order, a.cancel_result, a.order_id),
            (None, None, Some(7))
        );
    }

    #[test]
    fn malformed_or_too_deep_answers_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"id\":",
            b"{\"id\":1,}",
            b"[1]",
            b"{\"id\":1 \"status\":2}",
            b"{\"result\":{\"orderId\":\"x",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse(deep.as_bytes()), Err(AnswerError::TooDeep));
        // Whitespace anywhere JSON allows it.
        let a = parse(b" { \"id\" : 4 , \"status\" : 200 } ").unwrap();
        assert_eq!((a.id, a.status), (Some(4), Some(200)));
    }
}
