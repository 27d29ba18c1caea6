// test_book.mjs: unit test of clients/web/book.js (the page's exact book)
// under node, no browser. Usage: node test_book.mjs
//
// Checks the decimal comparator and arithmetic against BigInt truth on
// random values, prices that a double cannot tell apart, the sequence rules
// (snapshot replaces, delta only when seq == expected, gap invalidates until
// the next snapshot, refresh and conflated snapshots), a random book
// against a reference model, the display precision (each instrument at the
// most decimals it has shown: decDigits, decFormat, Precision) and the
// nearest existing topics to a missing one.

import assert from 'node:assert/strict';
import { Book, DecSum, Precision, Side, consolidate, decCmp, decDigits, decFormat, decKey, decSub, keyCmp,
         nearestTopics } from '../../clients/web/book.js';

let checks = 0;
function eq(a, b, msg) {
    assert.deepEqual(a, b, msg);
    checks += 1;
}

// ---- decimals -------------------------------------------------------------
eq(decKey('100.50'), '100.5');
eq(decKey('0100.500'), '100.5');
eq(decKey('1.000'), '1');
eq(decKey('0.00000000'), '0');
eq(decKey('0.10'), '0.1');
eq(decKey('-0.0'), '0');
eq(decKey('-1.50'), '-1.5');
eq(decKey('1e5'), null);
eq(decKey('1.'), null);
eq(decKey('.5'), null);
eq(decKey(' 1'), null);
eq(decKey(5), null);

// These differ in the 17th significant digit: equal as doubles, not as decimals.
const a = '60036.190000000001';
const b = '60036.19';
eq(Number(a) === Number(b), true, 'doubles cannot tell them apart');
eq(keyCmp(decKey(a), decKey(b)) > 0, true);
eq(decCmp(a, b), 1);
eq(decCmp('100.5', '100.50'), 0);
eq(decCmp('99.999', '100'), -1);
eq(decCmp('-1', '0.5'), -1);
eq(decSub('60036.21000000', '60036.19000000'), '0.02000000');
eq(decSub('100', '100.5'), '-0.5');
eq(decSub('0.1', '0.0000000000000000000000001'), '0.0999999999999999999999999');
eq(new DecSum().add('0.1').add('0.2').toString(), '0.3');
eq(new DecSum().add('1').add('0.25').add('3.125').toString(), '4.375');

// keyCmp / decCmp against BigInt truth on random non-negative decimals.
function rnd(n) {
    return Math.floor(Math.random() * n);
}
function randDec() {
    const int = String(rnd(3) === 0 ? 0 : rnd(10 ** (1 + rnd(6))));
    const scale = rnd(10);
    let frac = '';
    for (let i = 0; i < scale; i++) {
        frac += String(rnd(10));
    }
    return scale ? int + '.' + frac : int;
}
function big(s, scale) {
    const [i, f = ''] = s.split('.');
    return BigInt(i + f.padEnd(scale, '0'));
}
for (let i = 0; i < 20000; i++) {
    const x = randDec();
    const y = rnd(4) === 0 ? x + (x.includes('.') ? '0' : '.00') : randDec();
    const truth = big(x, 12) < big(y, 12) ? -1 : big(x, 12) > big(y, 12) ? 1 : 0;
    const k = Math.sign(keyCmp(decKey(x), decKey(y)));
    if (k !== truth || decCmp(x, y) !== truth) {
        assert.fail(`compare ${x} ${y}: keyCmp ${k} decCmp ${decCmp(x, y)} truth ${truth}`);
    }
    checks += 1;
}

// ---- sides ----------------------------------------------------------------
const bids = new Side(true);
bids.set('100.50', '1');
bids.set('100.49', '2');
bids.set('100.5', '3');          // same level as 100.50
bids.set('101', '1.5');
bids.set('99.1', '0.00000000');  // deleting an absent level is fine
eq(bids.size, 3);
eq(bids.top(5).map((l) => [l.px, l.qty, l.cum]),
   [['101', '1.5', '1.5'], ['100.5', '3', '4.5'], ['100.49', '2', '6.5']]);
bids.set('100.500', '0');
eq(bids.keys, ['101', '100.49']);
assert.throws(() => bids.set('0', '1'));
assert.throws(() => bids.set('-1', '1'));
assert.throws(() => bids.set('1', '-1'));
assert.throws(() => bids.set('1e3', '1'));
checks += 4;

// ---- sequence rules -------------------------------------------------------
function snap(seq, bidsL, asksL, extra = {}) {
    return { type: 'snapshot', seq, bids: bidsL, asks: asksL, refresh: false, ...extra };
}
function delta(seq, bidsL, asksL) {
    return { type: 'delta', seq, bids: bidsL, asks: asksL };
}
const bk = new Book('book.binance.BTC-USDT');
eq(bk.apply(delta(5, [['1', '1']], [])), 'ignored', 'delta before any snapshot');
eq(bk.valid, false);
eq(bk.apply(snap(41, [['100.50', '1.25'], ['100.49', '3']], [['100.60', '0.5']])), 'snapshot');
eq(bk.bestBid(), { px: '100.50', qty: '1.25' });
eq(bk.spread(), '0.10');
eq(bk.apply(delta(42, [['100.50', '2']], [['100.60', '0.00000000']])), 'delta');
eq(bk.bestAsk(), null);
eq(bk.apply(snap(42, [['100.50', '2']], [['100.70', '1']], { refresh: true })), 'snapshot',
   'a refresh repeats the seq');
eq(bk.apply(delta(43, [], [['100.65', '1']])), 'delta');
eq(bk.bestAsk().px, '100.65');
eq(bk.apply(delta(45, [], [['100.64', '1']])), 'gap', 'seq 44 missing');
eq(bk.valid, false);
eq(bk.bestBid(), null);
eq(bk.bids.size + bk.asks.size, 0, 'book discarded after a gap');
eq(bk.apply(delta(46, [['1', '1']], [])), 'ignored', 'no deltas until the next snapshot');
eq(bk.apply(snap(50, [['100.1', '1']], [['100.2', '1']], { refresh: true, conflated: true })),
   'snapshot');
eq(bk.conflated, 1);
eq(bk.apply(delta(51, [['100.15', '1']], [])), 'delta');
eq(bk.bestBid().px, '100.15');
eq(bk.apply(delta(51, [['100.16', '1']], [])), 'gap', 'a repeated delta is out of sequence');
eq(bk.apply(snap(3, [['9', '1']], [['10', '1']])), 'snapshot', 'a snapshot rebases (restart)');
eq(bk.apply(delta(4, [['9', 'x']], [])), 'bad', 'malformed level');
eq(bk.valid, false);
eq(bk.gaps, 2);

// ---- random book against a reference model (Map of BigInt-scaled prices) ----
const book = new Book('t');
const ref = { bids: new Map(), asks: new Map() };
const px = () => (60000 + rnd(400) / 100).toFixed(2 + rnd(3));     // mixed scales, same values
const qty = () => (rnd(5) === 0 ? '0.000' : (rnd(100000) / 1e5).toFixed(5));
function refSet(side, p, q) {
    const k = big(p, 6).toString();
    if (big(q, 6) === 0n) {
        ref[side].delete(k);
    } else {
        ref[side].set(k, q);
    }
}
book.apply(snap(1, [], []));
let seq = 1;
for (let i = 0; i < 5000; i++) {
    const bl = [];
    const al = [];
    for (let j = 0; j < 1 + rnd(4); j++) {
        bl.push([px(), qty()]);
        al.push([px(), qty()]);
    }
    seq += 1;
    eq(book.apply(delta(seq, bl, al)), 'delta');
    for (const [p, q] of bl) {
        refSet('bids', p, q);
    }
    for (const [p, q] of al) {
        refSet('asks', p, q);
    }
}
const refBids = [...ref.bids.entries()].sort((x, y) => (BigInt(y[0]) > BigInt(x[0]) ? 1 : -1));
const refAsks = [...ref.asks.entries()].sort((x, y) => (BigInt(x[0]) > BigInt(y[0]) ? 1 : -1));
eq(book.bids.size, refBids.length);
eq(book.asks.size, refAsks.length);
eq(book.bids.top(1e9).map((l) => big(l.px, 6).toString() + ' ' + l.qty),
   refBids.map(([k, q]) => k + ' ' + q));
eq(book.asks.top(1e9).map((l) => big(l.px, 6).toString() + ' ' + l.qty),
   refAsks.map(([k, q]) => k + ' ' + q));

// ---- consolidated best bid/ask across exchanges ----------------------------
const bin = new Book('book.binance.BTC-USDT');
const htx = new Book('book.htx.BTC-USDT');
const bth = new Book('book.bithumb.BTC-USDT');
bin.apply(snap(1, [['60036.19', '1']], [['60036.25', '2']]));
htx.apply(snap(7, [['60036.2000', '0.5']], [['60036.250', '0.7']]));
eq(consolidate([['binance', bin], ['htx', htx], ['bithumb', bth]]),
   { bid: { px: '60036.2000', qty: '0.5', ex: ['htx'] },
     ask: { px: '60036.25', qty: '2', ex: ['binance', 'htx'] } }, 'tie on the ask');
htx.apply(delta(9, [], []));      // gap: htx no longer counts
eq(consolidate([['binance', bin], ['htx', htx]]).bid, { px: '60036.19', qty: '1', ex: ['binance'] });
eq(consolidate([['htx', htx]]), { bid: null, ask: null });

// ---- display precision ------------------------------------------------------
eq(decDigits('60036.66000000'), 2);
eq(decDigits('3001.5'), 1);
eq(decDigits('100'), 0);
eq(decDigits('0.00000000'), 0);
eq(decDigits('0.00123000'), 5);
eq(decDigits('x'), -1);
eq(decFormat('60036.66000000', 2), '60036.66');
eq(decFormat('3001.5', 2), '3001.50');
eq(decFormat('100', 2), '100.00');
eq(decFormat('100.5', 0), '100.5', 'never rounds: the exact value wins over the column');
eq(decFormat('0.00000000', 5), '0.00000');
eq(decFormat('-0.50', 2), '-0.50');
eq(decFormat('7', 0), '7');
// Exact: formatting changes zeros only, never the value.
for (let i = 0; i < 5000; i++) {
    const x = randDec();
    const n = decDigits(x) + rnd(4);
    const f = decFormat(x, n);
    if (decCmp(f, x) !== 0 || decDigits(f) > n || (f.split('.')[1] || '').length !== n) {
        assert.fail(`decFormat(${x}, ${n}) = ${f}`);
    }
    checks += 1;
}
const pr = new Precision();
pr.see('60036.66000000', '0.17893000');
pr.see('60036.7', '2.5');
eq([pr.px, pr.qty], [2, 5]);
pr.see('60036', '1');
eq([pr.px, pr.qty], [2, 5], 'only grows');
// A book learns its precision from every level it is sent, deletes included,
// and keeps it across snapshots and gaps.
const pb = new Book('book.binance.BTC-USDT');
pb.apply(snap(1, [['60036.66000000', '0.17893000']], [['60036.70000000', '1.00000000']]));
eq([pb.precision.px, pb.precision.qty], [2, 5]);
pb.apply(delta(2, [['60036.655', '0']], []));
eq(pb.precision.px, 3, 'a deleted level still shows the tick');
pb.apply(delta(9, [], []));
pb.apply(snap(10, [['60036.6', '1']], [['60036.7', '1']]));
eq([pb.precision.px, pb.precision.qty], [3, 5]);
eq(decFormat(pb.bestBid().px, pb.precision.px), '60036.600');

// ---- nearest topics to a missing instrument ---------------------------------
const have = ['book.binance.BTC-USDT', 'book.binance.DOGE-USDT', 'book.htx.DOGE-EUR', 'book.htx.ETH-EUR',
              'book.kraken.XRP-USD', 'book.binance.ETH-USDT', 'trade.kraken.DOGE-EUR'];
// The broker's rule (PROTOCOL.md 12): same exchange, then same symbol, same
// base, same quote; ties in byte order.
eq(nearestTopics('book.kraken.DOGE-EUR', have, 5),
   ['book.kraken.XRP-USD', 'book.htx.DOGE-EUR', 'book.binance.DOGE-USDT', 'book.htx.ETH-EUR',
    'book.binance.BTC-USDT']);
eq(nearestTopics('book.kraken.DOGE-EUR', have, 10).length, 6, 'one kind only (no trade.)');
eq(nearestTopics('book.binance.DOGE-EUR', have, 3),
   ['book.binance.DOGE-USDT', 'book.binance.BTC-USDT', 'book.binance.ETH-USDT']);
eq(nearestTopics('book.BINANCE.doge-usdt', have, 1), ['book.binance.DOGE-USDT'], 'case ignored');
eq(nearestTopics('book.binance.BTC-USDT', ['book.binance.BTC-USDT'], 5), [], 'never itself');
eq(nearestTopics('book.x.Y-Z', [], 5), []);

console.log(`test_book: ${checks} checks passed`);
