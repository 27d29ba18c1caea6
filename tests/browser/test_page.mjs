// test_page.mjs: the quotebus page (clients/web/) in a real browser.
//
// Starts quotebus-exsim (--events N --dump: the final books are known),
// quotebus-adapter binance and quotebus-broker with its http/websocket
// endpoint on free ports, opens the page that the broker serves in Debian's
// chromium (headless, driven by playwright-core), and checks:
//   - the connection becomes live and the ladder shows a book;
//   - while deltas flow, the page renders at most once per animation frame;
//   - when the simulator has stopped, the best bid and ask, the top 20 levels
//     of each side (price and size strings), the cumulative depth, the spread
//     and the consolidated best bid/ask equal the simulator's book exactly;
//   - switching the symbol shows the other book, exactly;
//   - kill -9 of the broker: the page shows it is reconnecting; after a
//     restart it is live again by itself with the exact book, still updating;
//   - kill -9 of the simulator: the feed is shown "down" with the upstream
//     error as the note and as the badge's tooltip;
//   - no JavaScript error on the page.
// Screenshots go to --artifacts DIR (paths printed).
//
// Usage: node test_page.mjs --bin-dir BIN --web-root clients/web --modules DIR
//        --artifacts DIR [--chromium /usr/bin/chromium] [--keep]
// Exit 0 pass, 1 fail, 77 skip.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { DecSum, decCmp, decSub } = await import(pathToFileURL(path.join(HERE, '../../clients/web/book.js')));

function arg(name, def) {
    const i = process.argv.indexOf('--' + name);
    return i > 0 ? process.argv[i + 1] : def;
}
const BIN = path.resolve(arg('bin-dir', ''));
const WEB = path.resolve(arg('web-root', path.join(HERE, '../../clients/web')));
const MODULES = path.resolve(arg('modules', HERE));
const ARTIFACTS = path.resolve(arg('artifacts', '.'));
const CHROMIUM = arg('chromium', '/usr/bin/chromium');
const KEEP = process.argv.includes('--keep');
const T0 = Date.now();

function log(msg) {
    console.log(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}
function skip(msg) {
    console.log('SKIP: ' + msg);
    process.exit(77);
}

class Fail extends Error {}
function fail(msg) {
    throw new Fail(msg);
}

// ---- prerequisites --------------------------------------------------------
if (!fs.existsSync(CHROMIUM)) {
    skip(`${CHROMIUM} not found (apt-get install chromium)`);
}
const pwPath = path.join(MODULES, 'node_modules', 'playwright-core', 'index.mjs');
if (!fs.existsSync(pwPath)) {
    skip(`playwright-core not installed in ${MODULES} (npm ci)`);
}
for (const b of ['quotebus-exsim', 'quotebus-adapter', 'quotebus-broker']) {
    if (!fs.existsSync(path.join(BIN, b))) {
        skip(`${b} not built in ${BIN}`);
    }
}
const brokerHelp = spawnSync(path.join(BIN, 'quotebus-broker'), ['--help'], { encoding: 'utf8' });
const helpText = (brokerHelp.stdout || '') + (brokerHelp.stderr || '');
if (!helpText.includes('--http-listen')) {
    skip('quotebus-broker has no websocket/http endpoint yet (no --http-listen in its --help)');
}
const { chromium } = await import(pathToFileURL(pwPath));
// A simulator that also speaks HTX (on /feed) lets the page consolidate two
// exchanges' books of the same pair.
const simHelp = spawnSync(path.join(BIN, 'quotebus-exsim'), ['--help'], { encoding: 'utf8' }).stdout || '';
const WITH_HTX = /HTX/.test(simHelp);

// ---- processes ------------------------------------------------------------
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qb-browser-'));
const procs = [];

function start(name, argv) {
    const out = fs.openSync(path.join(tmp, name + '.out'), 'w');
    const err = fs.openSync(path.join(tmp, name + '.err'), 'w');
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', out, err], detached: true });
    p.qbName = name;
    p.exited = null;
    p.on('exit', (code, sig) => {
        p.exited = code === null ? sig : code;
    });
    procs.push(p);
    return p;
}

function killGroup(p, sig) {
    if (p.exited === null) {
        try {
            process.kill(-p.pid, sig);
        } catch (e) {
            /* already gone */
        }
    }
}

async function stop(p, ms = 8000) {
    killGroup(p, 'SIGTERM');
    const t = Date.now();
    while (p.exited === null && Date.now() - t < ms) {
        await sleep(50);
    }
    if (p.exited === null) {
        killGroup(p, 'SIGKILL');
        await sleep(200);
    }
    return p.exited;
}

function tail(name, n = 30) {
    try {
        const lines = fs.readFileSync(path.join(tmp, name + '.err'), 'utf8').split('\n');
        return lines.slice(-n).join('\n');
    } catch (e) {
        return '';
    }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred, ms, what) {
    const t = Date.now();
    let last;
    while (Date.now() - t < ms) {
        last = await pred();
        if (last) {
            return last;
        }
        await sleep(100);
    }
    fail(`timed out after ${ms / 1000} s waiting for ${what}`);
}

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
        s.on('error', reject);
    });
}

function portOpen(port) {
    return new Promise((resolve) => {
        const c = net.connect(port, '127.0.0.1');
        c.on('connect', () => {
            c.destroy();
            resolve(true);
        });
        c.on('error', () => resolve(false));
    });
}

function readDump(file) {
    try {
        const out = {};
        for (const ln of fs.readFileSync(file, 'utf8').split('\n')) {
            if (ln.trim()) {
                const d = JSON.parse(ln);
                out[`${d.exchange || 'binance'}:${d.symbol}`] = d;
            }
        }
        return Object.keys(out).length ? out : null;
    } catch (e) {
        return null;
    }
}

// ---- the test -------------------------------------------------------------
const RATE = 400;
const EVENTS = RATE * 20;       // about 20 s of deltas: the broker restart happens mid-stream
let browser;
let page;
let failed = false;
const pageErrors = [];

async function text(id) {
    return (await page.getByTestId(id).first().textContent()).trim();
}

async function shot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const p = path.join(ARTIFACTS, name);
    await page.screenshot({ path: p, fullPage: true });
    log(`screenshot: ${p}`);
}

// The page's view of one book must equal the simulator's final book.
async function checkExact(dump, sym) {
    const d = dump[`binance:${sym.replace('-', '')}`];
    if (!d) {
        fail(`simulator dump has no binance ${sym}`);
    }
    const bb = d.bids[0][0];
    const ba = d.asks[0][0];
    await waitFor(async () => (await text('best-bid')) === bb && (await text('best-ask')) === ba &&
                  (await text('ladder-topic')) === `book.binance.${sym}`,
                  20000, `${sym}: best bid ${bb} / best ask ${ba} on the page ` +
                  `(page shows ${await text('best-bid')} / ${await text('best-ask')})`);
    // Every visible level, both sides: exact strings, and the cumulative depth.
    const got = await page.evaluate(() => {
        const side = (s) => {
            const out = [];
            for (let i = 0; i < 20; i++) {
                const q = (id) => document.querySelector(`[data-testid="${s}-${id}-${i}"]`);
                if (!q('px') || !q('px').textContent) {
                    break;
                }
                out.push([q('px').textContent, q('qty').textContent, q('cum').textContent]);
            }
            return out;
        };
        return { bids: side('bid'), asks: side('ask') };
    });
    for (const s of ['bids', 'asks']) {
        const want = [];
        const sum = new DecSum();
        for (const [px, qty] of d[s].slice(0, 20)) {
            want.push([px, qty, sum.add(qty).toString()]);
        }
        if (JSON.stringify(got[s]) !== JSON.stringify(want)) {
            fail(`${sym} ${s}: the ladder differs from the simulator's book:\n` +
                 `page ${JSON.stringify(got[s].slice(0, 4))}...\nsim  ${JSON.stringify(want.slice(0, 4))}...`);
        }
    }
    const spread = decSub(ba, bb);
    if ((await text('spread')) !== spread) {
        fail(`${sym}: spread ${await text('spread')}, want ${spread}`);
    }
    // Consolidated: the best bid (highest) and ask (lowest) over binance and,
    // when fed, htx (its book of the same pair, simulator symbol btcusdt).
    let cb = { px: bb, ex: ['binance'] };
    let ca = { px: ba, ex: ['binance'] };
    const h = WITH_HTX ? dump[`htx:${sym.replace('-', '').toLowerCase()}`] : null;
    if (WITH_HTX && !h) {
        fail(`simulator dump has no htx ${sym}`);
    }
    if (h) {
        const hb = h.bids[0][0];
        const ha = h.asks[0][0];
        const c1 = decCmp(hb, cb.px);
        cb = c1 > 0 ? { px: hb, ex: ['htx'] } : c1 === 0 ? { px: cb.px, ex: ['binance', 'htx'] } : cb;
        const c2 = decCmp(ha, ca.px);
        ca = c2 < 0 ? { px: ha, ex: ['htx'] } : c2 === 0 ? { px: ca.px, ex: ['binance', 'htx'] } : ca;
        // HTX sends its own decimal text ("2995.12"); the dump writes 8
        // decimals: equal by value, and the page shows the exchange's text.
        const cell = async (i) => (await page.getByTestId('venue-htx').locator('td').nth(i).textContent());
        const sameValue = (a, b) => /^\d+(\.\d+)?$/.test(a) && decCmp(a, b) === 0;
        await waitFor(async () => sameValue(await cell(0), hb) && sameValue(await cell(1), ha),
                      15000, `${sym}: the htx row to show the simulator's ${hb} / ${ha} ` +
                      `(page: ${await cell(0)} / ${await cell(1)})`);
    }
    const sameValue = (a, b) => /^\d+(\.\d+)?$/.test(a) && decCmp(a, b) === 0;
    await waitFor(async () => sameValue(await text('consolidated-bid'), cb.px) &&
                  sameValue(await text('consolidated-ask'), ca.px), 15000,
                  `${sym}: consolidated ${cb.px} / ${ca.px} (page: ${await text('consolidated-bid')} / ` +
                  `${await text('consolidated-ask')})`);
    const bex = (await text('consolidated-bid-ex')).split(' · ')[0];
    const aex = (await text('consolidated-ask-ex')).split(' · ')[0];
    if (bex !== cb.ex.join(', ') || aex !== ca.ex.join(', ')) {
        fail(`${sym}: consolidated exchanges ${bex} / ${aex}, want ${cb.ex} / ${ca.ex}`);
    }
    const crossed = decCmp(cb.px, ca.px) >= 0;
    if ((await page.getByTestId('consolidated-crossed').isVisible()) !== crossed) {
        fail(`${sym}: the "crossed across exchanges" note should be ${crossed ? 'shown' : 'hidden'}`);
    }
    log(`${sym}: consolidated best bid ${cb.px} (${cb.ex}), best ask ${ca.px} (${ca.ex})` +
        (crossed ? ', crossed across exchanges (shown)' : ''));
    log(`${sym}: page equals the simulator: best bid ${bb}, best ask ${ba}, spread ${spread}, ` +
        `${got.bids.length}+${got.asks.length} levels with cumulative depth`);
}

// The book on the page is live and moving: its seq advances and deltas apply.
async function checkUpdating(what) {
    const seq0 = Number(await text('book-seq'));
    const d0 = await page.evaluate(() => {
        const q = window.quotebus;
        const b = q.books.get(`book.${q.ex}.${q.sym}`);
        return b ? b.deltas : -1;
    });
    await sleep(1200);
    const seq1 = Number(await text('book-seq'));
    const d1 = await page.evaluate(() => {
        const q = window.quotebus;
        const b = q.books.get(`book.${q.ex}.${q.sym}`);
        return b ? b.deltas : -1;
    });
    if (!(seq1 > seq0) || !(d1 > d0)) {
        fail(`${what}: the book is not updating: seq ${seq0} -> ${seq1}, deltas ${d0} -> ${d1}`);
    }
    log(`${what}: updating (seq ${seq0} -> ${seq1}, ${d1 - d0} deltas applied in 1.2 s)`);
}

async function main() {
    const simPortFile = path.join(tmp, 'exsim.port');
    const dumpFile = path.join(tmp, 'exsim.dump');
    const sim = start('exsim', [path.join(BIN, 'quotebus-exsim'), '--host', '127.0.0.1', '--port', '0',
        '--port-file', simPortFile, '--dump', dumpFile, '--rate', String(RATE),
        '--trade-rate', '10', '--events', String(EVENTS), '--seed', '21']);
    const simPort = await waitFor(() => {
        try {
            return parseInt(fs.readFileSync(simPortFile, 'utf8'), 10) || null;
        } catch (e) {
            return null;
        }
    }, 15000, 'simulator port');
    const httpPort = await freePort();
    const ingest = `ipc://${tmp}/ingest.ipc`;
    const brokerArgv = [path.join(BIN, 'quotebus-broker'), '--no-spawn', '--ingest', ingest,
        '--pub', `ipc://${tmp}/pub.ipc`, '--http-listen', `127.0.0.1:${httpPort}`];
    if (helpText.includes('--web-root')) {
        brokerArgv.push('--web-root', WEB);
    }
    let broker = start('broker', brokerArgv);
    await waitFor(() => portOpen(httpPort), 15000, 'broker http port');
    const adapter = start('adapter', [path.join(BIN, 'quotebus-adapter'), '--symbols', 'BTC-USDT,ETH-USDT',
        '--ws-url', `ws://127.0.0.1:${simPort}/stream`, '--rest-url', `http://127.0.0.1:${simPort}`,
        '--broker', ingest, 'binance']);

    let htx = null;
    if (WITH_HTX) {
        htx = start('adapter-htx', [path.join(BIN, 'quotebus-adapter'), '--symbols', 'BTC-USDT,ETH-USDT',
            '--ws-url', `ws://127.0.0.1:${simPort}/feed`, '--broker', ingest, 'htx']);
        log('feeding htx too (consolidated view over two exchanges)');
    }
    const profile = fs.mkdtempSync(path.join(tmp, 'chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1280, height: 980 },
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
        // Refused websocket connections while the broker is down are expected.
        if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) {
            pageErrors.push('console: ' + m.text());
        }
    });
    const url = `http://127.0.0.1:${httpPort}/?ex=binance&sym=BTC-USDT`;
    const resp = await page.goto(url);
    if (!resp || resp.status() !== 200) {
        fail(`GET / answered ${resp && resp.status()}`);
    }
    log(`page loaded from ${url}`);

    await waitFor(async () => (await text('conn-state')) === 'live', 10000, 'connection live');
    await waitFor(async () => (await text('best-bid')) !== '–' && (await text('feed-status')) === 'live',
                  20000, 'a live book on the page');
    const labels = await page.evaluate(() => [...document.querySelectorAll('select')]
        .map((s) => (s.labels && s.labels.length ? s.labels[0].textContent : '')));
    if (labels.some((l) => !l)) {
        fail('a select has no label');
    }

    // At most one render per animation frame while many messages arrive.
    const r = await page.evaluate(() => new Promise((resolve) => {
        const s0 = { msgs: window.quotebus.msgs, renders: window.quotebus.renders };
        let frames = 0;
        const t0 = performance.now();
        const tick = () => {
            frames += 1;
            if (performance.now() - t0 < 1500) {
                requestAnimationFrame(tick);
            } else {
                resolve({ frames, msgs: window.quotebus.msgs - s0.msgs,
                          renders: window.quotebus.renders - s0.renders });
            }
        };
        requestAnimationFrame(tick);
    }));
    log(`in 1.5 s: ${r.msgs} messages, ${r.renders} renders, ${r.frames} animation frames`);
    if (r.renders > r.frames + 1) {
        fail(`more renders (${r.renders}) than animation frames (${r.frames})`);
    }
    if (r.msgs < 100) {
        fail(`only ${r.msgs} messages in 1.5 s: the feed is not flowing`);
    }
    // Last trades: rows appear, with exact decimal strings.
    const trades = await waitFor(() => page.evaluate(() =>
        [...document.querySelectorAll('[data-testid="trades"] tbody tr')]
            .map((tr) => [...tr.cells].map((c) => c.textContent))), 10000, 'trades on the page')
        .then((rows) => rows.length ? rows : fail('no trades'));
    for (const [, px, qty, side] of trades) {
        if (!/^\d+\.\d+$/.test(px) || !/^\d+(\.\d+)?$/.test(qty) || !['buy', 'sell', 'unknown'].includes(side)) {
            fail(`bad trade row: ${px} ${qty} ${side}`);
        }
    }
    await shot('page-live.png');

    // Switch symbol with the select, as a user would: the other book shows.
    await page.getByTestId('symbol-select').selectOption('ETH-USDT');
    await waitFor(async () => (await text('ladder-topic')) === 'book.binance.ETH-USDT' &&
                  (await text('best-bid')) !== '–', 10000, 'the ETH-USDT book after the switch');
    if (!page.url().includes('sym=ETH-USDT')) {
        fail(`the URL does not keep the choice: ${page.url()}`);
    }
    await checkUpdating('ETH-USDT, before the restart');

    // Kill the broker mid-stream: the page must say so, then recover by itself.
    log('kill -9 broker');
    killGroup(broker, 'SIGKILL');
    await waitFor(async () => ['reconnecting', 'connecting'].includes(await text('conn-state')),
                  10000, 'the page to show the lost connection');
    if ((await text('best-bid')) !== '–') {
        fail('the page still shows a best bid without a connection');
    }
    await shot('page-reconnecting.png');
    await sleep(1000);
    broker = start('broker2', brokerArgv);
    log('broker restarted');
    await waitFor(async () => (await text('conn-state')) === 'live', 20000, 'connection live again');
    await waitFor(async () => (await text('feed-status')) === 'live' && (await text('best-bid')) !== '–',
                  15000, 'a live book again');
    await checkUpdating('ETH-USDT, after the restart');
    await shot('page-recovered.png');

    // When the simulator stops, the recovered book is exactly the simulator's;
    // and so is the other symbol after switching back.
    const dump = await waitFor(() => readDump(dumpFile), 60000, 'the simulator final books');
    await checkExact(dump, 'ETH-USDT');
    await page.getByTestId('symbol-select').selectOption('BTC-USDT');
    await checkExact(dump, 'BTC-USDT');
    await shot('page-final.png');

    // A broker that requires a bearer token: the page passes ?token= on; a
    // page without the token shows that it was rejected.
    log('restarting the broker with --http-token');
    await stop(broker);
    broker = start('broker3', brokerArgv.concat(['--http-token', 'pa55-word']));
    await waitFor(() => portOpen(httpPort), 15000, 'broker http port');
    const bare = await browser.newPage();
    await bare.goto(`http://127.0.0.1:${httpPort}/?ex=binance&sym=BTC-USDT`);
    await waitFor(async () => (await bare.getByTestId('conn-state').textContent()) === 'rejected',
                  10000, 'a page without the token to show "rejected"');
    const detail = await bare.getByTestId('conn-detail').textContent();
    log(`without the token: rejected (${detail})`);
    await bare.close();
    await page.goto(`http://127.0.0.1:${httpPort}/?ex=binance&sym=BTC-USDT&token=pa55-word`);
    await waitFor(async () => (await text('conn-state')) === 'live' && (await text('best-bid')) !== '–',
                  15000, 'the page with ?token= to be live with a book');
    log('with ?token=: live, book shown');

    // Issue 7: a feed state is shown with its reason. The exchange goes
    // away (kill -9 of the simulator): the adapter reports "down" with the
    // connect error; the badge says down, the note and the badge's tooltip
    // give the reason.
    log('kill -9 of the simulator (upstream unreachable)');
    killGroup(sim, 'SIGKILL');
    await waitFor(async () => (await text('feed-status')) === 'down', 30000,
                  'the feed to be shown down');
    const downNote = await text('book-note');
    const downTitle = await page.getByTestId('feed-status').getAttribute('title');
    if (!downNote.startsWith('down: upstream unreachable') || await page.getByTestId('book-note').isHidden()) {
        fail(`the note does not give the down reason: ${JSON.stringify(downNote)}`);
    }
    if (!downTitle || !downTitle.startsWith('down: upstream unreachable')) {
        fail(`the feed badge has no reason tooltip: ${JSON.stringify(downTitle)}`);
    }
    const badgeColor = await page.getByTestId('feed-status').evaluate((el) => getComputedStyle(el).color);
    log(`down shown: note ${JSON.stringify(downNote)}, badge color ${badgeColor}`);
    await shot('page-down.png');

    if (pageErrors.length) {
        fail('errors on the page:\n' + pageErrors.join('\n'));
    }
    const feeders = htx ? [adapter, htx] : [adapter];
    for (const p of [...feeders, broker]) {
        if (p.exited !== null) {
            fail(`${p.qbName} died (${p.exited}):\n${tail(p.qbName)}`);
        }
    }
    // Clean exits (under AddressSanitizer this is also the leak check).
    await browser.close();
    browser = null;
    for (const p of [...feeders, broker]) {
        const rc = await stop(p);
        if (rc !== 0) {
            fail(`${p.qbName} exited ${rc} on SIGTERM:\n${tail(p.qbName)}`);
        }
    }
}

let code = 0;
try {
    await main();
    log('PASS');
} catch (e) {
    failed = true;
    code = 1;
    console.log('FAIL: ' + (e instanceof Fail ? e.message : e.stack));
    if (page) {
        try {
            await shot('page-failure.png');
        } catch (e2) {
            /* best effort */
        }
    }
    for (const p of procs) {
        console.log(`---- ${p.qbName} stderr (last 30 lines) ----\n${tail(p.qbName)}`);
    }
} finally {
    if (browser) {
        await browser.close().catch(() => {});
    }
    for (const p of procs.slice().reverse()) {
        await stop(p);
    }
    if (KEEP || failed) {
        log(`kept ${tmp}`);
    } else {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}
process.exit(code);
