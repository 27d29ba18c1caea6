// test_page.mjs: the quotebus page (clients/web/) in a real browser.
//
// Starts quotebus-exsim (--events N --dump: the final books are known),
// quotebus-adapter binance and quotebus-broker with its http/websocket
// endpoint on free ports, opens the page that the broker serves in Debian's
// chromium (headless, driven by playwright-core), and checks:
//   - the connection becomes live and the ladder shows a book;
//   - while deltas flow, the page renders at most once per animation frame;
//   - when the simulator has stopped, the best bid and ask, the top 20 levels
//     of each side (prices and sizes), the cumulative depth, the spread and
//     the consolidated best bid/ask equal the simulator's book exactly (by
//     value), each instrument written at its own precision (BTC-USDT: prices
//     2 decimals, sizes and totals 5; ETH-USDT: 2 and 4; never Binance's
//     8-decimal text), with the decimal points of every column aligned;
//   - in a window 1280 x 1000 the ladder's 20th bid is inside the viewport,
//     no size or depth bar overlaps the text of a price, size or total, and
//     each number is the topmost element at its own center (screenshot
//     ladder-1000px.png);
//   - the depth chart and the mid price / spread chart are canvases of
//     nonzero size with lines drawn in the bid and in the ask color (pixels
//     read back with getImageData; screenshots depth-chart.png, mid-chart.png);
//   - an instrument the broker does not have (?ex=kraken&sym=DOGE-EUR) says
//     "no instrument ... on this broker; nearest: ..." instead of waiting for
//     ever, from the broker's "subscribed" verdict when it sends one (also
//     injected into the websocket by the test, for a broker that does not)
//     and from a list request when it does not (the verdict stripped by the
//     test); a nearest instrument's link opens it (page-missing.png);
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
// Exit 0 pass, 1 fail, 77 skip (under CI=true a skip is a failure: the
// suite's skip policy, see run_browser_test.sh).

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
    if (!['', '0', 'false', 'no'].includes((process.env.CI || '').toLowerCase())) {
        console.log('FAIL (CI): would have skipped: ' + msg);
        process.exit(1);
    }
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
        console.log(`FAIL: ${b} not built in ${BIN}`);
        process.exit(1);
    }
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
const EVENTS = RATE * 30;       // about 30 s of deltas: the broker restart happens mid-stream
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

// Decimals each instrument is shown with (the simulator's tick and lot:
// tests/exsim/exsim_market.c): [prices, sizes and totals].
const PRECISION = { 'BTC-USDT': [2, 5], 'ETH-USDT': [2, 4] };
const sameValue = (a, b) => /^-?\d+(\.\d+)?$/.test(a) && decCmp(a, b) === 0;
const decimalsOf = (v) => (v.includes('.') ? v.length - v.indexOf('.') - 1 : 0);

// The x positions of the decimal points of every non-empty cell of the
// elements matched by `selector` (or of their right edges when a value has
// no point): one column is aligned when they are all equal.
async function pointsOf(selector) {
    return page.evaluate((sel) => [...document.querySelectorAll(sel)].map((el) => {
        const t = el.firstChild;
        if (!t || t.nodeType !== Node.TEXT_NODE || !t.textContent.trim() || !/\d/.test(t.textContent)) {
            return null;
        }
        const rg = document.createRange();
        const i = t.textContent.indexOf('.');
        if (i < 0) {
            rg.selectNodeContents(el);
            return rg.getBoundingClientRect().right;
        }
        rg.setStart(t, i);
        rg.setEnd(t, i + 1);
        return rg.getBoundingClientRect().left;
    }).filter((x) => x !== null), selector);
}

async function checkAligned(selector, what) {
    const xs = await pointsOf(selector);
    if (xs.length < 2) {
        fail(`${what}: fewer than 2 values to align`);
    }
    const spread = Math.max(...xs) - Math.min(...xs);
    if (spread > 0.5) {
        fail(`${what}: decimal points not aligned (x from ${Math.min(...xs)} to ${Math.max(...xs)})`);
    }
    return xs.length;
}

// The page's view of one book must equal the simulator's final book.
async function checkExact(dump, sym) {
    const d = dump[`binance:${sym.replace('-', '')}`];
    if (!d) {
        fail(`simulator dump has no binance ${sym}`);
    }
    const [pxDec, qtyDec] = PRECISION[sym];
    const bb = d.bids[0][0];
    const ba = d.asks[0][0];
    await waitFor(async () => sameValue(await text('best-bid'), bb) && sameValue(await text('best-ask'), ba) &&
                  (await text('ladder-topic')) === `book.binance.${sym}`,
                  20000, `${sym}: best bid ${bb} / best ask ${ba} on the page ` +
                  `(page shows ${await text('best-bid')} / ${await text('best-ask')})`);
    // Every visible level, both sides: exact values, and the cumulative depth.
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
        const same = got[s].length === want.length &&
            got[s].every((row, i) => row.every((v, j) => sameValue(v, want[i][j])));
        if (!same) {
            fail(`${sym} ${s}: the ladder differs from the simulator's book:\n` +
                 `page ${JSON.stringify(got[s].slice(0, 4))}...\nsim  ${JSON.stringify(want.slice(0, 4))}...`);
        }
        // One precision per instrument: never 60036.66000000 next to 3001.5.
        for (const [px, qty, cum] of got[s]) {
            if (decimalsOf(px) !== pxDec || decimalsOf(qty) !== qtyDec || decimalsOf(cum) !== qtyDec) {
                fail(`${sym} ${s}: level ${px} / ${qty} / ${cum} is not at the instrument's precision ` +
                     `(${pxDec} price decimals, ${qtyDec} size decimals)`);
            }
        }
    }
    for (const col of ['px', 'qty', 'cum']) {
        await checkAligned(`[data-testid="ladder"] .lvl .${col}`, `${sym} ladder ${col}`);
    }
    const spread = decSub(ba, bb);
    const spreadText = await text('spread');
    if (!sameValue(spreadText, spread) || decimalsOf(spreadText) !== pxDec) {
        fail(`${sym}: spread ${spreadText}, want ${spread} with ${pxDec} decimals`);
    }
    for (const id of ['best-bid', 'best-ask']) {
        if (decimalsOf(await text(id)) !== pxDec) {
            fail(`${sym}: ${id} ${await text(id)} is not at ${pxDec} decimals`);
        }
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
        // decimals: equal by value; the page shows each at its precision.
        const cell = async (i) => (await page.getByTestId('venue-htx').locator('td').nth(i).textContent()).trim();
        await waitFor(async () => sameValue(await cell(0), hb) && sameValue(await cell(1), ha),
                      15000, `${sym}: the htx row to show the simulator's ${hb} / ${ha} ` +
                      `(page: ${await cell(0)} / ${await cell(1)})`);
        for (const col of ['bid', 'ask']) {
            await checkAligned(`[data-testid="venues"] td.${col}`, `${sym} exchanges' ${col} column`);
        }
    }
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
        `${got.bids.length}+${got.asks.length} levels with cumulative depth, shown with ${pxDec} / ` +
        `${qtyDec} decimals, points aligned`);
}

// The ladder in a 1000 px high window: all 20 levels of both sides inside
// the viewport, the bars never over the numbers.
async function checkLadderLayout() {
    await page.evaluate(() => window.scrollTo(0, 0));
    const r = await page.evaluate(() => {
        const q = (id) => document.querySelector(`[data-testid="${id}"]`);
        const textBox = (el) => {
            if (!el.textContent) {
                return null;
            }
            const rg = document.createRange();
            rg.selectNodeContents(el);
            const b = rg.getBoundingClientRect();
            return b.width > 0 ? b : null;
        };
        const meets = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        const out = { vh: window.innerHeight, rows: {}, bars: 0, noBars: [], overlaps: [], covered: [],
                      clipped: [], numbers: 0 };
        for (const side of ['bid', 'ask']) {
            const row = q(`${side}-px-19`).closest('[role="row"]').getBoundingClientRect();
            out.rows[side] = { top: row.top, bottom: row.bottom };
            for (let i = 0; i < 20; i++) {
                const cells = ['px', 'qty', 'cum'].map((k) => q(`${side}-${k}-${i}`));
                const bars = [q(`${side}-bar-${i}`), q(`${side}-depth-${i}`)];
                if (bars.some((b) => !b)) {
                    out.noBars.push(`${side} ${i}`);
                    continue;
                }
                for (const b of bars) {
                    const bb = b.getBoundingClientRect();
                    if (bb.width <= 0 || bb.height <= 0) {
                        continue;
                    }
                    out.bars += 1;
                    for (const c of cells) {
                        const t = textBox(c);
                        if (t && meets(bb, t)) {
                            out.overlaps.push(`${b.dataset.testid} over ${c.dataset.testid} "${c.textContent}"`);
                        }
                    }
                }
                for (const c of cells) {
                    const t = textBox(c);
                    if (!t) {
                        continue;
                    }
                    out.numbers += 1;
                    const top = document.elementFromPoint((t.left + t.right) / 2, (t.top + t.bottom) / 2);
                    if (!top || !(top === c || c.contains(top))) {
                        out.covered.push(`${c.dataset.testid} under ${top ? top.className || top.tagName : 'nothing'}`);
                    }
                    if (c.scrollWidth > c.clientWidth) {
                        out.clipped.push(`${c.dataset.testid} "${c.textContent}"`);
                    }
                }
            }
        }
        return out;
    });
    const show = (a) => a.slice(0, 6).join('; ') + (a.length > 6 ? ` (+${a.length - 6})` : '');
    if (r.noBars.length) {
        fail(`the size and depth bars are not elements of their own (rows ${show(r.noBars)})`);
    }
    for (const side of ['bid', 'ask']) {
        if (r.rows[side].top < 0 || r.rows[side].bottom > r.vh) {
            fail(`the 20th ${side} level (y ${r.rows[side].top}..${r.rows[side].bottom}) is outside the ` +
                 `${r.vh} px high window`);
        }
    }
    if (r.bars < 20) {
        fail(`only ${r.bars} bars drawn`);
    }
    if (r.overlaps.length) {
        fail(`bars overlap numbers: ${show(r.overlaps)}`);
    }
    if (r.covered.length) {
        fail(`numbers covered by other elements: ${show(r.covered)}`);
    }
    if (r.clipped.length) {
        fail(`numbers cut off: ${show(r.clipped)}`);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const p = path.join(ARTIFACTS, 'ladder-1000px.png');
    await page.screenshot({ path: p });
    log(`ladder in ${r.vh} px: 20th bid ends at y ${Math.round(r.rows.bid.bottom)}, ${r.bars} bars, ` +
        `${r.numbers} numbers, none overlapped or covered; screenshot: ${p}`);
}

// The two canvases exist, have a size, and show lines in the bid and in the
// ask colors (opaque pixels read back from the canvas; the fills are
// translucent and do not count).
async function checkCharts() {
    const counts = await page.evaluate(() => {
        const css = getComputedStyle(document.documentElement);
        const rgb = (name) => {
            const m = /#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(css.getPropertyValue(name));
            return m ? [1, 2, 3].map((i) => parseInt(m[i], 16)) : null;
        };
        const bid = rgb('--bid');
        const ask = rgb('--ask');
        const out = {};
        for (const id of ['depth-chart', 'mid-chart']) {
            const c = document.querySelector(`[data-testid="${id}"]`);
            if (!c || c.tagName !== 'CANVAS') {
                out[id] = null;
                continue;
            }
            const res = { w: c.width, h: c.height, cssW: c.clientWidth, cssH: c.clientHeight,
                          bid: 0, ask: 0, other: 0 };
            if (c.width && c.height) {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const near = (i, k) => Math.abs(d[i] - k[0]) + Math.abs(d[i + 1] - k[1]) + Math.abs(d[i + 2] - k[2]) < 60;
                for (let i = 0; i < d.length; i += 4) {
                    if (d[i + 3] < 200) {
                        continue;
                    }
                    if (near(i, bid)) {
                        res.bid += 1;
                    } else if (near(i, ask)) {
                        res.ask += 1;
                    } else {
                        res.other += 1;
                    }
                }
            }
            out[id] = res;
        }
        return out;
    });
    for (const [id, c] of Object.entries(counts)) {
        if (!c) {
            fail(`no <canvas data-testid="${id}">`);
        }
        if (!(c.w > 0 && c.h > 0 && c.cssW > 100 && c.cssH > 50)) {
            fail(`${id}: size ${c.cssW} x ${c.cssH} css px, ${c.w} x ${c.h} pixels`);
        }
        if (c.bid < 50 || c.ask < 50) {
            fail(`${id}: too few pixels drawn in the bid color (${c.bid}) or the ask color (${c.ask})`);
        }
        const p = path.join(ARTIFACTS, `${id}.png`);
        await page.getByTestId(id).screenshot({ path: p });
        log(`${id}: ${c.cssW} x ${c.cssH} px, ${c.bid} bid-colored and ${c.ask} ask-colored pixels; ` +
            `screenshot: ${p}`);
    }
}

// An instrument the broker does not have. mode: 'broker' (the websocket as
// it is), 'strip' (the test removes the broker's verdict from "subscribed"
// replies: the page must find out from a list), 'inject' (the test adds a
// verdict to them: the page must use it).
const MISSING = 'book.kraken.DOGE-EUR';
const INJECTED_NEAREST = ['book.htx.ETH-USDT', 'book.binance.ETH-USDT'];

async function openMissing(httpPort, mode) {
    const p = await browser.newPage();
    p.on('pageerror', (e) => pageErrors.push(e.message));
    let verdict = null;          // what the broker's own reply said
    await p.routeWebSocket(/\/ws/, (ws) => {
        const server = ws.connectToServer();
        server.onMessage((m) => {
            let j = null;
            try {
                j = typeof m === 'string' ? JSON.parse(m) : null;
            } catch (e) {
                j = null;
            }
            if (!j || j.type !== 'subscribed' || !Array.isArray(j.topics) || !j.topics.includes(MISSING)) {
                ws.send(m);
                return;
            }
            if (verdict === null) {
                verdict = Array.isArray(j.unmatched) ? j : false;
            }
            if (mode === 'strip') {
                delete j.matching;
                delete j.unmatched;
                delete j.nearest;
            } else if (mode === 'inject') {
                j.matching = 0;
                j.unmatched = j.topics.filter((t) => t.includes('.kraken.'));
                j.nearest = INJECTED_NEAREST;
            }
            ws.send(JSON.stringify(j));
        });
    });
    const t0 = Date.now();
    await p.goto(`http://127.0.0.1:${httpPort}/?ex=kraken&sym=DOGE-EUR`);
    const note = () => p.getByTestId('book-note').textContent();
    await waitFor(async () => /^no instrument book\.kraken\.DOGE-EUR on this broker; nearest: book\./.test(await note()),
                  10000, `${mode}: the page to say that ${MISSING} does not exist (note: ${JSON.stringify(await note())}, ` +
                  `middle: ${JSON.stringify(await p.getByTestId('ladder-mid').textContent())})`);
    const ms = Date.now() - t0;
    const st = await p.evaluate(() => window.quotebus.missing);
    const mid = await p.getByTestId('ladder-mid').textContent();
    const feed = await p.getByTestId('feed-status').textContent();
    if (/waiting for the book/.test(mid) || feed !== 'missing') {
        fail(`${mode}: ladder says ${JSON.stringify(mid)}, feed ${JSON.stringify(feed)}`);
    }
    return { p, st, ms, verdict, text: await note() };
}

async function checkMissing(httpPort) {
    // As the broker answers.
    const real = await openMissing(httpPort, 'broker');
    const brokerVerdict = Boolean(real.verdict);
    if (brokerVerdict && real.st.source !== 'subscribed') {
        fail(`the broker said ${MISSING} matches nothing, the page did not use it (${JSON.stringify(real.st)})`);
    }
    log(`${MISSING}: "${real.text}" after ${real.ms} ms (from ${real.st.source}; the broker's subscribed ` +
        `reply ${brokerVerdict ? 'has' : 'has no'} unmatched/nearest)`);
    const p1 = path.join(ARTIFACTS, 'page-missing.png');
    await real.p.screenshot({ path: p1 });
    log(`screenshot: ${p1}`);
    // A nearest instrument's link opens it.
    const link = real.p.getByTestId('nearest-0');
    const target = await link.textContent();
    const tc = Date.now();
    await link.click();
    log(`clicked the link to ${target} (${Date.now() - tc} ms)`);
    await waitFor(async () => (await real.p.getByTestId('ladder-topic').textContent()) === target &&
                  (await real.p.getByTestId('best-bid').textContent()) !== '–' &&
                  await real.p.getByTestId('book-note').isHidden(), 10000,
                  `the nearest instrument ${target} to open from its link (topic ` +
                  `${await real.p.getByTestId('ladder-topic').textContent()}, best bid ` +
                  `${await real.p.getByTestId('best-bid').textContent()}, note ` +
                  `${JSON.stringify(await real.p.getByTestId('book-note').textContent())})`);
    log(`link to ${target}: opened, book shown`);
    await real.p.close();

    // Without a verdict from the broker: found out from a list request.
    const strip = await openMissing(httpPort, 'strip');
    if (strip.st.source !== 'list' || !strip.st.nearest.length) {
        fail(`without the broker's verdict: ${JSON.stringify(strip.st)}`);
    }
    log(`verdict stripped: said after ${strip.ms} ms from a list request, nearest ${strip.st.nearest.join(', ')}`);
    await strip.p.close();

    // With a verdict (injected): used at once, with the broker's nearest.
    const inj = await openMissing(httpPort, 'inject');
    if (inj.st.source !== 'subscribed' || JSON.stringify(inj.st.nearest) !== JSON.stringify(INJECTED_NEAREST) ||
        inj.ms > 1800) {
        fail(`with the broker's verdict: ${JSON.stringify(inj.st)} after ${inj.ms} ms`);
    }
    log(`verdict injected: said after ${inj.ms} ms, nearest ${inj.st.nearest.join(', ')}`);
    await inj.p.close();
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
        '--pub', `ipc://${tmp}/pub.ipc`, '--http-listen', `127.0.0.1:${httpPort}`,
        '--web-root', WEB];
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
        viewport: { width: 1280, height: 1000 },
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
    await checkLadderLayout();
    await checkCharts();

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
    await checkMissing(httpPort);

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

    // A feed state is shown with its reason. The exchange goes
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
