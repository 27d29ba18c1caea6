// book.js: exact order books for the quotebus web page (no DOM, no I/O;
// also imported by tests/browser/test_book.mjs under node).
//
// Prices and sizes arrive as exact decimal strings ("100.50", "0.00000000")
// and never become JavaScript numbers here: a double cannot hold every
// decimal exactly, and two prices that differ in the 17th digit must stay two
// levels. Each side of a book is a Map from a canonical price key (leading
// zeros of the integer part and trailing zeros of the fraction removed, so
// "100.50" and "100.5" are the same level, as PROTOCOL.md 4.2 says) to the
// level, plus an array of those keys kept sorted best first by an exact
// string comparator (binary search to insert and delete). Sums (cumulative
// depth, spread) use BigInt fixed point. Numbers are produced only for
// display-only things such as the width of a size bar.
//
// Sequence rules (PROTOCOL.md section 6): a snapshot (refresh or not,
// conflated or not) replaces the book and sets expected = seq + 1; a delta
// applies only when seq == expected; any other delta means messages were
// lost: the book is discarded and stays invalid until the next snapshot.
//
// Display precision: no quotebus message carries an instrument's tick or
// lot size (the adapters do not fetch the exchanges' instrument data), so
// each Book learns them as the largest number of significant decimals seen
// in its prices and in its sizes (Binance writes "60036.66000000": 2 price
// decimals; "0.00123000": 5 size decimals), over every level and trade of
// the instrument, never decreasing. decFormat() then writes every value of
// that instrument with exactly that many decimals, which only adds or
// removes zeros: what is shown is still the exact value.

const DEC_RE = /^-?(\d+)(?:\.(\d+))?$/;

// Canonical key of a decimal string: "0100.500" -> "100.5", "1.000" -> "1",
// "0.0" -> "0", "-0.10" -> "-0.1". Returns null when s is not a plain decimal.
export function decKey(s) {
    if (typeof s !== 'string') {
        return null;
    }
    const m = DEC_RE.exec(s);
    if (m === null) {
        return null;
    }
    let int = m[1].replace(/^0+(?=\d)/, '');
    let frac = (m[2] || '').replace(/0+$/, '');
    const neg = s[0] === '-' && (int !== '0' || frac !== '');
    return (neg ? '-' : '') + int + (frac ? '.' + frac : '');
}

// Compares two canonical keys of NON-NEGATIVE decimals exactly: <0, 0, >0.
// Longer integer part is bigger; equal lengths compare digit by digit; then
// the fractions compare lexicographically (exact because canonical
// fractions have no trailing zeros: "5" vs "45" -> '5' > '4').
export function keyCmp(a, b) {
    const ia = a.indexOf('.');
    const ib = b.indexOf('.');
    const la = ia < 0 ? a.length : ia;
    const lb = ib < 0 ? b.length : ib;
    if (la !== lb) {
        return la - lb;
    }
    const ipa = a.slice(0, la);
    const ipb = b.slice(0, lb);
    if (ipa !== ipb) {
        return ipa < ipb ? -1 : 1;
    }
    const fa = ia < 0 ? '' : a.slice(ia + 1);
    const fb = ib < 0 ? '' : b.slice(ib + 1);
    if (fa === fb) {
        return 0;
    }
    return fa < fb ? -1 : 1;
}

// Compares two decimal strings of any sign exactly (BigInt fixed point).
export function decCmp(a, b) {
    const x = toFixed(a);
    const y = toFixed(b);
    const scale = Math.max(x.scale, y.scale);
    const u = x.m * 10n ** BigInt(scale - x.scale);
    const v = y.m * 10n ** BigInt(scale - y.scale);
    return u < v ? -1 : u > v ? 1 : 0;
}

// "12.340" -> {m: 12340n, scale: 3}. Throws on a malformed decimal.
export function toFixed(s) {
    const m = DEC_RE.exec(s);
    if (m === null) {
        throw new Error('not a decimal: ' + s);
    }
    const frac = m[2] || '';
    let v = BigInt(m[1] + frac);
    if (s[0] === '-') {
        v = -v;
    }
    return { m: v, scale: frac.length };
}

// BigInt fixed point -> plain decimal text with exactly `scale` decimals.
export function fromFixed(m, scale) {
    const neg = m < 0n;
    let digits = (neg ? -m : m).toString();
    if (scale > 0) {
        digits = digits.padStart(scale + 1, '0');
        digits = digits.slice(0, digits.length - scale) + '.' + digits.slice(digits.length - scale);
    }
    return (neg ? '-' : '') + digits;
}

// Number of significant decimals of a decimal string (trailing zeros of
// the fraction do not count): "60036.66000000" -> 2, "100" -> 0; -1 when s
// is not a plain decimal.
export function decDigits(s) {
    const k = decKey(s);
    if (k === null) {
        return -1;
    }
    const dot = k.indexOf('.');
    return dot < 0 ? 0 : k.length - dot - 1;
}

// s written with exactly `scale` decimals ("60036.66000000", 2 ->
// "60036.66"; "3001.5", 2 -> "3001.50"). Never rounds: when s has more
// significant decimals than scale it keeps them all (exact beats aligned).
// Returns s unchanged when it is not a plain decimal.
export function decFormat(s, scale) {
    const k = decKey(s);
    if (k === null) {
        return s;
    }
    const dot = k.indexOf('.');
    const int = dot < 0 ? k : k.slice(0, dot);
    const frac = dot < 0 ? '' : k.slice(dot + 1);
    const n = Math.max(scale, frac.length);
    return n > 0 ? int + '.' + frac.padEnd(n, '0') : int;
}

// The display precision of one instrument: the most significant decimals
// seen in its prices (px) and sizes (qty). Only grows.
export class Precision {
    constructor() {
        this.px = 0;
        this.qty = 0;
    }

    see(px, qty) {
        const p = decDigits(px);
        const q = decDigits(qty);
        if (p > this.px) {
            this.px = p;
        }
        if (q > this.qty) {
            this.qty = q;
        }
    }
}

// Exact a - b of two decimal strings, with the larger of their scales.
export function decSub(a, b) {
    const x = toFixed(a);
    const y = toFixed(b);
    const scale = Math.max(x.scale, y.scale);
    return fromFixed(x.m * 10n ** BigInt(scale - x.scale) - y.m * 10n ** BigInt(scale - y.scale),
                     scale);
}

// Running exact sum of decimal strings (cumulative depth).
export class DecSum {
    constructor() {
        this.m = 0n;
        this.scale = 0;
    }

    add(s) {
        const x = toFixed(s);
        if (x.scale > this.scale) {
            this.m *= 10n ** BigInt(x.scale - this.scale);
            this.scale = x.scale;
        }
        this.m += x.m * 10n ** BigInt(this.scale - x.scale);
        return this;
    }

    toString() {
        return fromFixed(this.m, this.scale);
    }
}

// One side of a book: levels by canonical price, keys sorted best first.
export class Side {
    // desc: true for bids (highest price first), false for asks.
    // precision: a Precision that every level set here updates (optional).
    constructor(desc, precision = null) {
        this.desc = desc;
        this.levels = new Map();   // key -> {px, qty} (the strings as received)
        this.keys = [];            // canonical keys, best first
        this.precision = precision;
    }

    clear() {
        this.levels.clear();
        this.keys = [];
    }

    get size() {
        return this.keys.length;
    }

    // Index of key in keys, or -(insertion point) - 1.
    find(key) {
        let lo = 0;
        let hi = this.keys.length - 1;
        while (lo <= hi) {
            const mid = (lo + hi) >> 1;
            let c = keyCmp(this.keys[mid], key);
            if (this.desc) {
                c = -c;
            }
            if (c < 0) {
                lo = mid + 1;
            } else if (c > 0) {
                hi = mid - 1;
            } else {
                return mid;
            }
        }
        return -lo - 1;
    }

    // Sets the absolute size at a price; size 0 deletes (absent: no-op).
    // Throws on a malformed level (the caller then invalidates the book).
    set(px, qty) {
        const key = decKey(px);
        const q = decKey(qty);
        if (key === null || q === null || key === '0' || key[0] === '-' || q[0] === '-') {
            throw new Error('bad level ' + JSON.stringify([px, qty]));
        }
        if (this.precision) {
            this.precision.see(px, qty);   // a deleted level's price still shows the tick
        }
        if (q === '0') {
            if (this.levels.delete(key)) {
                this.keys.splice(this.find(key), 1);
            }
            return;
        }
        if (!this.levels.has(key)) {
            const i = this.find(key);
            this.keys.splice(-i - 1, 0, key);
        }
        this.levels.set(key, { px, qty });
    }

    best() {
        return this.keys.length ? this.levels.get(this.keys[0]) : null;
    }

    // The best n levels: [{px, qty, cum}] with cum the exact running total.
    top(n) {
        const out = [];
        const sum = new DecSum();
        const k = Math.min(n, this.keys.length);
        for (let i = 0; i < k; i++) {
            const l = this.levels.get(this.keys[i]);
            out.push({ px: l.px, qty: l.qty, cum: sum.add(l.qty).toString() });
        }
        return out;
    }
}

// One instrument's book kept by the sequence rules.
export class Book {
    constructor(topic) {
        this.topic = topic;
        this.precision = new Precision();   // kept across snapshots and gaps
        this.bids = new Side(true, this.precision);
        this.asks = new Side(false, this.precision);
        this.valid = false;       // true between a snapshot and a gap
        this.expected = null;     // seq the next delta must have
        this.seq = null;          // seq of the last message applied
        this.everValid = false;   // a snapshot was seen at least once
        this.snapshots = 0;
        this.conflated = 0;
        this.deltas = 0;
        this.gaps = 0;
        this.lastMsgAt = 0;       // performance.now()/Date.now() of the last message
    }

    invalidate() {
        this.bids.clear();
        this.asks.clear();
        this.valid = false;
        this.expected = null;
    }

    // Applies one "snapshot" or "delta" message (the JSON form). Returns
    // 'snapshot', 'delta', 'ignored' (a delta while waiting for a
    // snapshot), 'gap' (a delta out of sequence: book discarded) or 'bad'
    // (a malformed level: book discarded until the next snapshot).
    apply(m) {
        if (m.type === 'snapshot') {
            this.bids.clear();
            this.asks.clear();
            try {
                for (const [px, qty] of m.bids) {
                    this.bids.set(px, qty);
                }
                for (const [px, qty] of m.asks) {
                    this.asks.set(px, qty);
                }
            } catch (e) {
                this.invalidate();
                return 'bad';
            }
            this.valid = true;
            this.everValid = true;
            this.seq = m.seq;
            this.expected = m.seq + 1;
            this.snapshots += 1;
            if (m.conflated) {
                this.conflated += 1;
            }
            return 'snapshot';
        }
        if (m.type !== 'delta') {
            return 'ignored';
        }
        if (!this.valid) {
            return 'ignored';
        }
        if (m.seq !== this.expected) {
            this.gaps += 1;
            this.invalidate();
            return 'gap';
        }
        try {
            for (const [px, qty] of m.bids) {
                this.bids.set(px, qty);
            }
            for (const [px, qty] of m.asks) {
                this.asks.set(px, qty);
            }
        } catch (e) {
            this.invalidate();
            return 'bad';
        }
        this.seq = m.seq;
        this.expected = m.seq + 1;
        this.deltas += 1;
        return 'delta';
    }

    bestBid() {
        return this.valid ? this.bids.best() : null;
    }

    bestAsk() {
        return this.valid ? this.asks.best() : null;
    }

    // Exact best ask - best bid, or null.
    spread() {
        const b = this.bestBid();
        const a = this.bestAsk();
        return b && a ? decSub(a.px, b.px) : null;
    }
}

// Consolidated best bid and ask over several exchanges' books of one pair:
// entries is [[exchange, Book], ...]; only valid books count. Returns
// {bid, ask}, each null or {px, qty, ex: [exchanges at that price]} (on a
// tie the first exchange's size is shown).
export function consolidate(entries) {
    let bid = null;
    let ask = null;
    for (const [ex, book] of entries) {
        if (!book || !book.valid) {
            continue;
        }
        const bb = book.bestBid();
        const ba = book.bestAsk();
        if (bb) {
            const c = bid ? decCmp(bb.px, bid.px) : 1;
            if (c > 0) {
                bid = { px: bb.px, qty: bb.qty, ex: [ex] };
            } else if (c === 0) {
                bid.ex.push(ex);
            }
        }
        if (ba) {
            const c = ask ? decCmp(ba.px, ask.px) : -1;
            if (c < 0) {
                ask = { px: ba.px, qty: ba.qty, ex: [ex] };
            } else if (c === 0) {
                ask.ex.push(ex);
            }
        }
    }
    return { bid, ask };
}

// Up to n topics of `topics` nearest to `topic` (one that does not exist),
// for "no such instrument; nearest: ...", by the rule the broker uses for
// the "nearest" of its subscribed reply (PROTOCOL.md section 12), so that
// both give the same answer: same kind only; a candidate ranks by which
// parts of it differ from the topic, weighing most to least the exchange,
// the symbol, the base ("BTC" of "BTC-USDT") and the quote, ASCII case
// ignored, an absent part differing from everything. So the same exchange
// comes first, then the same symbol elsewhere, then the same base, then the
// same quote; equal ranks in byte order.
export function nearestTopics(topic, topics, n = 5) {
    const parse = (t) => {
        const [kind, ex = '', sym = ''] = t.split('.');
        const dash = sym.indexOf('-');
        return {
            kind,
            ex: ex.toLowerCase(),
            sym: sym.toLowerCase(),
            base: dash < 0 ? '' : sym.slice(0, dash).toLowerCase(),
            quote: dash < 0 ? '' : sym.slice(dash + 1).toLowerCase(),
        };
    };
    const differ = (a, b) => (a === '' || a !== b ? 1 : 0);
    const want = parse(topic);
    const ranked = new Map();
    for (const t of topics) {
        const c = parse(t);
        if (c.kind !== want.kind || t === topic || ranked.has(t)) {
            continue;
        }
        ranked.set(t, (differ(c.ex, want.ex) << 3) | (differ(c.sym, want.sym) << 2) |
                      (differ(c.base, want.base) << 1) | differ(c.quote, want.quote));
    }
    return [...ranked.entries()]
        .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
        .slice(0, n)
        .map((e) => e[0]);
}
