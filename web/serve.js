// serve.js: the little JavaScript of `sam2amg serve` (src/serve.c embeds
// this file). The run page reloads itself while a run is going; the grid's
// filters submit on change; the image page decodes each mask's COCO RLE
// string, draws the masks (fill and outline) on a canvas over the image,
// filters them with sliders, shows a mask's record on hover and click, and
// moves to the previous/next image with the arrow keys.
'use strict';

// rleCounts: the run lengths of a compressed COCO RLE string (pycocotools'
// format: 5-bit groups, 0x20 = more, offset 48, the sign in the last group's
// 0x10; counts after the third are differences to the count two before).
// Arithmetic in doubles, since the groups may exceed 32 bits.
function rleCounts(s) {
  const cnts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true, c = 0;
    while (more) {
      if (p >= s.length) throw new Error('truncated RLE');
      c = s.charCodeAt(p++) - 48;
      x += (c & 0x1f) * Math.pow(2, 5 * k);
      more = (c & 0x20) !== 0;
      k++;
    }
    if (c & 0x10) x -= Math.pow(2, 5 * k);
    if (cnts.length > 2) x += cnts[cnts.length - 2];
    if (x < 0) throw new Error('negative RLE count');
    cnts.push(x);
  }
  return cnts;
}

// One mask as drawn: its foreground runs (column-major start, length) and
// outline pixels (row-major indices), from a scratch bitmap of (H, W).
function prepareMask(m, W, H, scratch) {
  const cnts = rleCounts(m.counts);
  const starts = [], lens = [];
  let pos = 0, total = 0;
  for (let i = 0; i < cnts.length; i++) {
    if (i & 1 && cnts[i] > 0) { starts.push(pos); lens.push(cnts[i]); }
    pos += cnts[i];
  }
  total = pos;
  if (total !== W * H) throw new Error('RLE covers ' + total + ' pixels, not ' + W * H);
  // mark, find the outline (a foreground pixel with a 4-neighbour outside
  // the mask or the image), unmark
  let x0 = W, x1 = -1, y0 = H, y1 = -1;
  for (let r = 0; r < starts.length; r++) {
    for (let p = starts[r], e = p + lens[r]; p < e; p++) {
      const x = Math.floor(p / H), y = p - x * H;
      scratch[y * W + x] = 1;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
  }
  const outline = [];
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const i = y * W + x;
      if (!scratch[i]) continue;
      if (x === 0 || y === 0 || x === W - 1 || y === H - 1 || !scratch[i - 1] || !scratch[i + 1] ||
          !scratch[i - W] || !scratch[i + W]) outline.push(i);
    }
  }
  for (let y = y0; y <= y1; y++) scratch.fill(0, y * W + x0, y * W + x1 + 1);
  return { rec: m, starts: Int32Array.from(starts), lens: Int32Array.from(lens),
           outline: Int32Array.from(outline) };
}

// contains: whether column-major pixel p is in the mask (binary search)
function contains(pm, p) {
  let lo = 0, hi = pm.starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (pm.starts[mid] > p) hi = mid - 1;
    else if (pm.starts[mid] + pm.lens[mid] <= p) lo = mid + 1;
    else return true;
  }
  return false;
}

// a colour per mask index (golden-angle hues)
function colour(idx) {
  const h = (idx * 137.508) % 360 / 60, c = 200, x = c * (1 - Math.abs(h % 2 - 1));
  const t = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]][Math.floor(h) % 6];
  return [t[0] + 40, t[1] + 40, t[2] + 40];
}

function fmt(v, d) { return v === null || v === undefined ? '-' : Number(v).toFixed(d); }

function imagePage(root) {
  const id = root.dataset.id, status = root.dataset.status;
  const q = status ? '?status=' + encodeURIComponent(status) : '';
  const photo = document.getElementById('photo'), canvas = document.getElementById('overlay');
  const tip = document.getElementById('tip'), record = document.getElementById('record');
  const sIou = document.getElementById('s-iou'), sStab = document.getElementById('s-stab');
  const sArea = document.getElementById('s-area');
  let masks = [], visible = [], selected = null, maxArea = 1, W = 0, H = 0, data = null;

  function minArea() { const v = sArea.value / 1000; return Math.round(v * v * maxArea); }
  // a NULL score is not a number: it passes a zero threshold only
  function passes(v, t) { return v === null ? t <= 0 : v >= t; }

  function draw() {
    const tIou = Number(sIou.value), tStab = Number(sStab.value), tArea = minArea();
    document.getElementById('v-iou').textContent = tIou.toFixed(2);
    document.getElementById('v-stab').textContent = tStab.toFixed(2);
    document.getElementById('v-area').textContent = tArea;
    visible = masks.filter(pm => passes(pm.rec.predicted_iou, tIou) &&
                                 passes(pm.rec.stability_score, tStab) && pm.rec.area >= tArea);
    if (selected && !visible.includes(selected)) select(null);
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(W, H), px = img.data;
    // big masks first so that small ones stay visible on top
    const order = visible.slice().sort((a, b) => b.rec.area - a.rec.area || b.rec.idx - a.rec.idx);
    for (const pm of order) {
      const [r, g, b] = colour(pm.rec.idx), a = pm === selected ? 170 : 95;
      for (let k = 0; k < pm.starts.length; k++) {
        for (let p = pm.starts[k], e = p + pm.lens[k]; p < e; p++) {
          const x = Math.floor(p / H), o = ((p - x * H) * W + x) * 4;
          px[o] = r; px[o + 1] = g; px[o + 2] = b; px[o + 3] = a;
        }
      }
    }
    for (const pm of order) {
      const [r, g, b] = pm === selected ? [255, 255, 255] : colour(pm.rec.idx);
      for (const i of pm.outline) {
        const o = i * 4;
        px[o] = r; px[o + 1] = g; px[o + 2] = b; px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.drawn = String(visible.length);
    document.getElementById('shown').textContent = visible.length;
  }

  // the smallest visible mask under the pointer (ties: the lower index)
  function pick(ev) {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((ev.clientX - r.left) * W / r.width);
    const y = Math.floor((ev.clientY - r.top) * H / r.height);
    if (x < 0 || y < 0 || x >= W || y >= H) return null;
    let best = null;
    for (const pm of visible) {
      if (best && (pm.rec.area > best.rec.area ||
                   (pm.rec.area === best.rec.area && pm.rec.idx > best.rec.idx))) continue;
      if (contains(pm, x * H + y)) best = pm;
    }
    return best;
  }

  function describe(m) {
    return 'mask #' + m.idx + ' (id ' + m.id + ')\narea ' + m.area + ' px\npredicted IoU ' +
      fmt(m.predicted_iou, 3) + '\nstability score ' + fmt(m.stability_score, 3) +
      '\npoint (' + fmt(m.point[0], 1) + ', ' + fmt(m.point[1], 1) + ')';
  }

  function select(pm) {
    selected = pm;
    // one field a line, the RLE string left out
    record.textContent = pm ? Object.entries(pm.rec).filter(([k]) => k !== 'counts')
                                .map(([k, v]) => k + ': ' + JSON.stringify(v)).join('\n')
                            : 'click a mask';
    record.dataset.id = pm ? pm.rec.id : '';
  }

  canvas.addEventListener('mousemove', ev => {
    const pm = pick(ev);
    if (!pm) { tip.hidden = true; canvas.style.cursor = ''; return; }
    canvas.style.cursor = 'pointer';
    tip.textContent = describe(pm.rec);
    tip.dataset.id = pm.rec.id;
    const r = document.getElementById('stage').getBoundingClientRect();
    tip.style.left = (ev.clientX - r.left + 14) + 'px';
    tip.style.top = (ev.clientY - r.top + 14) + 'px';
    tip.hidden = false;
  });
  canvas.addEventListener('mouseleave', () => { tip.hidden = true; });
  canvas.addEventListener('click', ev => { select(pick(ev)); draw(); });
  for (const s of [sIou, sStab, sArea]) s.addEventListener('input', draw);

  document.addEventListener('keydown', ev => {
    if (ev.target.tagName === 'INPUT' || !data) return;
    const to = ev.key === 'ArrowRight' ? data.next : ev.key === 'ArrowLeft' ? data.prev : null;
    if (to) { ev.preventDefault(); location.href = '/image/' + to + q; }
  });

  fetch('/api/image/' + id + q).then(r => {
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return r.json();
  }).then(d => {
    data = d;
    document.getElementById('title').textContent = 'Image ' + d.id + ' (' + d.status + ')';
    document.getElementById('path').textContent = d.path;
    for (const [k, to] of [['prev', d.prev], ['next', d.next]]) {
      const a = document.getElementById(k);
      if (to) a.href = '/image/' + to + q; else a.removeAttribute('href');
    }
    if (d.error) {
      const e = document.getElementById('error');
      e.textContent = d.error;
      e.hidden = false;
    }
    W = d.width; H = d.height;
    document.getElementById('total').textContent = d.masks.length;
    if (d.status !== 'done' || !W || !H) {
      document.getElementById('stage').hidden = true;
      root.dataset.ready = '1';
      return;
    }
    canvas.width = W; canvas.height = H;
    // as wide as 900 px and the window height (less the page header)
    // allow: the whole image stays in view
    const fit = Math.max(200, Math.min(900, (window.innerHeight - 150) * W / H));
    document.getElementById('stage').style.flex = '0 1 ' + Math.round(fit) + 'px';
    const scratch = new Uint8Array(W * H);
    let bad = 0;
    for (const m of d.masks) {
      try {
        if (m.counts === null || m.size[0] !== H || m.size[1] !== W) throw new Error('size');
        masks.push(prepareMask(m, W, H, scratch));
      } catch (e) { bad++; }
    }
    if (bad) document.getElementById('total').textContent += ' (' + bad + ' unreadable)';
    // a loop, not Math.max(...areas): spreading >~100k arguments throws RangeError
    maxArea = 1;
    for (const pm of masks) if (pm.rec.area > maxArea) maxArea = pm.rec.area;
    photo.onload = () => { draw(); root.dataset.ready = '1'; };
    photo.onerror = () => {
      // the file was moved or deleted since the run: say so, and draw the
      // masks on their own (the canvas took its height from the photo)
      const e = document.getElementById('error');
      e.textContent = 'the image file cannot be shown (moved or deleted since the run?): ' +
                      d.path + '; the masks are drawn without it';
      e.hidden = false;
      photo.hidden = true;
      Object.assign(canvas.style, {position: 'static', height: 'auto', background: '#ddd'});
      draw(); root.dataset.ready = '1';
    };
    photo.src = '/full/' + d.id;
  }).catch(e => {
    const el = document.getElementById('error');
    el.textContent = 'cannot load the masks: ' + e.message;
    el.hidden = false;
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page === 'run') {
    const st = document.getElementById('state');
    if (st && st.dataset.running === '1') setTimeout(() => location.reload(), 3000);
  } else if (page === 'grid') {
    for (const s of document.querySelectorAll('form.filters select'))
      s.addEventListener('change', () => s.form.submit());
    for (const img of document.querySelectorAll('.card img'))
      img.addEventListener('error', () => { img.hidden = true; });
  } else if (page === 'image') {
    imagePage(document.getElementById('image-page'));
  }
});
