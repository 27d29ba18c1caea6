// app.js: the quotebus live order book page.
//
// One websocket to the broker (/ws on the origin that served this page,
// subprotocol quotebus.json.v1; see proto/PROTOCOL.md and the websocket
// section there). The page asks {"op":"list"} for the instruments, lets the
// user pick an exchange and a symbol, and subscribes to that instrument's
// book, trades and status, plus the book and status of the same pair on
// every other exchange (for the consolidated best bid and ask). Books are
// kept exactly by book.js (decimal strings, sequence rules).
//
// Rendering: messages only update the model and set a dirty flag; one
// requestAnimationFrame callback draws the page, so however many deltas
// arrive, the DOM is touched at most once per frame. The ladder's 2 x 20 rows
// are created once and updated in place; the size and depth bars are
// elements of their own column, so they never lie over a number. The depth
// chart and the mid price / spread chart (chart.js, canvas) are drawn in the
// same callback, at most every CHART_EVERY_MS (a chart of 2 x 100 levels
// need not follow every delta); the mid chart keeps a sample of the best bid
// and ask at most every 250 ms for the last 5 minutes of the chosen
// instrument.
//
// Numbers: each instrument is shown at its own fixed precision (book.js
// Precision: the most decimals seen in its prices, and in its sizes), so a
// column of one instrument has one number of decimals and, right aligned in
// tabular figures, lines up at the point; tables that mix instruments (the
// exchanges of a pair) pad with figure spaces to align the points too.
//
// An instrument that is not on the broker says so: the broker's
// "subscribed" reply lists the requested topics that match nothing
// ("unmatched") and the existing topics nearest to them ("nearest"); from a
// broker without those fields, the page waits MISSING_WAIT_MS for the book
// and then looks the instrument up in a fresh "list" reply, and ranks the
// nearest topics itself (book.js nearestTopics).
//
// Connection: automatic reconnect with exponential backoff and jitter
// (0.5 s doubling to 10 s), visible state (connecting, live, reconnecting
// in N s, rejected). After a reconnect every book starts again from the
// snapshot the broker sends on subscribe. A list request every 5 s keeps the
// instrument list fresh and detects a dead connection (no reply in 12 s:
// close and reconnect).
//
// URL parameters: ?token=T (bearer token, passed on as ?token= on the ws
// URL), ?ex=binance&sym=BTC-USDT (initial choice), ?ws=URL (another
// broker's websocket, for development).

import { Book, consolidate, decCmp, decFormat, decSub, nearestTopics } from './book.js';
import { drawDepth, drawMid } from './chart.js';

const LEVELS = 20;
const TRADES = 30;
const STALE_MS = 5000;           // no message on a live book for this long: stale
const LIST_EVERY_MS = 5000;
const LIST_TIMEOUT_MS = 12000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const MISSING_WAIT_MS = 2000;    // no "subscribed" verdict: look the instrument up after this
const MID_WINDOW_MS = 5 * 60 * 1000;
const MID_SAMPLE_MS = 250;
const DEPTH_LEVELS = 100;        // levels per side in the depth chart
const CHART_EVERY_MS = 100;      // charts redraw at most 10 times a second (the ladder: every frame)
const FIGURE_SPACE = '\u2007';   // as wide as a digit: pads decimals for alignment

const params = new URLSearchParams(location.search);
const token = params.get('token');

function wsUrl() {
    let url = params.get('ws');
    if (!url) {
        url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    }
    if (token) {
        url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
    }
    return url;
}

const $ = (id) => document.getElementById(id);

const S = {
    ws: null,
    conn: 'connecting',          // connecting | live | reconnecting | rejected
    connDetail: '',
    attempt: 0,
    reconnectAt: 0,
    reconnectTimer: 0,
    nextId: 1,
    listPending: 0,              // time the unanswered list request was sent (0: none)
    instruments: [],             // from the last list reply
    instrumentsKey: '',
    ex: params.get('ex') || '',
    sym: params.get('sym') || '',
    books: new Map(),            // topic -> Book (only subscribed book topics)
    status: new Map(),           // "ex.sym" -> {state, reason}
    trades: [],                  // trades of the chosen instrument, newest first
    subscribed: new Set(),       // topics we asked the broker for
    msgs: 0,                     // websocket messages received (all)
    msgsAtTick: 0,
    rate: 0,
    renders: 0,
    dirty: false,
    lastError: '',
    lastErrorAt: 0,
    // The chosen instrument when the broker does not have it:
    // {topic, nearest: [topics], source: 'subscribed' | 'list'}, else null.
    missing: null,
    chosenAt: 0,                 // when the chosen book topic was subscribed
    listAskedAt: 0,              // when the last list request was sent
    listAt: 0,                   // when the last list reply arrived
    mid: { topic: '', samples: [] },   // best bid/ask history of the chosen book (Numbers)
    charts: 0,                   // chart draws that showed data (for the browser test)
    chartAt: 0,                  // when the charts were last drawn
    chartTimer: 0,
};
window.quotebus = S;             // for the console and the browser test

// ---- connection ---------------------------------------------------------

function send(obj) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) {
        S.ws.send(JSON.stringify(obj));
        return true;
    }
    return false;
}

function setConn(state, detail) {
    S.conn = state;
    S.connDetail = detail || '';
    markDirty();
}

function connect() {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = 0;
    setConn(S.attempt ? 'reconnecting' : 'connecting', 'opening…');
    let ws;
    try {
        ws = new WebSocket(wsUrl(), ['quotebus.json.v1']);
    } catch (e) {
        scheduleReconnect(String(e && e.message ? e.message : e));
        return;
    }
    S.ws = ws;
    ws.onopen = () => {
        setConn('live', '');
        S.subscribed.clear();
        requestList();
        syncSubscriptions();
    };
    ws.onmessage = (ev) => {
        if (ws !== S.ws) {
            return;
        }
        S.attempt = 0;            // the server talks to us: reset the backoff
        onMessage(ev.data);
    };
    ws.onclose = (ev) => {
        if (ws !== S.ws) {
            return;
        }
        S.ws = null;
        dropBooks();
        let why = 'closed ' + ev.code + (ev.reason ? ' ' + ev.reason : '');
        if (ev.code === 1008) {
            // Origin or token refused: retrying quickly will not help.
            S.attempt = Math.max(S.attempt, 6);
            setConn('rejected', why);
        }
        scheduleReconnect(why);
    };
    ws.onerror = () => { /* onclose follows with the code */ };
}

function scheduleReconnect(why) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** S.attempt);
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    S.attempt += 1;
    S.reconnectAt = Date.now() + delay;
    if (S.conn !== 'rejected') {
        setConn('reconnecting', why);
    } else {
        S.connDetail = why;
    }
    S.reconnectTimer = setTimeout(connect, delay);
}

// After a disconnect no book can be vouched for: each one starts again from
// the snapshot that the broker sends when we subscribe again.
function dropBooks() {
    for (const b of S.books.values()) {
        b.invalidate();
    }
    S.subscribed.clear();
    S.listPending = 0;
    markDirty();
}

function requestList() {
    if (send({ op: 'list', id: S.nextId++ })) {
        S.listPending = Date.now();
        S.listAskedAt = S.listPending;
    }
}

// ---- subscriptions ------------------------------------------------------

function exchangesFor(sym) {
    const out = [];
    for (const i of S.instruments) {
        if (i.sym === sym && !out.includes(i.ex)) {
            out.push(i.ex);
        }
    }
    if (S.ex && sym === S.sym && !out.includes(S.ex)) {
        out.push(S.ex);
    }
    return out.sort();
}

function desiredTopics() {
    const want = new Set();
    if (!S.ex || !S.sym) {
        return want;
    }
    want.add(`book.${S.ex}.${S.sym}`);
    want.add(`trade.${S.ex}.${S.sym}`);
    want.add(`status.${S.ex}.${S.sym}`);
    for (const ex of exchangesFor(S.sym)) {
        want.add(`book.${ex}.${S.sym}`);
        want.add(`status.${ex}.${S.sym}`);
    }
    return want;
}

function syncSubscriptions() {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) {
        return;
    }
    const want = desiredTopics();
    const drop = [...S.subscribed].filter((t) => !want.has(t));
    const add = [...want].filter((t) => !S.subscribed.has(t));
    if (drop.length) {
        send({ op: 'unsubscribe', topics: drop, id: S.nextId++ });
        for (const t of drop) {
            S.subscribed.delete(t);
            S.books.delete(t);
        }
    }
    if (add.length) {
        for (const t of add) {
            if (t.startsWith('book.')) {
                S.books.set(t, new Book(t));
            }
        }
        send({ op: 'subscribe', topics: add, id: S.nextId++ });
        for (const t of add) {
            S.subscribed.add(t);
        }
        if (add.includes(chosenTopic())) {
            S.chosenAt = Date.now();
            S.missing = null;
        }
    }
    markDirty();
}

function chosenTopic() {
    return S.ex && S.sym ? `book.${S.ex}.${S.sym}` : '';
}

// ---- an instrument the broker does not have -------------------------------

// The broker's verdict on a subscribe request: "matching" always, with
// "unmatched" and "nearest" when some topic matches nothing (all absent from
// brokers that predate them: then nothing is decided here).
function onSubscribed(m) {
    const topic = chosenTopic();
    if (!topic || !Array.isArray(m.topics) || !m.topics.includes(topic) ||
        (typeof m.matching !== 'number' && !Array.isArray(m.unmatched))) {
        return;
    }
    if (Array.isArray(m.unmatched) && m.unmatched.includes(topic)) {
        const near = Array.isArray(m.nearest) ? m.nearest.filter((t) => typeof t === 'string') : [];
        const books = near.filter((t) => t.startsWith('book.'));
        S.missing = { topic, nearest: (books.length ? books : near).slice(0, 5), source: 'subscribed' };
    } else {
        S.missing = null;
    }
    markDirty();
}

// Without a verdict from the broker: once the book has had MISSING_WAIT_MS
// to arrive, a list reply asked for after that time decides.
function checkMissingFromList() {
    const topic = chosenTopic();
    if (!topic) {
        S.missing = null;
        return;
    }
    const b = S.books.get(topic);
    const listed = S.instruments.some((i) => i.ex === S.ex && i.sym === S.sym);
    if (listed || (b && b.everValid)) {
        if (S.missing) {
            S.missing = null;
            markDirty();
        }
        return;
    }
    if (S.missing && S.missing.source === 'subscribed') {
        return;                   // the broker said so; a later list or snapshot clears it
    }
    if (!S.chosenAt || Date.now() - S.chosenAt < MISSING_WAIT_MS || S.listAt < S.chosenAt + MISSING_WAIT_MS) {
        return;
    }
    const topics = S.instruments.map((i) => `book.${i.ex}.${i.sym}`);
    S.missing = { topic, nearest: nearestTopics(topic, topics, 5), source: 'list' };
    markDirty();
}

// ---- messages -----------------------------------------------------------

function onMessage(data) {
    if (typeof data !== 'string') {
        return;                   // binary frames belong to the msgpack subprotocol
    }
    let m;
    try {
        // seq fits a double exactly up to 2^53; ets/rts (ns) lose their last
        // digits, which is fine because they are only displayed.
        m = JSON.parse(data);
    } catch (e) {
        return;
    }
    S.msgs += 1;
    switch (m.type) {
    case 'snapshot':
    case 'delta': {
        const b = S.books.get(m.topic);
        if (!b || !S.subscribed.has(m.topic)) {
            return;               // in flight after an unsubscribe
        }
        b.lastMsgAt = Date.now();
        const r = b.apply(m);
        if (S.missing && S.missing.topic === m.topic && b.everValid) {
            S.missing = null;     // it exists after all (an adapter started late)
        }
        if (r === 'gap') {
            console.warn(`quotebus: ${m.topic}: sequence gap (got ${m.seq}); ` +
                         'book discarded until the next snapshot');
        } else if (r === 'bad') {
            console.warn(`quotebus: ${m.topic}: malformed level; waiting for a snapshot`);
        }
        markDirty();
        return;
    }
    case 'trade':
        if (m.ex === S.ex && m.sym === S.sym) {
            const b = S.books.get(chosenTopic());
            if (b) {
                b.precision.see(m.px, m.qty);
            }
            S.trades.unshift(m);
            if (S.trades.length > TRADES) {
                S.trades.length = TRADES;
            }
            markDirty();
        }
        return;
    case 'status':
        S.status.set(`${m.ex}.${m.sym}`, { state: m.state, reason: m.reason || '' });
        markDirty();
        return;
    case 'list':
        onList(m);
        return;
    case 'subscribed':
        onSubscribed(m);
        return;
    case 'error':
        S.lastError = `${m.code}: ${m.message}`;
        S.lastErrorAt = Date.now();
        console.warn('quotebus: broker error', m);
        markDirty();
        return;
    default:
        return;                   // acks, tickers and future types
    }
}

function onList(m) {
    S.listPending = 0;
    S.listAt = Date.now();
    const list = Array.isArray(m.instruments) ? m.instruments : [];
    S.instruments = list.filter((i) => i && typeof i.ex === 'string' && typeof i.sym === 'string');
    for (const i of S.instruments) {
        if (typeof i.state === 'string') {
            S.status.set(`${i.ex}.${i.sym}`, { state: i.state, reason: i.reason || '' });
        }
    }
    if (!S.ex || !S.sym) {
        chooseDefault();
    }
    const key = S.instruments.map((i) => i.ex + '.' + i.sym).sort().join(',');
    if (key !== S.instrumentsKey) {
        S.instrumentsKey = key;
        fillPickers();
    }
    syncSubscriptions();
    checkMissingFromList();
}

function chooseDefault() {
    if (!S.instruments.length) {
        return;
    }
    const pref = S.instruments.find((i) => i.ex === 'binance' && i.sym === 'BTC-USDT');
    const pick = pref || S.instruments.slice().sort((a, b) =>
        (a.ex + a.sym < b.ex + b.sym ? -1 : 1))[0];
    S.ex = pick.ex;
    S.sym = pick.sym;
}

// ---- pickers ------------------------------------------------------------

function fillSelect(sel, values, current) {
    sel.replaceChildren(...values.map((v) => {
        const o = document.createElement('option');
        o.value = v;
        o.textContent = v;
        o.selected = v === current;
        return o;
    }));
    sel.disabled = values.length === 0;
}

function fillPickers() {
    const exs = [...new Set(S.instruments.map((i) => i.ex))];
    if (S.ex && !exs.includes(S.ex)) {
        exs.push(S.ex);
    }
    exs.sort();
    const syms = [...new Set(S.instruments.filter((i) => i.ex === S.ex).map((i) => i.sym))];
    if (S.sym && !syms.includes(S.sym)) {
        syms.push(S.sym);
    }
    syms.sort();
    fillSelect($('exchange-select'), exs, S.ex);
    fillSelect($('symbol-select'), syms, S.sym);
}

function choose(ex, sym) {
    if (ex === S.ex && sym === S.sym) {
        return;
    }
    S.ex = ex;
    S.sym = sym;
    S.trades = [];
    S.missing = null;
    S.chosenAt = Date.now();
    fillPickers();
    const u = new URL(location.href);
    u.searchParams.set('ex', ex);
    u.searchParams.set('sym', sym);
    history.replaceState(null, '', u);
    syncSubscriptions();
}

$('exchange-select').addEventListener('change', (e) => {
    const ex = e.target.value;
    const syms = S.instruments.filter((i) => i.ex === ex).map((i) => i.sym).sort();
    choose(ex, syms.includes(S.sym) ? S.sym : (syms[0] || S.sym));
});
$('symbol-select').addEventListener('change', (e) => choose(S.ex, e.target.value));

// ---- derived state ------------------------------------------------------

// States of PROTOCOL.md 4.5 that override what the book itself shows. Any
// other upstream state ("live", or "unknown" from a broker that restarted
// and has not seen a status message yet) defers to the book.
const UPSTREAM_STATES = new Set(['syncing', 'stale', 'resyncing', 'down']);

function feedState(ex, sym) {
    if (S.missing && S.missing.topic === `book.${ex}.${sym}`) {
        return 'missing';        // not on this broker (see onSubscribed)
    }
    const b = S.books.get(`book.${ex}.${sym}`);
    const st = S.status.get(`${ex}.${sym}`);
    const upstream = st && UPSTREAM_STATES.has(st.state) ? st.state : '';
    if (!S.ws) {
        return b && b.everValid ? 'stale' : 'syncing';
    }
    if (!b || !b.everValid) {
        return upstream || 'syncing';
    }
    if (upstream === 'down') {
        return 'down';           // the upstream error says more than the book's gap
    }
    if (!b.valid) {
        return 'resyncing';
    }
    if (upstream) {
        return upstream;
    }
    if (Date.now() - b.lastMsgAt > STALE_MS) {
        return 'stale';
    }
    return 'live';
}

function consolidated() {
    return consolidate(exchangesFor(S.sym).map((ex) => [ex, S.books.get(`book.${ex}.${S.sym}`)]));
}

// ---- rendering ----------------------------------------------------------

function markDirty() {
    if (!S.dirty) {
        S.dirty = true;
        requestAnimationFrame(render);
    }
}

function setText(el, text) {
    if (el.textContent !== text) {
        el.textContent = text;
    }
}

// The display precision of a book topic (see book.js Precision).
function precisionOf(topic) {
    const b = S.books.get(topic);
    return b ? b.precision : { px: 0, qty: 0 };
}

// Right-pads decimal strings with figure spaces so that, right aligned in
// one column of a monospace font, their points line up ("60036.66" and
// "3001.5" -> "60036.66", "3001.5\u2007"). Non-numbers ("–") are left alone.
function alignPoints(values) {
    const isNum = (v) => /^-?\d+(\.\d+)?$/.test(v);
    const tail = (v) => (v.includes('.') ? v.length - v.indexOf('.') : 0);   // point and decimals
    const most = Math.max(0, ...values.filter(isNum).map(tail));
    return values.map((v) => (isNum(v) ? v + FIGURE_SPACE.repeat(most - tail(v)) : v));
}

function makeRows(group, side) {
    const rows = [];
    for (let i = 0; i < LEVELS; i++) {
        const tr = document.createElement('div');
        tr.className = 'lrow lvl ' + side;
        tr.setAttribute('role', 'row');
        const px = document.createElement('span');
        const qty = document.createElement('span');
        const cum = document.createElement('span');
        for (const c of [px, qty, cum]) {
            c.setAttribute('role', 'cell');
        }
        px.className = 'px';
        qty.className = 'qty';
        cum.className = 'cum';
        // The bars have a column of their own: they can never hide a digit.
        const bars = document.createElement('span');
        bars.className = 'bars';
        bars.setAttribute('aria-hidden', 'true');
        const depth = document.createElement('i');
        depth.className = 'bar-depth';
        const size = document.createElement('i');
        size.className = 'bar-size';
        bars.append(depth, size);
        tr.append(px, qty, cum, bars);
        group.append(tr);
        rows.push({ tr, px, qty, cum, depth, size, rank: -1 });
    }
    return rows;
}

const askRows = makeRows($('asks'), 'ask');   // top row = 20th best ask
const bidRows = makeRows($('bids'), 'bid');   // top row = best bid

function setWidth(el, pct) {
    const w = pct.toFixed(1) + '%';
    if (el.style.width !== w) {
        el.style.width = w;
    }
}

function paintRow(row, side, rank, lvl, prec, maxQty, maxCum) {
    if (row.rank !== rank) {
        row.rank = rank;
        row.px.dataset.testid = `${side}-px-${rank}`;
        row.qty.dataset.testid = `${side}-qty-${rank}`;
        row.cum.dataset.testid = `${side}-cum-${rank}`;
        row.size.dataset.testid = `${side}-bar-${rank}`;
        row.depth.dataset.testid = `${side}-depth-${rank}`;
    }
    if (!lvl) {
        setText(row.px, '');
        setText(row.qty, '');
        setText(row.cum, '');
        setWidth(row.size, 0);
        setWidth(row.depth, 0);
        return;
    }
    setText(row.px, decFormat(lvl.px, prec.px));
    setText(row.qty, decFormat(lvl.qty, prec.qty));
    setText(row.cum, decFormat(lvl.cum, prec.qty));
    // Bar widths are display only (like the charts): sizes become Numbers only to be drawn.
    setWidth(row.size, maxQty > 0 ? Math.min(100, (100 * Number(lvl.qty)) / maxQty) : 0);
    setWidth(row.depth, maxCum > 0 ? Math.min(100, (100 * Number(lvl.cum)) / maxCum) : 0);
}

function renderLadder(b) {
    const bids = b && b.valid ? b.bids.top(LEVELS) : [];
    const asks = b && b.valid ? b.asks.top(LEVELS) : [];
    const prec = b ? b.precision : { px: 0, qty: 0 };
    let maxQty = 0;
    for (const l of bids.concat(asks)) {
        maxQty = Math.max(maxQty, Number(l.qty));
    }
    const maxCum = Math.max(bids.length ? Number(bids[bids.length - 1].cum) : 0,
                            asks.length ? Number(asks[asks.length - 1].cum) : 0);
    for (let r = 0; r < LEVELS; r++) {
        const rank = LEVELS - 1 - r;              // asks: worst at the top
        paintRow(askRows[r], 'ask', rank, asks[rank], prec, maxQty, maxCum);
        paintRow(bidRows[r], 'bid', r, bids[r], prec, maxQty, maxCum);
    }
    const bb = bids[0];
    const ba = asks[0];
    setText($('best-bid'), bb ? decFormat(bb.px, prec.px) : '–');
    setText($('best-bid-qty'), bb ? decFormat(bb.qty, prec.qty) : '');
    setText($('best-ask'), ba ? decFormat(ba.px, prec.px) : '–');
    setText($('best-ask-qty'), ba ? decFormat(ba.qty, prec.qty) : '');
    const spread = bb && ba ? decFormat(decSub(ba.px, bb.px), prec.px) : null;
    setText($('spread'), spread === null ? '–' : spread);
    let bps = '';
    if (spread !== null) {
        const mid = (Number(ba.px) + Number(bb.px)) / 2;
        const v = mid > 0 ? (Number(spread) / mid) * 1e4 : NaN;
        bps = Number.isFinite(v) ? v.toFixed(Math.abs(v) < 1 ? 3 : 2) + ' bps' : '';
    }
    setText($('spread-bps'), bps);
    let mid = 'spread ' + spread + (bps ? ' · ' + bps : '');
    if (spread === null) {
        if (!S.ws) {
            mid = 'no connection: the book comes back with a snapshot after reconnecting';
        } else if (S.missing && b && S.missing.topic === b.topic) {
            mid = 'no such instrument on this broker';
        } else if (b && b.valid) {
            mid = 'one side of the book is empty';
        } else {
            mid = b && b.everValid ? 'resyncing: waiting for the next snapshot' : 'waiting for the book';
        }
    }
    setText($('ladder-mid'), mid);
    $('ladder-mid').classList.toggle('crossed', spread !== null && spread.startsWith('-'));
}

// ---- charts -------------------------------------------------------------

function sampleMid(b, now) {
    const h = S.mid;
    if (!b || h.topic !== b.topic) {
        h.topic = b ? b.topic : '';
        h.samples = [];
    }
    const bb = b && b.bestBid();
    const ba = b && b.bestAsk();
    if (!bb || !ba) {
        return;
    }
    const last = h.samples[h.samples.length - 1];
    if (last && now - last.t < MID_SAMPLE_MS) {
        return;
    }
    h.samples.push({ t: now, bid: Number(bb.px), ask: Number(ba.px) });
    let drop = 0;
    while (drop < h.samples.length && h.samples[drop].t < now - MID_WINDOW_MS) {
        drop += 1;
    }
    if (drop) {
        h.samples.splice(0, drop);
    }
}

function renderCharts(b) {
    const now = Date.now();
    sampleMid(b, now);
    const prec = b ? b.precision : { px: 0, qty: 0 };
    const fmtPx = (v) => v.toFixed(prec.px);
    const fmtQty = (v) => v.toFixed(prec.qty);
    const side = (s) => (b && b.valid ? s.top(DEPTH_LEVELS) : [])
        .map((l) => ({ px: Number(l.px), cum: Number(l.cum) }));
    const bids = b ? side(b.bids) : [];
    const asks = b ? side(b.asks) : [];
    let drew = drawDepth($('depth-chart'), bids, asks, fmtPx, fmtQty);
    setText($('depth-range'), bids.length && asks.length
        ? `${bids.length} + ${asks.length} levels` : '');
    const samples = S.mid.samples;
    const tick = prec.px > 0 ? 10 ** -prec.px : 1;
    drew = drawMid($('mid-chart'), samples, now, MID_WINDOW_MS, 8 * tick, fmtPx) && drew;
    const span = samples.length ? Math.round((now - samples[0].t) / 1000) : 0;
    setText($('mid-range'), samples.length
        ? 'last ' + (span >= 60 ? Math.floor(span / 60) + ' min ' : '') + (span % 60) + ' s' : '');
    if (drew) {
        S.charts += 1;
    }
}

// A state badge; its tooltip is the reason of the last status message
// (every state is shown with its reason).
function badge(el, state, reason) {
    setText(el, state);
    if (el.dataset.state !== state) {
        el.dataset.state = state;
    }
    const title = reason ? state + ': ' + reason : '';
    if (el.title !== title) {
        el.title = title;
    }
}

// The reason to show beside feedState(ex, sym): the upstream's own, when
// the upstream state is the one shown.
function feedReason(ex, sym, state) {
    const st = S.status.get(`${ex}.${sym}`);
    return st && st.state === state ? st.reason : '';
}

function renderVenues() {
    const exs = exchangesFor(S.sym);
    const tbody = $('venues');
    while (tbody.rows.length > exs.length) {
        tbody.deleteRow(-1);
    }
    while (tbody.rows.length < exs.length) {
        const tr = tbody.insertRow();
        tr.innerHTML = '<th scope="row"></th><td class="num bid"></td><td class="num ask"></td>' +
                       '<td><span class="badge"></span></td>';
    }
    // Each exchange's instrument at its own precision; the columns pad so
    // that the points line up.
    const quote = (ex, best) => {
        const b = S.books.get(`book.${ex}.${S.sym}`);
        const l = b ? best(b) : null;
        return l ? decFormat(l.px, b.precision.px) : '–';
    };
    const bidCol = alignPoints(exs.map((ex) => quote(ex, (b) => b.bestBid())));
    const askCol = alignPoints(exs.map((ex) => quote(ex, (b) => b.bestAsk())));
    exs.forEach((ex, i) => {
        const tr = tbody.rows[i];
        tr.dataset.testid = `venue-${ex}`;
        tr.classList.toggle('chosen', ex === S.ex);
        setText(tr.cells[0], ex);
        setText(tr.cells[1], bidCol[i]);
        setText(tr.cells[2], askCol[i]);
        const fs = feedState(ex, S.sym);
        badge(tr.cells[3].firstChild, fs, feedReason(ex, S.sym, fs));
    });
    const c = consolidated();
    const fmt = (q, key) => decFormat(q[key], precisionOf(`book.${q.ex[0]}.${S.sym}`)[key]);
    setText($('cons-sym'), S.sym);
    setText($('consolidated-bid'), c.bid ? fmt(c.bid, 'px') : '–');
    setText($('consolidated-bid-ex'), c.bid ? c.bid.ex.join(', ') + ' · ' + fmt(c.bid, 'qty') : '');
    setText($('consolidated-ask'), c.ask ? fmt(c.ask, 'px') : '–');
    setText($('consolidated-ask-ex'), c.ask ? c.ask.ex.join(', ') + ' · ' + fmt(c.ask, 'qty') : '');
    // Across exchanges the best bid can reach the best ask (an arbitrage, or a stale feed).
    const crossed = Boolean(c.bid && c.ask && decCmp(c.bid.px, c.ask.px) >= 0);
    const note = $('consolidated-crossed');
    note.hidden = !crossed;
    setText(note, crossed ? `crossed across exchanges: bid ${c.bid.ex.join(', ')} ≥ ask ${c.ask.ex.join(', ')}`
                          : '');
}

function tradeTime(t) {
    const ns = t.ets || t.rts || 0;
    if (!ns) {
        return '';
    }
    const d = new Date(Number(ns) / 1e6);
    return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function renderTrades() {
    const tbody = $('trades');
    while (tbody.rows.length > S.trades.length) {
        tbody.deleteRow(-1);
    }
    while (tbody.rows.length < S.trades.length) {
        const tr = tbody.insertRow();
        tr.innerHTML = '<td class="time"></td><td class="num"></td><td class="num"></td><td></td>';
    }
    const prec = precisionOf(chosenTopic());
    S.trades.forEach((t, i) => {
        const tr = tbody.rows[i];
        tr.className = 'side-' + t.side;
        setText(tr.cells[0], tradeTime(t));
        setText(tr.cells[1], decFormat(t.px, prec.px));
        setText(tr.cells[2], decFormat(t.qty, prec.qty));
        setText(tr.cells[3], t.side);
    });
}

function render() {
    S.dirty = false;
    S.renders += 1;
    const conn = $('conn-state');
    badge(conn, S.conn);
    let detail = S.connDetail;
    if ((S.conn === 'reconnecting' || S.conn === 'rejected') && S.reconnectTimer) {
        const s = Math.max(0, Math.ceil((S.reconnectAt - Date.now()) / 1000));
        detail = (detail ? detail + ' · ' : '') + 'retry in ' + s + ' s';
    }
    setText($('conn-detail'), detail);
    $('conn-dot').dataset.state = S.conn;
    setText($('msg-rate'), String(S.rate));
    setText($('render-count'), String(S.renders));

    const topic = S.ex && S.sym ? `book.${S.ex}.${S.sym}` : '';
    const b = topic ? S.books.get(topic) : null;
    setText($('ladder-topic'), topic);
    const missing = S.missing && S.missing.topic === topic ? S.missing : null;
    const fs = topic ? feedState(S.ex, S.sym) : 'syncing';
    badge($('feed-status'), fs, missing ? `no ${topic} on this broker` : topic ? feedReason(S.ex, S.sym, fs) : '');
    setText($('book-seq'), b && b.valid ? String(b.seq) : '–');
    setText($('book-age'), b && b.lastMsgAt ? ((Date.now() - b.lastMsgAt) / 1000).toFixed(1) + ' s' : '–');
    setText($('book-conflated'), String(b ? b.conflated : 0));
    setText($('book-gaps'), String(b ? b.gaps : 0));
    renderLadder(b);
    renderVenues();
    renderTrades();
    const now = Date.now();
    if (now - S.chartAt >= CHART_EVERY_MS) {
        S.chartAt = now;
        renderCharts(b);
    } else if (!S.chartTimer) {
        S.chartTimer = setTimeout(() => {
            S.chartTimer = 0;
            markDirty();
        }, CHART_EVERY_MS - (now - S.chartAt));
    }

    const note = $('book-note');
    const st = topic ? S.status.get(`${S.ex}.${S.sym}`) : null;
    let text = '';
    if (missing) {
        renderMissing(note, missing);
        return finishRender(b);
    }
    if (S.lastError && Date.now() - S.lastErrorAt < 10000) {
        text = 'broker: ' + S.lastError;
    } else if (st && UPSTREAM_STATES.has(st.state) && st.reason) {
        text = st.state + ': ' + st.reason;
    } else if (!S.instruments.length && S.ws) {
        text = 'no instruments yet: waiting for the adapters…';
    }
    if (note.dataset.missing) {
        delete note.dataset.missing;
        note.replaceChildren();
    }
    setText(note, text);
    note.hidden = !text;
    finishRender(b);
}

function finishRender(b) {
    const prec = b ? b.precision : { px: 0 };
    document.title = (b && b.valid && b.bestBid() && b.bestAsk()
        ? `${decFormat(b.bestBid().px, prec.px)} / ${decFormat(b.bestAsk().px, prec.px)} · ` : '') +
        `${S.sym || 'quotebus'} · quotebus`;
}

// "no instrument book.kraken.DOGE-EUR on this broker; nearest: ..." with
// each nearest book topic a link that picks it. Rebuilt only when it changes.
function renderMissing(note, missing) {
    const key = missing.topic + '|' + missing.nearest.join(',');
    note.hidden = false;
    if (note.dataset.missing === key) {
        return;
    }
    note.dataset.missing = key;
    const parts = [`no instrument ${missing.topic} on this broker`];
    const nodes = [];
    if (missing.nearest.length) {
        parts[0] += '; nearest: ';
        missing.nearest.forEach((t, i) => {
            const [kind, ex, sym] = t.split('.');
            let node;
            if (kind === 'book' && ex && sym) {
                node = document.createElement('a');
                const u = new URL(location.href);
                u.searchParams.set('ex', ex);
                u.searchParams.set('sym', sym);
                node.href = u.pathname + u.search;
                node.dataset.testid = 'nearest-' + i;
                node.addEventListener('click', (e) => {
                    e.preventDefault();
                    choose(ex, sym);
                });
            } else {
                node = document.createElement('span');
            }
            node.textContent = t;
            nodes.push(i ? ', ' : '', node);
        });
    } else {
        parts[0] += ' (it has no instruments yet)';
    }
    note.replaceChildren(parts[0], ...nodes);
}

// ---- timers -------------------------------------------------------------

setInterval(() => {
    S.rate = S.msgs - S.msgsAtTick;
    S.msgsAtTick = S.msgs;
    if (S.ws && S.ws.readyState === WebSocket.OPEN) {
        if (S.listPending && Date.now() - S.listPending > LIST_TIMEOUT_MS) {
            // The broker stopped answering: the connection is dead.
            S.listPending = 0;
            S.ws.close(4000, 'no reply');
        } else if (!S.listPending && (S.tick = (S.tick || 0) + 1) % (LIST_EVERY_MS / 1000) === 0) {
            requestList();
        } else if (!S.instruments.length && !S.listPending) {
            requestList();
        } else if (!S.listPending && !S.missing && S.chosenAt &&
                   Date.now() - S.chosenAt >= MISSING_WAIT_MS && S.listAskedAt < S.chosenAt + MISSING_WAIT_MS) {
            const b = S.books.get(chosenTopic());
            if (!b || !b.everValid) {
                requestList();   // is the chosen instrument on this broker at all?
            }
        }
    }
    markDirty();                 // ages, rates, stale detection, retry countdown
}, 1000);

fillPickers();
markDirty();
connect();
