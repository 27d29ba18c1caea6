// ccxt_client.mjs: ccxt (pro) binance watchOrderBook('BTC/USDT') pointed at
// quotebus-exsim (docs/BENCHMARKS.md section 6). What is changed from a stock ccxt setup,
// and why:
//   - exchange.urls.api.ws.spot -> wss://HOST/ws (ccxt connects to /ws/0 and
//     SUBSCRIBEs btcusdt@depth@100ms), exchange.urls.api.public ->
//     https://HOST/api/v3 (the REST snapshot, GET /depth?limit=1000);
//   - markets are given with setMarkets (one spot market, BTC/USDT), so
//     loadMarkets makes no exchangeInfo / sapi calls the simulator lacks;
//   - the test CA is trusted through NODE_EXTRA_CA_CERTS (set by the caller).
// Counting: depth messages are counted by wrapping handleOrderBook (every
// depthUpdate ccxt receives) and handleOrderBookMessage (every one applied to
// the book); watchOrderBook() resolutions are counted too (several messages
// can resolve one await). CPU: process.cpuUsage() (user + system) over the
// window, after --warmup seconds of applied messages. After the window the
// client keeps applying until the feed is idle --idle seconds, writes the
// final book (floats, best first) to --book-out and prints one JSON line.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node ccxt_client.mjs --ws wss://127.0.0.1:7790 \
//       --rest https://127.0.0.1:7790 --book-out ccxt-book.json
import ccxt from 'ccxt';
import { writeFileSync } from 'node:fs';

function args() {
    const a = { ws: null, rest: null, warmup: 5, seconds: 30, idle: 3, maxRun: 300, bookOut: null };
    const v = process.argv.slice(2);
    for (let i = 0; i < v.length; i += 2) {
        const k = v[i], x = v[i + 1];
        if (k === '--ws') a.ws = x;
        else if (k === '--rest') a.rest = x;
        else if (k === '--warmup') a.warmup = Number(x);
        else if (k === '--seconds') a.seconds = Number(x);
        else if (k === '--idle') a.idle = Number(x);
        else if (k === '--max-run') a.maxRun = Number(x);
        else if (k === '--book-out') a.bookOut = x;
        else { console.error(`ccxt_client.mjs: unknown option ${k}`); process.exit(2); }
    }
    if (!a.ws || !a.rest) { console.error('ccxt_client.mjs: --ws and --rest are required'); process.exit(2); }
    return a;
}

const a = args();
const ex = new ccxt.pro.binance({ enableRateLimit: false });
ex.urls.api.ws.spot = `${a.ws}/ws`;
ex.urls.api.public = `${a.rest}/api/v3`;
ex.setMarkets([{
    id: 'BTCUSDT', lowercaseId: 'btcusdt', symbol: 'BTC/USDT', base: 'BTC', quote: 'USDT',
    baseId: 'BTC', quoteId: 'USDT', type: 'spot', spot: true, margin: false, swap: false,
    future: false, option: false, contract: false, linear: undefined, inverse: undefined,
    active: true, precision: { amount: 0.00000001, price: 0.00000001 },
    limits: { amount: {}, price: {}, cost: {}, leverage: {} }, info: {},
}]);

let received = 0, applied = 0, resolutions = 0, lastRx = 0;
const origHandle = ex.handleOrderBook.bind(ex);
ex.handleOrderBook = (client, message) => { received++; lastRx = performance.now(); return origHandle(client, message); };
const origApply = ex.handleOrderBookMessage.bind(ex);
ex.handleOrderBookMessage = (client, message, ob) => { applied++; return origApply(client, message, ob); };

const tStart = performance.now();
let tFirst = null, win = null, result = null, ob = null, errors = 0, lastError = '';
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

async function loop() {
    while (true) {
        try {
            ob = await ex.watchOrderBook('BTC/USDT');
            resolutions++;
            if (tFirst === null) tFirst = performance.now();
        } catch (e) {
            errors++;
            lastError = String(e && e.message ? e.message : e).slice(0, 200);
            if (errors > 50) return;
            await new Promise((r) => setTimeout(r, 200));
        }
        if (done) return;
    }
}
let done = false;
const timer = setInterval(() => {
    const now = performance.now();
    if ((now - tStart) / 1000 > a.maxRun) { done = true; }
    if (tFirst !== null && win === null && (now - tFirst) / 1000 >= a.warmup) {
        win = { t: now, cpu: cpu(), n: received, r: resolutions };
    } else if (win !== null && result === null && (now - win.t) / 1000 >= a.seconds) {
        const dt = (now - win.t) / 1000, c = cpu() - win.cpu, n = received - win.n;
        result = { client: 'ccxt', ccxt_version: ccxt.version, msgs: n, secs: +dt.toFixed(3),
            cpu_secs: +c.toFixed(3), msgs_per_s: n / dt, cpu_per_s: c / dt,
            msgs_per_cpu_s: c > 0 ? n / c : 0, resolutions_in_window: resolutions - win.r };
    } else if (result !== null && (now - lastRx) / 1000 >= a.idle) {
        done = true;
    }
    if (done) finish();
}, 100);

let finished = false;
function finish() {
    if (finished) return;
    finished = true;
    clearInterval(timer);
    const r = result || { client: 'ccxt', error: 'window not completed', msgs: received };
    Object.assign(r, { msgs_total: received, applied_total: applied, resolutions_total: resolutions,
        errors, last_error: lastError, nonce: ob ? ob.nonce : null });
    if (a.bookOut && ob) {
        writeFileSync(a.bookOut, JSON.stringify({ lastUpdateId: ob.nonce,
            bids: ob.bids.map((x) => [x[0], x[1]]), asks: ob.asks.map((x) => [x[0], x[1]]) }));
    }
    console.log(JSON.stringify(r));
    process.exit(0);
}
loop().then(() => { if (!finished) { done = true; finish(); } });
