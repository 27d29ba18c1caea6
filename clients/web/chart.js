// chart.js: the page's two charts, drawn on <canvas> with the 2D context
// (no library, no DOM other than the canvas it is given).
//
//   depth chart                         mid price and spread
//   cum ▲                               px ▲        ask ─┐_┌──
//       │▓▓▓▓▓┐           ┌░░░░░░░          │  ─ ─ mid ─ ─ ─ ─ ─
//       │     ▓▓▓┐   ┆   ┌░░            │        bid ─┘‾└──
//       └────────▓▓──┆──░░──▶ price       └────────────────────▶ time
//        bids (cum. from the best)  asks      (last few minutes)
//
// app.js calls drawDepth/drawMid from its one requestAnimationFrame render,
// so a chart is redrawn at most once per frame. Inputs are plain Numbers:
// the charts are display only, the exact decimals stay in book.js. The
// canvas's backing store follows its CSS box times devicePixelRatio, so
// lines stay sharp on high-density screens and the canvas resizes with the
// layout. Colors come from the page's CSS variables (--bid, --ask, ...), so
// style.css is the one place they are chosen.

function colors(canvas) {
    const cs = getComputedStyle(canvas);
    const v = (name, def) => (cs.getPropertyValue(name) || '').trim() || def;
    return {
        bid: v('--bid', '#2fbf71'),
        ask: v('--ask', '#f0596b'),
        accent: v('--accent', '#5aa9ff'),
        muted: v('--muted', '#8591a0'),
        line: v('--line', '#262f3a'),
        font: '11px ' + (v('--mono', 'monospace')),
    };
}

// Sizes the backing store to the CSS box and returns a context that draws
// in CSS pixels, or null when the canvas is not laid out (hidden).
function fit(canvas) {
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (w <= 0 || h <= 0) {
        return null;
    }
    const dpr = window.devicePixelRatio || 1;
    const bw = Math.round(w * dpr);
    const bh = Math.round(h * dpr);
    if (canvas.width !== bw || canvas.height !== bh) {
        canvas.width = bw;
        canvas.height = bh;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
}

function emptyNote(c, col, text) {
    c.ctx.fillStyle = col.muted;
    c.ctx.font = col.font;
    c.ctx.textAlign = 'center';
    c.ctx.textBaseline = 'middle';
    c.ctx.fillText(text, c.w / 2, c.h / 2);
}

function withAlpha(color, a) {
    // #rrggbb -> rgba(); other forms are used as they are.
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    return m ? `rgba(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)}, ${a})` : color;
}

const PAD = { top: 16, right: 6, bottom: 18, left: 6 };

// Depth chart. bids and asks: [{px, cum}] best first (Numbers: price and
// cumulative size). fmtPx(Number) -> label text. Returns true when it drew
// a book.
export function drawDepth(canvas, bids, asks, fmtPx, fmtQty) {
    const c = fit(canvas);
    if (!c) {
        return false;
    }
    const col = colors(canvas);
    if (!bids.length || !asks.length) {
        emptyNote(c, col, 'no book');
        return false;
    }
    const { ctx, w, h } = c;
    const mid = (bids[0].px + asks[0].px) / 2;
    // Symmetric around the mid, so the two sides are comparable.
    let half = Math.max(mid - bids[bids.length - 1].px, asks[asks.length - 1].px - mid);
    if (!(half > 0)) {
        half = Math.abs(mid) * 1e-4 || 1;
    }
    const lo = mid - half;
    const hi = mid + half;
    const maxCum = Math.max(bids[bids.length - 1].cum, asks[asks.length - 1].cum) * 1.08 || 1;
    const pw = w - PAD.left - PAD.right;
    const ph = h - PAD.top - PAD.bottom;
    const x = (px) => PAD.left + ((px - lo) / (hi - lo)) * pw;
    const y = (cum) => PAD.top + ph - (cum / maxCum) * ph;
    const base = y(0);

    // One side as a step line: flat at each level's cumulative size from
    // its price outwards to the next level's price.
    const side = (levels, color) => {
        const endX = x(levels[levels.length - 1].px);
        const line = new Path2D();
        line.moveTo(x(levels[0].px), base);
        for (let i = 0; i < levels.length; i++) {
            const nx = i + 1 < levels.length ? x(levels[i + 1].px) : endX;
            line.lineTo(x(levels[i].px), y(levels[i].cum));
            line.lineTo(nx, y(levels[i].cum));
        }
        const area = new Path2D(line);
        area.lineTo(endX, base);
        area.closePath();
        ctx.fillStyle = withAlpha(color, 0.22);
        ctx.fill(area);
        ctx.strokeStyle = color;
        ctx.lineWidth = 2;
        ctx.stroke(line);
    };
    ctx.strokeStyle = col.line;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(PAD.left, base + 0.5);
    ctx.lineTo(w - PAD.right, base + 0.5);
    ctx.stroke();
    side(bids, col.bid);
    side(asks, col.ask);
    ctx.setLineDash([3, 3]);
    ctx.strokeStyle = col.muted;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(x(mid)) + 0.5, PAD.top);
    ctx.lineTo(Math.round(x(mid)) + 0.5, base);
    ctx.stroke();
    ctx.setLineDash([]);

    ctx.font = col.font;
    ctx.fillStyle = col.muted;
    ctx.textBaseline = 'bottom';
    ctx.textAlign = 'left';
    ctx.fillText(fmtPx(lo), PAD.left, h - 2);
    ctx.textAlign = 'center';
    ctx.fillText(fmtPx(mid), x(mid), h - 2);
    ctx.textAlign = 'right';
    ctx.fillText(fmtPx(hi), w - PAD.right, h - 2);
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText('Σ ' + fmtQty(maxCum / 1.08), PAD.left, 2);
    return true;
}

// Mid price and spread over time. samples: [{t (ms), bid, ask}] oldest
// first (Numbers). minSpan: the smallest price range shown (a few ticks,
// so a quiet market is not magnified into noise). Returns true when it
// drew a line.
export function drawMid(canvas, samples, now, windowMs, minSpan, fmtPx) {
    const c = fit(canvas);
    if (!c) {
        return false;
    }
    const col = colors(canvas);
    const pts = samples.filter((s) => s.t >= now - windowMs);
    if (!pts.length) {
        emptyNote(c, col, 'no prices yet');
        return false;
    }
    const { ctx, w, h } = c;
    const t0 = Math.min(pts[0].t, now - 1000);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
        lo = Math.min(lo, p.bid, p.ask);
        hi = Math.max(hi, p.bid, p.ask);
    }
    if (hi - lo < minSpan) {
        const m = (hi + lo) / 2;
        lo = m - minSpan / 2;
        hi = m + minSpan / 2;
    }
    const padY = (hi - lo) * 0.08;
    lo -= padY;
    hi += padY;
    const pw = w - PAD.left - PAD.right;
    const ph = h - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + ((t - t0) / Math.max(1, now - t0)) * pw;
    const y = (px) => PAD.top + ph - ((px - lo) / (hi - lo)) * ph;

    // A price holds until the next sample: step lines, extended to now.
    const path = (key) => {
        const p = new Path2D();
        p.moveTo(x(pts[0].t), y(pts[0][key]));
        for (let i = 1; i < pts.length; i++) {
            p.lineTo(x(pts[i].t), y(pts[i - 1][key]));
            p.lineTo(x(pts[i].t), y(pts[i][key]));
        }
        p.lineTo(x(now), y(pts[pts.length - 1][key]));
        return p;
    };
    // The spread: the band between the best bid and the best ask.
    const band = new Path2D();
    band.moveTo(x(pts[0].t), y(pts[0].ask));
    for (let i = 1; i < pts.length; i++) {
        band.lineTo(x(pts[i].t), y(pts[i - 1].ask));
        band.lineTo(x(pts[i].t), y(pts[i].ask));
    }
    band.lineTo(x(now), y(pts[pts.length - 1].ask));
    band.lineTo(x(now), y(pts[pts.length - 1].bid));
    for (let i = pts.length - 1; i > 0; i--) {
        band.lineTo(x(pts[i].t), y(pts[i].bid));
        band.lineTo(x(pts[i].t), y(pts[i - 1].bid));
    }
    band.lineTo(x(pts[0].t), y(pts[0].bid));
    band.closePath();
    ctx.fillStyle = withAlpha(col.accent, 0.12);
    ctx.fill(band);

    ctx.lineWidth = 2;
    ctx.strokeStyle = col.bid;
    ctx.stroke(path('bid'));
    ctx.strokeStyle = col.ask;
    ctx.stroke(path('ask'));
    const mids = pts.map((p) => ({ t: p.t, mid: (p.bid + p.ask) / 2 }));
    const mp = new Path2D();
    mp.moveTo(x(mids[0].t), y(mids[0].mid));
    for (let i = 1; i < mids.length; i++) {
        mp.lineTo(x(mids[i].t), y(mids[i - 1].mid));
        mp.lineTo(x(mids[i].t), y(mids[i].mid));
    }
    mp.lineTo(x(now), y(mids[mids.length - 1].mid));
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1;
    ctx.strokeStyle = col.accent;
    ctx.stroke(mp);
    ctx.setLineDash([]);

    ctx.font = col.font;
    ctx.fillStyle = col.muted;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(fmtPx(hi), PAD.left, 2);
    ctx.textBaseline = 'bottom';
    ctx.fillText(fmtPx(lo), PAD.left, h - 2);
    ctx.textAlign = 'right';
    ctx.fillText('mid ' + fmtPx(mids[mids.length - 1].mid), w - PAD.right, h - 2);
    return true;
}
