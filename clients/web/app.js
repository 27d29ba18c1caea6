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
// are created once and updated in place.
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

import { Book, consolidate, decCmp, decSub } from './book.js';

const LEVELS = 20;
const TRADES = 30;
const STALE_MS = 5000;           // no message on a live book for this long: stale
const LIST_EVERY_MS = 5000;
const LIST_TIMEOUT_MS = 12000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

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
    }
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

function makeRows(group, side) {
    const rows = [];
    for (let i = 0; i < LEVELS; i++) {
        const tr = document.createElement('div');
        tr.className = 'lrow lvl ' + side;
        tr.setAttribute('role', 'row');
        const cum = document.createElement('span');
        const qty = document.createElement('span');
        const px = document.createElement('span');
        for (const c of [cum, qty, px]) {
            c.setAttribute('role', 'cell');
        }
        cum.className = 'cum';
        qty.className = 'qty';
        px.className = 'px';
        tr.append(cum, qty, px);
        group.append(tr);
        rows.push({ tr, cum, qty, px, rank: -1 });
    }
    return rows;
}

const askRows = makeRows($('asks'), 'ask');   // top row = 20th best ask
const bidRows = makeRows($('bids'), 'bid');   // top row = best bid

function paintRow(row, side, rank, lvl, maxQty, maxCum) {
    if (row.rank !== rank) {
        row.rank = rank;
        row.px.dataset.testid = `${side}-px-${rank}`;
        row.qty.dataset.testid = `${side}-qty-${rank}`;
        row.cum.dataset.testid = `${side}-cum-${rank}`;
    }
    if (!lvl) {
        setText(row.px, '');
        setText(row.qty, '');
        setText(row.cum, '');
        row.tr.style.setProperty('--size', '0%');
        row.tr.style.setProperty('--depth', '0%');
        return;
    }
    setText(row.px, lvl.px);
    setText(row.qty, lvl.qty);
    setText(row.cum, lvl.cum);
    // Bar widths are display only: the only place a size becomes a Number.
    const s = maxQty > 0 ? Math.min(100, (100 * Number(lvl.qty)) / maxQty) : 0;
    const d = maxCum > 0 ? Math.min(100, (100 * Number(lvl.cum)) / maxCum) : 0;
    row.tr.style.setProperty('--size', s.toFixed(1) + '%');
    row.tr.style.setProperty('--depth', d.toFixed(1) + '%');
}

function renderLadder(b) {
    const bids = b && b.valid ? b.bids.top(LEVELS) : [];
    const asks = b && b.valid ? b.asks.top(LEVELS) : [];
    let maxQty = 0;
    for (const l of bids.concat(asks)) {
        maxQty = Math.max(maxQty, Number(l.qty));
    }
    const maxCum = Math.max(bids.length ? Number(bids[bids.length - 1].cum) : 0,
                            asks.length ? Number(asks[asks.length - 1].cum) : 0);
    for (let r = 0; r < LEVELS; r++) {
        const rank = LEVELS - 1 - r;              // asks: worst at the top
        paintRow(askRows[r], 'ask', rank, asks[rank], maxQty, maxCum);
        paintRow(bidRows[r], 'bid', r, bids[r], maxQty, maxCum);
    }
    const bb = bids[0];
    const ba = asks[0];
    setText($('best-bid'), bb ? bb.px : '–');
    setText($('best-bid-qty'), bb ? bb.qty : '');
    setText($('best-ask'), ba ? ba.px : '–');
    setText($('best-ask-qty'), ba ? ba.qty : '');
    const spread = bb && ba ? decSub(ba.px, bb.px) : null;
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
        } else if (b && b.valid) {
            mid = 'one side of the book is empty';
        } else {
            mid = b && b.everValid ? 'resyncing: waiting for the next snapshot' : 'waiting for the book';
        }
    }
    setText($('ladder-mid'), mid);
    $('ladder-mid').classList.toggle('crossed', spread !== null && spread.startsWith('-'));
}

// A state badge; its tooltip is the reason of the last status message
// (issue 7: every state is shown with its reason).
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
    exs.forEach((ex, i) => {
        const tr = tbody.rows[i];
        const b = S.books.get(`book.${ex}.${S.sym}`);
        const bb = b ? b.bestBid() : null;
        const ba = b ? b.bestAsk() : null;
        tr.dataset.testid = `venue-${ex}`;
        tr.classList.toggle('chosen', ex === S.ex);
        setText(tr.cells[0], ex);
        setText(tr.cells[1], bb ? bb.px : '–');
        setText(tr.cells[2], ba ? ba.px : '–');
        const fs = feedState(ex, S.sym);
        badge(tr.cells[3].firstChild, fs, feedReason(ex, S.sym, fs));
    });
    const c = consolidated();
    setText($('cons-sym'), S.sym);
    setText($('consolidated-bid'), c.bid ? c.bid.px : '–');
    setText($('consolidated-bid-ex'), c.bid ? c.bid.ex.join(', ') + ' · ' + c.bid.qty : '');
    setText($('consolidated-ask'), c.ask ? c.ask.px : '–');
    setText($('consolidated-ask-ex'), c.ask ? c.ask.ex.join(', ') + ' · ' + c.ask.qty : '');
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
    S.trades.forEach((t, i) => {
        const tr = tbody.rows[i];
        tr.className = 'side-' + t.side;
        setText(tr.cells[0], tradeTime(t));
        setText(tr.cells[1], t.px);
        setText(tr.cells[2], t.qty);
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
    const fs = topic ? feedState(S.ex, S.sym) : 'syncing';
    badge($('feed-status'), fs, topic ? feedReason(S.ex, S.sym, fs) : '');
    setText($('book-seq'), b && b.valid ? String(b.seq) : '–');
    setText($('book-age'), b && b.lastMsgAt ? ((Date.now() - b.lastMsgAt) / 1000).toFixed(1) + ' s' : '–');
    setText($('book-conflated'), String(b ? b.conflated : 0));
    setText($('book-gaps'), String(b ? b.gaps : 0));
    renderLadder(b);
    renderVenues();
    renderTrades();

    const note = $('book-note');
    const st = topic ? S.status.get(`${S.ex}.${S.sym}`) : null;
    let text = '';
    if (S.lastError && Date.now() - S.lastErrorAt < 10000) {
        text = 'broker: ' + S.lastError;
    } else if (st && UPSTREAM_STATES.has(st.state) && st.reason) {
        text = st.state + ': ' + st.reason;
    } else if (!S.instruments.length && S.ws) {
        text = 'no instruments yet: waiting for the adapters…';
    }
    setText(note, text);
    note.hidden = !text;
    document.title = (b && b.valid && b.bestBid() && b.bestAsk()
        ? `${b.bestBid().px} / ${b.bestAsk().px} · ` : '') + `${S.sym || 'quotebus'} · quotebus`;
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
        }
    }
    markDirty();                 // ages, rates, stale detection, retry countdown
}, 1000);

fillPickers();
markDirty();
connect();
