// CustomJS of a tap on any map: show the spectrum of the region holding the tapped pixel.
// Args: source (spectrum columns), marker (outline of the region on the maps), info (Div),
// values/indices/indptr (the region counts, dense or CSR), weights (regions x k model
// counts), spectra (k x channels), nx, ny, r, ngx, k, nch, sparse, floor, names, colors,
// start (the pixel shown when the document is ready).
// a Tap event has the pixel's data coordinates; DocumentReady shows the start pixel
const at = cb_obj.x === undefined ? start : [cb_obj.x, cb_obj.y];
const x = Math.floor(at[0]), y = Math.floor(at[1]);
if (!(x >= 0 && y >= 0 && x < nx && y < ny)) {
  return;
}
const gx = Math.floor(x / r), gy = Math.floor(y / r), g = gy * ngx + gx;
const raw = new Float64Array(nch);
if (sparse) {
  for (let j = indptr[g]; j < indptr[g + 1]; j++) {
    raw[indices[j]] = values[j];
  }
} else {
  for (let e = 0; e < nch; e++) {
    raw[e] = values[g * nch + e];
  }
}
const data = {energy: source.data.energy, raw: Array.from(raw)};
const model = new Float64Array(nch);
const parts = [];
for (let j = 0; j < k; j++) {
  const w = weights[g * k + j];
  const cj = new Float64Array(nch);
  for (let e = 0; e < nch; e++) {
    cj[e] = w * spectra[j * nch + e];
    model[e] += cj[e];
  }
  data["c" + j] = Array.from(cj);
  parts.push(w);
}
data.model = Array.from(model);
for (const key of Object.keys(data)) {
  if (key !== "energy") {
    data[key + "_log"] = data[key].map((v) => Math.max(v, floor));
  }
}
source.data = data;

const x0 = gx * r, x1 = Math.min(nx, x0 + r), y0 = gy * r, y1 = Math.min(ny, y0 + r);
marker.data = {x: [(x0 + x1) / 2], y: [(y0 + y1) / 2], w: [x1 - x0], h: [y1 - y0],
  px: [x + 0.5], py: [y + 0.5]};

const total = parts.reduce((a, b) => a + b, 0);
const counts = data.raw.reduce((a, b) => a + b, 0);
const where = r === 1 ? `pixel (x ${x}, y ${y})`
  : `region x ${x0}-${x1 - 1}, y ${y0}-${y1 - 1} (${r} x ${r} pixels around pixel x ${x}, y ${y})`;
let rows = "";
for (let j = 0; j < k; j++) {
  const share = total > 0 ? (100 * parts[j] / total).toFixed(1) : "0.0";
  rows += `<tr><td><span class="swatch" style="background:${colors[j]}"></span>${names[j]}</td>` +
    `<td class="num" data-component="${j}">${share}%</td>` +
    `<td class="num">${parts[j].toFixed(1)}</td></tr>`;
}
info.text = `<div class="region-info" data-x="${x}" data-y="${y}" data-gx="${gx}" data-gy="${gy}">` +
  `<p><b>${where}</b></p><p>raw counts ${counts.toFixed(0)}, model ${total.toFixed(1)}</p>` +
  `<table><tr><th>component</th><th>share</th><th>model counts</th></tr>${rows}</table></div>`;
